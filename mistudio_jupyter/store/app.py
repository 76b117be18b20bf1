"""The store's Tornado app as a JupyterHub service (managed by the Hub, or external).

The Hub hands a managed service its settings in the environment: `JUPYTERHUB_SERVICE_URL` (where to
listen), `JUPYTERHUB_SERVICE_PREFIX` (the path the proxy routes to it), `JUPYTERHUB_API_TOKEN`,
`JUPYTERHUB_API_URL` and the OAuth client's `JUPYTERHUB_CLIENT_ID` / `JUPYTERHUB_OAUTH_CALLBACK_URL`,
which `HubOAuth` reads. An external service is given the same variables by whoever starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web
from tornado.log import access_log

from ..core.errors import InvalidArgument, MiStudioError
from ..core.service import ModelManager
from ..server.events import EventHub
from ..server.handlers import RecordJSON, routes
from .auth import HubAccess, HubSocketAccess

log = logging.getLogger("mistudio.store")
# What the store writes into the shared cache, every user reads and only the store's account changes:
# files 0644, folders 0755, whatever umask the service was started with.
SHARED_UMASK = 0o022


class Store:
    """What the store's handlers use: the manager over the shared cache and catalog, the event hub
    and the threads that keep blocking work off the event loop."""

    def __init__(self, manager: ModelManager, *, catalog_threads: int = 4, slow_threads: int = 8) -> None:
        self.manager = manager
        self.catalog_executor = ThreadPoolExecutor(catalog_threads, thread_name_prefix="mistudio-catalog")
        self.slow_executor = ThreadPoolExecutor(slow_threads, thread_name_prefix="mistudio-slow")
        self.record_json = RecordJSON()
        self.events = EventHub(self.manager, log)

    def application(self, prefix: str) -> web.Application:
        """The routes under `prefix` (the service's path, e.g. `/services/mistudio/`) and the OAuth callback."""
        base = "/" + prefix.strip("/")
        handlers = [(base.rstrip("/") + path, handler) for path, handler in routes(HubAccess, HubSocketAccess)]
        handlers.append((base.rstrip("/") + "/oauth_callback", HubOAuthCallbackHandler))
        return web.Application(
            handlers, cookie_secret=secrets.token_bytes(32), log_function=_log_request, mistudio=self
        )

    def close(self) -> None:
        self.events.stop()
        self.catalog_executor.shutdown(wait=False, cancel_futures=True)
        self.slow_executor.shutdown(wait=False, cancel_futures=True)
        self.manager.close()


def _log_request(handler: web.RequestHandler) -> None:
    """One access-log line per request, with the path but never the query (it may carry a token)."""
    request = handler.request
    access_log.info(
        "%d %s %s %.1fms", handler.get_status(), request.method, request.path, 1000 * request.request_time()
    )


def listen_address(service_url: str) -> tuple[str, int]:
    """The (host, port) of `JUPYTERHUB_SERVICE_URL`, e.g. `http://127.0.0.1:10101`."""
    parsed = urllib.parse.urlsplit(service_url)
    if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
        raise InvalidArgument(f"JUPYTERHUB_SERVICE_URL must be http://HOST:PORT, got {service_url!r}")
    return parsed.hostname, parsed.port


def serve(manager: ModelManager | None = None) -> None:
    """Run the store until SIGTERM or SIGINT, configured by the Hub's environment and `MISTUDIO_*`
    (a manager over the default settings unless given one)."""
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not service_url or not os.environ.get("JUPYTERHUB_API_TOKEN"):
        raise InvalidArgument(
            "mistudio store runs as a JupyterHub service: JUPYTERHUB_SERVICE_URL and JUPYTERHUB_API_TOKEN "
            "must be set (the Hub sets them for a managed service; see docs/team-store.md)"
        )
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    host, port = listen_address(service_url)
    os.umask(SHARED_UMASK)
    asyncio.run(_serve(Store(manager or ModelManager()), host, port))


def _adopt_cache(manager: ModelManager) -> None:
    """Catalogue the models already in the shared cache; the store serves even if that fails."""
    try:
        manager.adopt_cache(if_changed=True)
    except Exception:
        log.warning("adopting the models already in the cache failed", exc_info=True)


def _resume_interrupted(manager: ModelManager) -> None:
    """Resume the downloads whose workers died with an earlier run of the store (a crash, a killed
    container): nobody else will, since the store is the only writer of the shared cache."""
    for record in manager.list(status="interrupted"):
        try:
            manager.resume(record.id)
            log.info("resumed the interrupted download of %s (%s)", record.name, record.id)
        except MiStudioError as error:
            log.warning("cannot resume the download of %s (%s): %s", record.name, record.id, error)


async def _serve(store: Store, host: str, port: int) -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    server = store.application(prefix).listen(port, address=host, xheaders=True)
    settings = store.manager.settings
    log.info("mistudio store on http://%s:%d%s (cache %s)", host, port, prefix, settings.cache_dir)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await loop.run_in_executor(store.slow_executor, _adopt_cache, store.manager)
    await loop.run_in_executor(store.slow_executor, _resume_interrupted, store.manager)
    await stopped.wait()
    server.stop()
    store.close()
