"""Notebook widgets (anywidget): thin traitlets state over the kernel's ModelManager.

They need no server extension, so they work wherever anywidget does (JupyterLab, Notebook 7,
VS Code, Colab). The views are built from `js/` into `static/` by `npm run build:widgets` (the package
build runs it); for live reload while editing the views, run `npm run watch:widgets` and start
Jupyter with `ANYWIDGET_HMR=1`.
"""

from __future__ import annotations

from .architecture import ArchitectureViewer
from .downloads import DownloadForm, DownloadProgress
from .panel import ModelsPanel

__all__ = ["ArchitectureViewer", "DownloadForm", "DownloadProgress", "ModelsPanel"]
