"""One Settings value for the whole product, read from keyword arguments, then the environment."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "https://huggingface.co"


def _jupyter_data_dir(env: Mapping[str, str]) -> Path:
    """Jupyter's data dir, computed as jupyter_core does, without importing Jupyter into core."""
    if env.get("JUPYTER_DATA_DIR"):
        return Path(env["JUPYTER_DATA_DIR"])
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Jupyter"
    if os.name == "nt":
        return Path(env.get("APPDATA", home)) / "jupyter"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "jupyter"


def _jupyter_runtime_dir(env: Mapping[str, str]) -> Path:
    """Jupyter's runtime dir, as jupyter_core computes it."""
    if env.get("JUPYTER_RUNTIME_DIR"):
        return Path(env["JUPYTER_RUNTIME_DIR"])
    return _jupyter_data_dir(env) / "runtime"


def _whole_number(variable: str, text: str) -> int:
    from .errors import InvalidArgument

    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{variable} must be a whole number, got {text!r}") from None


def _default_hub_cache(env: Mapping[str, str]) -> Path:
    """The standard Hugging Face hub cache, with huggingface_hub's precedence of variables."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where models and the catalog live, which Hub to talk to and how downloads run.

    Build it with `Settings.from_env(**overrides)`: explicit arguments win over
    `MISTUDIO_*` / `HF_*` environment variables, which win over the defaults.
    The token is never persisted; it is only the fallback for requests that bring none. Download
    workers' logs go to a private folder of Jupyter's runtime dir (`JUPYTER_RUNTIME_DIR`).

    With `store_url` (`MISTUDIO_STORE_URL`, a team store's root such as
    `https://hub.example.org/services/mistudio/`) the catalog and downloads are the store's, reached with
    `store_token` (`MISTUDIO_STORE_TOKEN`, else the JupyterHub token `JUPYTERHUB_API_TOKEN`), and
    `cache_dir` is where the store's cache is mounted (read-only) here.
    """

    cache_dir: Path
    db_url: str
    hub_endpoint: str = DEFAULT_ENDPOINT
    token: str | None = dataclasses.field(default=None, repr=False)
    max_parallel_downloads: int = 2
    max_connections: int = 32
    heartbeat_timeout_s: float = 30.0
    disk_margin_bytes: int = 512 * 1024 * 1024
    runtime_dir: Path = dataclasses.field(default_factory=lambda: _jupyter_runtime_dir(os.environ))
    store_url: str | None = None
    store_token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            from .errors import InvalidArgument

            raise InvalidArgument(f"unknown setting(s): {', '.join(sorted(unknown))}")
        cache_dir = overrides.pop("cache_dir", None) or env.get("MISTUDIO_CACHE_DIR") or _default_hub_cache(env)
        db_url = overrides.pop("db_url", None) or env.get("MISTUDIO_DB_URL")
        if not db_url:
            db_url = "sqlite:///" + str(_jupyter_data_dir(env) / "mistudio" / "catalog.sqlite")
        values: dict[str, Any] = {
            "hub_endpoint": (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            "token": env.get("HF_TOKEN") or None,
            "runtime_dir": _jupyter_runtime_dir(env),
            "store_url": env.get("MISTUDIO_STORE_URL") or None,
            "store_token": env.get("MISTUDIO_STORE_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or None,
        }
        for name in ("max_parallel_downloads", "max_connections"):
            variable = f"MISTUDIO_{name.upper()}"
            if env.get(variable):
                values[name] = _whole_number(variable, env[variable])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(cache_dir=Path(cache_dir).expanduser(), db_url=str(db_url), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        from .errors import InvalidArgument

        if self.max_parallel_downloads < 1:
            raise InvalidArgument("max_parallel_downloads must be at least 1")
        if self.max_connections < 1:
            raise InvalidArgument("max_connections must be at least 1")
        if not self.hub_endpoint.startswith(("http://", "https://")):
            raise InvalidArgument(f"hub endpoint must be an http(s) URL, got {self.hub_endpoint!r}")
        if self.store_url is not None:
            if not self.store_url.startswith(("http://", "https://")):
                raise InvalidArgument(f"the store URL must be an http(s) URL, got {self.store_url!r}")
            if not self.store_token:
                raise InvalidArgument(
                    "a team store is configured (MISTUDIO_STORE_URL) but no token to reach it: set "
                    "MISTUDIO_STORE_TOKEN, or run where JupyterHub sets JUPYTERHUB_API_TOKEN"
                )
