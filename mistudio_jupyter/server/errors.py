"""The one place that turns errors into HTTP statuses and `{"error": {"code", "message"}}` bodies.

Core raises `MiStudioError`s with stable codes; this module only maps codes to statuses. Anything
else becomes a 500 whose body names no exception, file or traceback, and every message is scrubbed
of anything shaped like a Hugging Face token.
"""

from __future__ import annotations

import re
from http.client import responses

from tornado.web import HTTPError

from ..core.errors import MiStudioError


class PayloadTooLarge(MiStudioError):
    """A request body over the server's limit."""

    code = "payload_too_large"


class UnknownChoice(MiStudioError):
    """A well-formed value outside its enumeration (an unknown quantization, dtype, status…)."""

    code = "unknown_choice"


STATUS_BY_CODE: dict[str, int] = {
    "invalid_argument": 400,
    "invalid_repo_id": 400,
    "unsafe_repo": 400,
    "gated_login_required": 401,
    "invalid_token": 401,
    "gated_not_approved": 403,
    "forbidden": 403,
    "not_found": 404,
    "repo_not_found": 404,
    "revision_not_found": 404,
    "entry_not_found": 404,
    "conflict": 409,
    "cancelled": 409,
    "payload_too_large": 413,
    "unknown_choice": 422,
    "hub_unreachable": 502,
    "download_failed": 502,
    "store_unreachable": 502,
    "insufficient_disk": 507,
}

_CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

_SECRET = re.compile(r"\bhf_[A-Za-z0-9_\-]{4,}|(?i:bearer)\s+\S+")


def redact(text: str) -> str:
    """`text` with every token-shaped substring replaced."""
    return _SECRET.sub("[redacted]", text)


def error_response(error: BaseException | None, status: int = 500) -> tuple[int, dict[str, dict[str, str]]]:
    """The HTTP status and JSON body reporting `error` (or a bare `status` when there is none)."""
    if isinstance(error, MiStudioError):
        status = STATUS_BY_CODE.get(error.code, 500)
        code, message = error.code, error.message
    elif isinstance(error, HTTPError):
        status = error.status_code
        code = _CODE_BY_HTTP_STATUS.get(status, "http_error")
        message = error.log_message % error.args if error.log_message else responses.get(status, "error")
    elif status >= 500:
        code, message = "internal_error", "internal server error; see the Jupyter server log"
    else:
        code, message = _CODE_BY_HTTP_STATUS.get(status, "http_error"), responses.get(status, "error")
    return status, {"error": {"code": code, "message": redact(str(message))}}
