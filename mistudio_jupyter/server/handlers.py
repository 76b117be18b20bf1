"""REST handlers and the event WebSocket, under `{base_url}/mistudio/api/v1`.

Each handler is parse → call `ModelManager` → serialize. The routes are written once and mounted by
two apps, each through its own access base: the Jupyter server extension (`JupyterAccess`: Jupyter's
authentication and authorizer, resource `mistudio`) and the team store (`store.auth.HubAccess`:
JupyterHub OAuth and scopes). `ApiHandler` holds the rest: request parsing against the OpenAPI
document, running blocking work off the event loop, and the one error mapper.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import HTTP_METHOD_TO_AUTH_ACTION, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket

from ..core.catalog import Lease, ModelRecord
from ..core.errors import InvalidArgument, MiStudioError
from ..core.store import ADMIN, DELETE, DOWNLOAD, READ
from . import openapi
from .errors import PayloadTooLarge, error_response, redact
from .events import MAX_SUBSCRIPTIONS, message

if TYPE_CHECKING:
    from ..core.service import ModelManager
    from .events import EventHub

API_PREFIX = "/mistudio/api/v1"
AUTH_RESOURCE = "mistudio"
MAX_BODY_BYTES = 64 * 1024
_QUERY_AUTH_ARGUMENTS = frozenset({"token", "_xsrf"})  # Jupyter's own, not the operation's

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class RecordJSON:
    """Records as JSON text, each cached by id and version: listing a large catalog reads and encodes
    only the rows that changed since the last listing. Every catalog write moves the version."""

    MAX_ENTRIES = 50_000

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, str]] = {}
        self._last: tuple[list[tuple[str, Any]], str] = ([], "[]")  # the versions of a listing, and it

    def listing(self, manager: ModelManager, filters: dict[str, Any]) -> str:
        """A JSON array of the `to_dict()`s of the entries `manager.list(**filters)` returns."""
        if len(self._cache) > self.MAX_ENTRIES:  # ids of deleted entries pile up; start over
            self._cache = {}
        versions = manager.list_versions(**filters)
        last_versions, last_listing = self._last
        if versions == last_versions:  # the same entries at the same versions: what a poll mostly sees
            return last_listing
        stale = {model_id: at for model_id, at in versions if self._cache.get(model_id, (None,))[0] != at}
        for record in manager.get_many(list(stale)) if stale else []:
            # Keyed by the version listed: a row updated since is read again next time.
            self._cache[record.id] = (stale[record.id], json.dumps(record.to_dict()))
        # An entry deleted between the two reads is left out, not shown as it was.
        parts = ((self._cache.get(model_id), at) for model_id, at in versions)
        shown = [part[1] for part, at in parts if part is not None and part[0] == at]
        listing = "[" + ",".join(shown) + "]"
        if len(shown) == len(versions):
            self._last = (versions, listing)
        return listing


class JSONErrors:
    """Every error answer of a route as `{"error": {"code", "message"}}`, never Jupyter's HTML page."""

    log: Any
    request: Any

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, MiStudioError):  # an expected outcome, not a server fault: no traceback
            self.log.info("%s %s: %s %s", self.request.method, self.request.path, value.code, redact(value.message))
        else:
            super().log_exception(typ, value, tb)  # type: ignore[misc]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        status, body = error_response(exc_info[1] if exc_info else None, status_code)
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps(body))  # type: ignore[attr-defined]


class Backend(Protocol):
    """What the handlers use of the app that mounts them."""

    manager: ModelManager
    events: EventHub
    catalog_executor: Executor
    slow_executor: Executor
    record_json: RecordJSON


