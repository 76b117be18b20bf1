"""REST handlers and the event WebSocket, under `{base_url}/mistudio/api/v1`.

Each handler is parse → call `ModelManager` → serialize. The base class holds everything shared:
authentication and authorization (resource `mistudio`), request parsing against the OpenAPI
document, running blocking work off the event loop, and the one error mapper.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket

from ..core.catalog import ModelRecord
from ..core.errors import InvalidArgument, MiStudioError
from . import openapi
from .errors import PayloadTooLarge, error_response, redact
from .events import MAX_SUBSCRIPTIONS, message

if TYPE_CHECKING:
    from ..core.service import ModelManager
    from .app import MiStudio

API_PREFIX = "/mistudio/api/v1"
AUTH_RESOURCE = "mistudio"
MAX_BODY_BYTES = 64 * 1024
_QUERY_AUTH_ARGUMENTS = frozenset({"token", "_xsrf"})  # Jupyter's own, not the operation's

T = TypeVar("T")


class RecordJSON:
    """Records as JSON text, each cached by id and version: listing a large catalog reads and encodes
    only the rows that changed since the last listing. Every catalog write moves the version."""

    MAX_ENTRIES = 50_000

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, str]] = {}

    def listing(self, manager: ModelManager, filters: dict[str, Any]) -> str:
        """A JSON array of the `to_dict()`s of the entries `manager.list(**filters)` returns."""
        if len(self._cache) > self.MAX_ENTRIES:  # ids of deleted entries pile up; start over
            self._cache = {}
        versions = manager.list_versions(**filters)
        stale = {model_id: at for model_id, at in versions if self._cache.get(model_id, (None,))[0] != at}
        for record in manager.catalog.get_many(stale) if stale else []:
            # Keyed by the version listed: a row updated since is read again next time.
            self._cache[record.id] = (stale[record.id], json.dumps(record.to_dict()))
        # An entry deleted between the two reads is left out, not shown as it was.
        parts = ((self._cache.get(model_id), at) for model_id, at in versions)
        return "[" + ",".join(part[1] for part, at in parts if part is not None and part[0] == at) + "]"


class JSONErrors:
    """Every error answer of a route as `{"error": {"code", "message"}}`, never Jupyter's HTML page."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        status, body = error_response(exc_info[1] if exc_info else None, status_code)
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps(body))  # type: ignore[attr-defined]


