"""Domain errors with stable machine codes.

Every front end (REST, CLI, magics, widgets) maps these in one place; core code raises them and
never formats HTTP statuses or exit codes itself.
"""

from __future__ import annotations


class MiStudioError(Exception):
    """Base of every error the product reports to a user."""

    code: str = "error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InvalidRepoId(MiStudioError):
    code = "invalid_repo_id"


class RepoNotFound(MiStudioError):
    code = "repo_not_found"


class RevisionNotFound(MiStudioError):
    code = "revision_not_found"


class EntryNotFound(MiStudioError):
    code = "entry_not_found"


class GatedLoginRequired(MiStudioError):
    code = "gated_login_required"


class GatedNotApproved(MiStudioError):
    code = "gated_not_approved"


class InvalidToken(MiStudioError):
    code = "invalid_token"


class HubUnreachable(MiStudioError):
    code = "hub_unreachable"


class InsufficientDisk(MiStudioError):
    code = "insufficient_disk"


class Conflict(MiStudioError):
    code = "conflict"


class NotFound(MiStudioError):
    code = "not_found"


class InvalidArgument(MiStudioError):
    code = "invalid_argument"


class UnsafeRepo(MiStudioError):
    code = "unsafe_repo"


class DownloadFailed(MiStudioError):
    code = "download_failed"


class Cancelled(MiStudioError):
    code = "cancelled"


class Forbidden(MiStudioError):
    """An authenticated caller without the permission the operation needs (a team store scope)."""

    code = "forbidden"


class StoreUnreachable(MiStudioError):
    """The team store (`MISTUDIO_STORE_URL`) did not answer, or answered something that is not its API."""

    code = "store_unreachable"


ALL_ERRORS: tuple[type[MiStudioError], ...] = (
    InvalidRepoId,
    RepoNotFound,
    RevisionNotFound,
    EntryNotFound,
    GatedLoginRequired,
    GatedNotApproved,
    InvalidToken,
    HubUnreachable,
    InsufficientDisk,
    Conflict,
    NotFound,
    InvalidArgument,
    UnsafeRepo,
    DownloadFailed,
    Cancelled,
    Forbidden,
    StoreUnreachable,
)


def error_from(code: str, message: str) -> MiStudioError:
    """The domain error a front end reported as `{"code", "message"}` (a code of no class here keeps its code)."""
    for error_class in ALL_ERRORS:
        if error_class.code == code:
            return error_class(message)
    error = MiStudioError(message)
    error.code = code
    return error