def requires(scope: str) -> Callable[[F], F]:
    """Let the request through only when the access base allows `scope` (read, download, delete)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            await self.check_access(scope)
            return await method(self, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


class ApiHandler(JSONErrors):
    """Base of the REST handlers, mixed with an access base that provides the request handler, `app`,
    `user_name`, `log` and `check_access`; `route` is the path template in the OpenAPI document."""

    route: ClassVar[str]
    path_argument: ClassVar[str] = "model_id"  # the name the `{id}` of `route` is passed by
    app: Backend
    user_name: str
    check_access: Callable[[str], Awaitable[None]]
    permissions: Callable[[], Awaitable[list[str]]]

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
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(text)  # type: ignore[attr-defined]


class ModelsHandler(ApiHandler):
    route = "/models"

    @web.authenticated
    @requires(READ)
    async def get(self) -> None:
        filters = self.query()
        models = await self.quick(self.app.record_json.listing, self.manager, filters)
        self.reply_encoded('{"models": ' + models + "}")

    @web.authenticated
    @requires(DOWNLOAD)
    async def post(self) -> None:
        body = self.json_body()
        self.reply((await self.quick(self.manager.add, **body, requested_by=self.user_name)).to_dict())


class PreviewHandler(ApiHandler):
    route = "/models/preview"

    @web.authenticated
    @requires(READ)
    async def post(self) -> None:
        body = self.json_body()
        self.reply(await self.slow(self.manager.preview, **body))


class ModelHandler(ApiHandler):
    route = "/models/{id}"

    @web.authenticated
    @requires(READ)
    async def get(self, model_id: str) -> None:
        record = await self.record(model_id)
        leases = await self.quick(self.manager.leases.live, record.id)
        self.reply({**record.to_dict(), "leases": [lease_holding(lease) for lease in leases]})

    @web.authenticated
    @requires(DELETE)
    async def delete(self, model_id: str) -> None:
        force, record = self.query().get("force", False), await self.record(model_id)
        if force:
            await self.check_access(ADMIN)
        result = await self.slow(self.manager.delete, record.id, force=force)
        await self.quick(self.manager.record_action, self.user_name, "delete", record)
        self.app.events.model_deleted(record.id)
        self.reply(result)


class ModelLeasesHandler(ApiHandler):
    route = "/models/{id}/leases"

    @web.authenticated
    @requires(READ)
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        holder = f"{self.user_name}@{body['holder']}" if body.get("holder") else self.user_name
        self.reply((await self.quick(self.manager.leases.acquire, record.id, holder)).to_dict(), 201)


class LeaseHandler(ApiHandler):
    route = "/leases/{id}"
    path_argument = "lease_id"

    @web.authenticated
    @requires(READ)
    async def put(self, lease_id: str) -> None:
        self.json_body()
        self.reply((await self.quick(self.manager.leases.renew, lease_id)).to_dict())

    @web.authenticated
    @requires(READ)
    async def delete(self, lease_id: str) -> None:
        await self.quick(self.manager.leases.release, lease_id)
        self.reply({"id": lease_id})


def lease_holding(lease: Lease) -> dict[str, str]:
    """What a model's record tells of a lease on it: who holds it and since when (never its id, which
    lets whoever has it renew or release the lease)."""
    return {"holder": lease.holder, "created_at": lease.created_at.isoformat()}


class DownloadHandler(ApiHandler):
    route = "/models/{id}/download"

    @web.authenticated
    @requires(DOWNLOAD)
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        handle = await self.slow(self.manager.download, record.id, **body, requested_by=self.user_name)
        await self.quick(self.manager.record_action, self.user_name, "download", handle.record)
        self.reply(handle.record.to_dict(), 202)


class CancelHandler(ApiHandler):
    route = "/models/{id}/cancel"

    @web.authenticated
    @requires(DOWNLOAD)
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        cancelled = await self.slow(self.manager.cancel, record.id, **body)
        await self.quick(self.manager.record_action, self.user_name, "cancel", cancelled)
        self.reply(cancelled.to_dict())


class ResumeHandler(ApiHandler):
    route = "/models/{id}/resume"

    @web.authenticated
    @requires(DOWNLOAD)
    async def post(self, model_id: str) -> None:
        body, record = self.json_body(), await self.record(model_id)
        handle = await self.slow(self.manager.resume, record.id, **body)
        await self.quick(self.manager.record_action, self.user_name, "resume", handle.record)
        self.reply(handle.record.to_dict(), 202)


class ArchitectureHandler(ApiHandler):
    route = "/models/{id}/architecture"

    @web.authenticated
    @requires(READ)
    async def get(self, model_id: str) -> None:
        record = await self.record(model_id)
        self.reply(await self.slow(self.manager.architecture, record.id))


class HooksHandler(ApiHandler):
    route = "/models/{id}/hooks"

    @web.authenticated
    @requires(READ)
    async def get(self, model_id: str) -> None:
        options, record = self.query(), await self.record(model_id)
        hooks = await self.slow(self.manager.hook_points, record.id, **options)
        self.reply([hook.to_dict() for hook in hooks])


class EstimateHandler(ApiHandler):
    route = "/models/{id}/estimate"

    @web.authenticated
    @requires(READ)
    async def get(self, model_id: str) -> None:
        options, record = self.query(), await self.record(model_id)
        self.reply(await self.slow(self.manager.estimate, record.id, **options))


class SystemHandler(ApiHandler):
    route = "/system"

    @web.authenticated
    @requires(READ)
    async def get(self) -> None:
        self.reply(await self.slow(self.manager.system))


class MeHandler(ApiHandler):
    route = "/me"

    @web.authenticated
    async def get(self) -> None:
        self.reply({"name": self.user_name, "can": await self.permissions()})


class CacheHandler(ApiHandler):
    route = "/cache"

    @web.authenticated
    @requires(READ)
    async def get(self) -> None:
        self.reply(await self.slow(self.manager.cache_info))


class PruneCacheHandler(ApiHandler):
    route = "/cache/prune"

    @web.authenticated
    @requires(DELETE)
    async def post(self) -> None:
        self.json_body()
        result = await self.slow(self.manager.prune_cache)
        await self.quick(self.manager.record_action, self.user_name, "prune")
        self.reply(result)


class AuditHandler(ApiHandler):
    route = "/audit"

    @web.authenticated
    @requires(DELETE)
    async def get(self) -> None:
        page = self.query()
        self.reply({"entries": await self.quick(self.manager.audit, **page)})


class EventsHandler(JSONErrors):
    """The event socket: `{"action": "subscribe"|"unsubscribe", "channel": "models"|"model/{id}"}` in,
    `{"channel", "event", "data"}` out. Mixed with an access base whose request handler is a
    `tornado.websocket.WebSocketHandler`."""

    route: ClassVar[str] = "/events"
    app: Backend
    check_access: Callable[[str], Awaitable[None]]

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Any:
        """Tornado refuses a bad handshake (no Upgrade, foreign Origin, missing key) with plain
        text, bypassing `write_error`: those answers get the JSON error shape too."""
        if self.get_status() >= 400 and not self._headers.get("Content-Type", "").startswith("application/json"):  # type: ignore[attr-defined]
            text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
            _, body = error_response(web.HTTPError(self.get_status(), "%s", text or self._reason))  # type: ignore[attr-defined]
            self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
            chunk = json.dumps(body)
        return super().finish(chunk)  # type: ignore[misc]

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.check_access(READ)
        await super().get(*args, **kwargs)  # type: ignore[misc]

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)  # type: ignore[misc]
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
            self.write_message(json.dumps(payload))  # type: ignore[attr-defined]
        except websocket.WebSocketClosedError:
            return False
        return True


class UnknownRouteHandler(JSONErrors):
    """Any other path under the API prefix: a JSON 404 rather than an HTML page."""

    @web.authenticated
    def get(self) -> None:
        raise web.HTTPError(404, "no such mistudio endpoint; see the OpenAPI document")

    post = put = patch = delete = get


HANDLERS: tuple[type[ApiHandler | EventsHandler], ...] = (
    ModelsHandler,
    PreviewHandler,
    ModelHandler,
    ModelLeasesHandler,
    LeaseHandler,
    DownloadHandler,
    CancelHandler,
    ResumeHandler,
    ArchitectureHandler,
    HooksHandler,
    EstimateHandler,
    SystemHandler,
    MeHandler,
    CacheHandler,
    PruneCacheHandler,
    AuditHandler,
    EventsHandler,
)


class JupyterAccess(ExtensionHandlerMixin, APIHandler):
    """Access in the Jupyter server: Jupyter's authentication, and its authorizer asked for the action
    of the HTTP method (read or write) on resource `mistudio`."""

    auth_resource = AUTH_RESOURCE

    @property
    def app(self) -> Backend:
        return self.extensionapp  # type: ignore[return-value]

    @property
    def user_name(self) -> str:
        return self.current_user.username

    async def check_access(self, scope: str) -> None:
        action = HTTP_METHOD_TO_AUTH_ACTION[(self.request.method or "GET").upper()]
        if not await self._authorized(action):
            raise web.HTTPError(403, f"User is not authorized to {action} on resource: {AUTH_RESOURCE}.")

    async def permissions(self) -> list[str]:
        """Reading needs Jupyter's read action, the rest its write action; with a team store, also its scope."""
        actions = {action: await self._authorized(action) for action in ("read", "write")}
        granted = await self.slow(self.manager.permissions)
        return [scope for scope in granted if actions["read" if scope == READ else "write"]]

    async def _authorized(self, action: str) -> bool:
        return bool(await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)))


class JupyterSocketAccess(ExtensionHandlerMixin, WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """`JupyterAccess` for the event socket."""

    auth_resource = AUTH_RESOURCE
    app = JupyterAccess.app
    check_access = JupyterAccess.check_access
    _authorized = JupyterAccess._authorized


def routes(access: type, socket_access: type) -> list[tuple[str, type]]:
    """The tornado routes (relative to the app's base URL), each handler mixed with its access base,
    in matching order: fixed paths before `{id}`, and last the JSON 404 for every other path under
    the prefix."""
    matched = [
        (
            API_PREFIX + handler.route.replace("{id}", f"(?P<{getattr(handler, 'path_argument', 'model_id')}>[^/]+)"),
            type(handler.__name__, (handler, socket_access if handler is EventsHandler else access), {}),
        )
        for handler in HANDLERS
    ]
    unknown = type(UnknownRouteHandler.__name__, (UnknownRouteHandler, access), {})
    return [*matched, (API_PREFIX + "(?:/.*)?", unknown)]
