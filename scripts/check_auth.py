"""Fail when any endpoint of the mistudio server extension can be reached without authentication.

Starts (without serving) a Jupyter server that forbids unauthenticated access and loads only this
extension; Jupyter then warns about every handler method lacking `@tornado.web.authenticated`,
`@ws_authenticated` or an explicit `@allow_unauthenticated`, and this script turns each warning into
a failure. `tests/server/test_auth.py` runs it, and also probes every route over HTTP.

    python scripts/check_auth.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mistudio-check-auth-") as scratch:
        # The extension opens its catalog at startup: keep it away from the user's.
        os.environ["MISTUDIO_DB_URL"] = f"sqlite:///{scratch}/catalog.sqlite"
        os.environ["MISTUDIO_CACHE_DIR"] = f"{scratch}/cache"
        from jupyter_server.serverapp import ServerApp
        from jupyter_server.utils import JupyterServerAuthWarning

        app = ServerApp(jpserver_extensions={"mistudio_jupyter": True}, reraise_server_extension_failures=True)
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            app.initialize(
                argv=["--ServerApp.allow_unauthenticated_access=False"], find_extensions=False, new_httpserver=False
            )
        if "mistudio_jupyter" not in app.extension_manager.extension_apps:
            print("the mistudio_jupyter extension did not load", file=sys.stderr)
            return 1
        problems = [str(r.message) for r in records if issubclass(r.category, JupyterServerAuthWarning)]
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print(
                "\nEvery handler method needs @tornado.web.authenticated (@ws_authenticated for websockets).",
                file=sys.stderr,
            )
            return 1
        print("all mistudio endpoints require authentication")
        return 0


if __name__ == "__main__":
    sys.exit(main())
