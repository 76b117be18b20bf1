"""Access to the team store: JupyterHub OAuth (cookie in a browser, `Authorization: token …` for API
clients) and the user's (or token's) `custom:mistudio:*` scopes."""

from __future__ import annotations

from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web, websocket
from tornado.log import app_log

from ..core.errors import Forbidden
from ..core.store import PERMISSIONS
from ..server.handlers import Backend

SCOPE_PREFIX = "custom:mistudio:"


def granted(user: dict[str, Any]) -> list[str]:
    """The permissions whose `custom:mistudio:<name>` scope the Hub granted `user` (a user or service model)."""
    scopes = user.get("scopes", ())
    return [permission for permission in PERMISSIONS if SCOPE_PREFIX + permission in scopes]


def require_scope(user: dict[str, Any], scope: str) -> None:
    """Forbidden unless `scope` is among the permissions `granted` to `user`."""
    if scope not in granted(user):
        raise Forbidden(
            f"{user.get('kind', 'user')} {user.get('name')!r} lacks the {SCOPE_PREFIX}{scope} scope; "
            "a JupyterHub admin grants it with a role"
        )


class HubAccess(HubOAuthenticated, web.RequestHandler):
    """The access base of the store's REST routes."""

    @property
    def app(self) -> Backend:
        return self.settings["mistudio"]  # type: ignore[no-any-return]

    @property
    def log(self) -> Any:
        return app_log

    @property
    def user_name(self) -> str:
        return str(self.current_user["name"])

    async def check_access(self, scope: str) -> None:
        require_scope(self.current_user, scope)

    async def permissions(self) -> list[str]:
        return granted(self.current_user)


class HubSocketAccess(HubOAuthenticated, websocket.WebSocketHandler):
    """The access base of the store's event socket."""

    app = HubAccess.app
    log = HubAccess.log
    check_access = HubAccess.check_access
