"""mistudio-jupyter: Hugging Face model management for interpretability research, inside Jupyter."""
from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
