"""mistudio-jupyter: Hugging Face model management for interpretability research, inside Jupyter.

`import mistudio_jupyter` stays light: torch and transformers load only when a model is built.
"""

from __future__ import annotations

from typing import Any

try:
    from ._version import __version__  # written from package.json by the build
except ImportError:  # a checkout installed before the build wrote it: the installed metadata has the version
    from importlib.metadata import version as _installed_version

    __version__ = _installed_version("mistudio-jupyter")

_LAZY = {
    "ModelManager": ("mistudio_jupyter.core.service", "ModelManager"),
    "Settings": ("mistudio_jupyter.core.settings", "Settings"),
    "HookPoint": ("mistudio_jupyter.core.anatomy.hooks", "HookPoint"),
    "capture": ("mistudio_jupyter.core.anatomy.hooks", "capture"),
    "release": ("mistudio_jupyter.core.leases", "release"),
    "shared_manager": ("mistudio_jupyter.shared", "shared_manager"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mistudio_jupyter' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    return getattr(importlib.import_module(module_name), attribute)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext mistudio_jupyter` registers the `%mistudio` magic."""
    from .magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (`jupyter server extension list` shows `mistudio_jupyter`)."""
    from .server import MiStudio

    return [{"module": "mistudio_jupyter", "app": MiStudio}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (the miStudio sidebar), for `jupyter labextension develop`."""
    return [{"src": "labextension", "dest": "mistudio-jupyter"}]


__all__ = [
    "__version__",
    "ModelManager",
    "Settings",
    "HookPoint",
    "capture",
    "release",
    "shared_manager",
    "load_ipython_extension",
]
