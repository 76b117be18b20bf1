"""Model anatomy: architecture from config, per-family hook tables, activation capture, sizing.

Importing this package does not import torch or transformers; the functions import them when called.
"""

from __future__ import annotations

from .architecture import build_meta_model, describe_architecture
from .families import family_of, is_verified
from .hooks import HookPoint, capture, hook_points, module_hook_points, resolve_hook

__all__ = [
    "HookPoint",
    "build_meta_model",
    "capture",
    "describe_architecture",
    "family_of",
    "hook_points",
    "is_verified",
    "module_hook_points",
    "resolve_hook",
]