class MiStudioHandler(JSONErrors, ExtensionHandlerMixin, APIHandler):
    """Base of the REST handlers; `route` is the handler's path template in the OpenAPI document."""

    auth_resource = AUTH_RESOURCE
    route: ClassVar[str]

    @property
    def app(self) -> MiStudio:
        return self.extensionapp  # type: ignore[return-value]

    @property
    def manager(self) -> ModelManager:
        return self.app.manager

    def json_body(self) -> dict[str, Any]:
        """The request body, checked against the operation's schema (400/413/422 otherwise)."""
        raw = self.request.body
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            raise InvalidArgument("the request body is not valid JSON") from None
        return openapi.check_body(self.route, self.request.method or "", body)

    def query(self) -> dict[str, Any]:
        """The query arguments, typed and checked against the operation's parameters."""
        return openapi.check_query(
            self.route, self.request.method or "", self.request.query_arguments, _QUERY_AUTH_ARGUMENTS
        )

    async def quick(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run catalog work in the catalog threads."""
        return await self._run(self.app.catalog_executor, function, *args, **kwargs)

    async def slow(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run work that may wait on the Hub, the disk or a model build in their own threads, so it
        never holds up catalog requests."""
        return await self._run(self.app.slow_executor, function, *args, **kwargs)

    async def _run(self, executor: Executor, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(function, *args, **kwargs))

    async def record(self, model_id: str) -> ModelRecord:
        """The catalog entry a `{id}` path names (ids only: the REST routes never take repo ids)."""
        return await self.quick(self.manager.get, model_id)

    def reply(self, payload: Any, status: int = 200) -> None:
        self.reply_encoded(json.dumps(payload), status)

    def reply_encoded(self, text: str, status: int = 200) -> None:
        """Answer with JSON text that is already encoded."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, MiStudioError):  # an expected outcome, not a server fault: no traceback
            self.log.info("%s %s: %s %s", self.request.method, self.request.path, value.code, redact(value.message))
        else:
            super().log_exception(typ, value, tb)


class ModelsHandler(MiStudioHandler):
    route = "/models"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        filters = self.query()
        models = await self.quick(self.app.record_json.listing, self.manager, filters)
        self.reply_encoded('{"models": ' + models + "}")

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        self.reply((await self.quick(self.manager.add, **body)).to_dict())


class PreviewHandler(MiStudioHandler):
    route = "/models/preview"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        self.reply(await self.slow(self.manager.preview, **body))


class ModelHandler(MiStudioHandler):
    route = "/models/{id}"

    @web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        self.reply((await self.record(model_id)).to_dict())

    @web.authenticated
    @authorized
    async def delete(self, model_id: str) -> None:
        record = await self.record(model_id)
        result = await self.slow(self.manager.delete, record.id)
        self.app.events.model_deleted(record.id)
        self.reply(result)


class DownloadHandler(MiStudioHandler):
    route = "/models/{id}/download"

    @web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        handle = await self.slow(self.manager.download, record.id, **body)
        self.reply(handle.record.to_dict(), 202)


class CancelHandler(MiStudioHandler):
    route = "/models/{id}/cancel"

    @web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        self.reply((await self.slow(self.manager.cancel, record.id, **body)).to_dict())


class ResumeHandler(MiStudioHandler):
    route = "/models/{id}/resume"

    @web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        handle = await self.slow(self.manager.resume, record.id, **body)
        self.reply(handle.record.to_dict(), 202)


class ArchitectureHandler(MiStudioHandler):
    route = "/models/{id}/architecture"

    @web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        record = await self.record(model_id)
        self.reply(await self.slow(self.manager.architecture, record.id))


class HooksHandler(MiStudioHandler):
    route = "/models/{id}/hooks"

    @web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        options, record = self.query(), await self.record(model_id)
        hooks = await self.slow(self.manager.hook_points, record.id, **options)
        self.reply([hook.to_dict() for hook in hooks])


class EstimateHandler(MiStudioHandler):
    route = "/models/{id}/estimate"

    @web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        options, record = self.query(), await self.record(model_id)
        self.reply(await self.slow(self.manager.estimate, record.id, **options))


class SystemHandler(MiStudioHandler):
    route = "/system"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.slow(self.manager.system))


class CacheHandler(MiStudioHandler):
    route = "/cache"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.slow(self.manager.cache_info))


class PruneCacheHandler(MiStudioHandler):
    route = "/cache/prune"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.json_body()
        self.reply(await self.slow(self.manager.prune_cache))


class EventsHandler(JSONErrors, ExtensionHandlerMixin, WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """The event socket: `{"action": "subscribe"|"unsubscribe", "channel": "models"|"model/{id}"}` in,
    `{"channel", "event", "data"}` out."""

    auth_resource = AUTH_RESOURCE
    route: ClassVar[str] = "/events"

    @property
    def app(self) -> MiStudio:
        return self.extensionapp  # type: ignore[return-value]

    async def pre_get(self) -> None:
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403, "this user may not read mistudio events")

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Any:
        """Tornado refuses a bad handshake (no Upgrade, foreign Origin, missing key) with plain
        text, bypassing `write_error`: those answers get the JSON error shape too."""
        if self.get_status() >= 400 and not self._headers.get("Content-Type", "").startswith("application/json"):
            text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
            _, body = error_response(web.HTTPError(self.get_status(), "%s", text or self._reason))
            self.set_header("Content-Type", "application/json")
            chunk = json.dumps(body)
        return super().finish(chunk)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.pre_get()
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.app.events.add(self)

    def on_message(self, raw: str | bytes) -> None:
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):
            request = None
        if not openapi.validator("/components/schemas/ClientMessage").is_valid(request):
            self.send(
                message(
                    None,
                    "error",
                    {
                        "code": "invalid_argument",
                        "message": 'expected {"action": "subscribe"|"unsubscribe", "channel": "models"|"model/{id}"}',
                    },
                )
            )
            return
        action, channel = request["action"], request["channel"]
        if action == "unsubscribe":
            self.app.events.unsubscribe(self, channel)
        elif not self.app.events.subscribe(self, channel):
            self.send(
                message(
                    channel,
                    "error",
                    {
                        "code": "too_many_subscriptions",
                        "message": f"a socket may subscribe to at most {MAX_SUBSCRIPTIONS} channels; unsubscribe "
                        'from some, or subscribe to "models" for every model',
                    },
                )
            )
            return
        self.send(message(channel, f"{action}d", {}))

    def on_close(self) -> None:
        self.app.events.remove(self)

    def send(self, payload: dict[str, Any]) -> bool:
        """Queue a message; False when the socket has gone away."""
        try:
            self.write_message(json.dumps(payload))
        except websocket.WebSocketClosedError:
            return False
        return True


class UnknownRouteHandler(JSONErrors, ExtensionHandlerMixin, APIHandler):
    """Any other path under the API prefix: a JSON 404 rather than Jupyter's HTML page."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    def get(self) -> None:
        raise web.HTTPError(404, "no such mistudio endpoint; see the OpenAPI document")

    post = put = patch = delete = get


HANDLERS: tuple[type[MiStudioHandler | EventsHandler], ...] = (
    ModelsHandler,
    PreviewHandler,
    ModelHandler,
    DownloadHandler,
    CancelHandler,
    ResumeHandler,
    ArchitectureHandler,
    HooksHandler,
    EstimateHandler,
    SystemHandler,
    CacheHandler,
    PruneCacheHandler,
    EventsHandler,
)


def routes() -> list[tuple[str, type]]:
    """The tornado routes (relative to base_url), in matching order: fixed paths before `{id}`, and
    last the JSON 404 for every other path under the prefix."""
    matched = [(API_PREFIX + handler.route.replace("{id}", "(?P<model_id>[^/]+)"), handler) for handler in HANDLERS]
    return [*matched, (API_PREFIX + "(?:/.*)?", UnknownRouteHandler)]
