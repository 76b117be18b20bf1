"""The Jupyter server extension: REST API, event WebSocket and their OpenAPI document."""

from __future__ import annotations

from .app import MiStudio

__all__ = ["MiStudio"]
