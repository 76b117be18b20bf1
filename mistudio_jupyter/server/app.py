"""The `mistudio` Jupyter server extension: configuration, the shared ModelManager, handlers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from sqlalchemy.engine import make_url
from traitlets import Integer, Unicode

# Imported here, before any request thread: two threads importing one package at once can each find
# it half initialised (a model page asks for its architecture, hook points and estimate at once).
from ..core import anatomy, preview  # noqa: F401
from ..core.service import ModelManager
from ..core.settings import Settings
from .events import EventHub
from .handlers import JupyterAccess, JupyterSocketAccess, RecordJSON, routes


class MiStudio(ExtensionApp):
    """Serves the mistudio REST API and event socket under `{base_url}/mistudio/api/v1`.

    Configure with `c.MiStudio.<trait>`; a trait left unset falls back to the `MISTUDIO_*` / `HF_*`
    environment and then to the defaults, exactly as in the CLI and the kernel.
    """

    name = "mistudio"
    load_other_extensions = True

    cache_dir = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The Hugging Face hub cache that holds the models (default: HF_HUB_CACHE).",
    )
    db_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="SQLAlchemy URL of the catalog (default: SQLite in the Jupyter data dir).",
    )
    max_parallel_downloads = Integer(None, allow_none=True, config=True, help="How many downloads run at once.")
    max_connections = Integer(
        None,
        allow_none=True,
        config=True,
        help="At most this many connections per download (ranges of its files at once).",
    )
    hub_endpoint = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The Hugging Face Hub to talk to (default: HF_ENDPOINT or huggingface.co).",
    )
    store_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="A team store's root URL (e.g. https://hub.example.org/services/mistudio/): list, download and "
        "delete through it with the user's JupyterHub token, and read models from cache_dir, its cache mounted "
        "read-only here (default: MISTUDIO_STORE_URL; none: this server keeps its own catalog).",
    )
    catalog_threads = Integer(4, config=True, help="Threads for catalog requests.")
    slow_threads = Integer(
        8,
        config=True,
        help="Threads for Hub requests, model builds and disk work, apart from the catalog "
        "threads so that a slow Hub never delays catalog requests.",
    )

    manager: ModelManager
    events: EventHub
    catalog_executor: ThreadPoolExecutor
    slow_executor: ThreadPoolExecutor
    record_json: RecordJSON

    def initialize_settings(self) -> None:
        settings = Settings.from_env(
            cache_dir=self.cache_dir,
            db_url=self.db_url,
            hub_endpoint=self.hub_endpoint,
            max_parallel_downloads=self.max_parallel_downloads,
            max_connections=self.max_connections,
            store_url=self.store_url,
            runtime_dir=Path(self.serverapp.runtime_dir),
        )
        self.manager = ModelManager(settings)
        self.catalog_executor = ThreadPoolExecutor(self.catalog_threads, thread_name_prefix="mistudio-catalog")
        self.slow_executor = ThreadPoolExecutor(self.slow_threads, thread_name_prefix="mistudio-slow")
        self.record_json = RecordJSON()
        self.events = EventHub(self.manager, self.log)
        catalog = settings.store_url or make_url(settings.db_url).render_as_string(hide_password=True)
        self.log.info("mistudio: cache %s, catalog %s", settings.cache_dir, catalog)
        # JupyterLab's page config tells the sidebar and model pages that rows name who asked for them.
        self.serverapp.web_app.settings.setdefault("page_config_data", {})["mistudioTeam"] = self.manager.remote
        self.slow_executor.submit(self._adopt_cache)

    def _adopt_cache(self) -> None:
        """Catalogue the models already in the cache, so they are listed on first open."""
        try:
            adopted = self.manager.adopt_cache(if_changed=True)
        except Exception:  # the server must start even over an unreadable cache
            self.log.warning("mistudio: adopting the models already in the cache failed", exc_info=True)
            return
        if adopted:
            self.log.info("mistudio: adopted %d model(s) already in the cache", len(adopted))

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes(JupyterAccess, JupyterSocketAccess))

    async def stop_extension(self) -> None:
        self.events.stop()
        self.catalog_executor.shutdown(wait=False, cancel_futures=True)
        self.slow_executor.shutdown(wait=False, cancel_futures=True)
        self.manager.close()
