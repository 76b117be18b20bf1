"""The team store: one service on a JupyterHub that downloads and deletes for everyone.

`mistudio store` serves the REST API and event socket of the server extension as a JupyterHub service,
authenticated by the Hub's OAuth and authorized by its scopes (`custom:mistudio:read`, `download`,
`delete`). It is the only writer of the shared cache.
"""

from __future__ import annotations

from .app import Store, serve

__all__ = ["Store", "serve"]
