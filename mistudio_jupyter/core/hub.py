"""The Hugging Face Hub, seen through huggingface_hub: ids, revisions, file plans, headers, errors.

Every Hub error leaves this module as a `core.errors` exception with a stable code; the three
authentication cases (no token, bad token, token not granted) are told apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from .errors import (
    DownloadFailed,
    EntryNotFound,
    GatedLoginRequired,
    GatedNotApproved,
    HubUnreachable,
    InvalidArgument,
    InvalidRepoId,
    InvalidToken,
    MiStudioError,
    RepoNotFound,
    RevisionNotFound,
    UnsafeRepo,
)
from .settings import Settings

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
PICKLE_PATTERNS = ("*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.ckpt")
HEADER_GUESS_BYTES = 32 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_REVISION_LENGTH = 255
_REVISION_FORBIDDEN = ("~", "^", ":", "?", "*", "[", "\\")
GIT_OBJECT_ID = r"[0-9a-f]{40}"  # a commit or git blob id, as the Hub reports them
SHA256 = r"[0-9a-f]{64}"  # an LFS file's sha256


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """One file to fetch: its size, git blob id and, for LFS files, sha256 (which is also its etag)."""

    path: str
    size: int
    blob_id: str | None
    sha256: str | None

    @property
    def etag(self) -> str | None:
        return self.sha256 or self.blob_id


@dataclasses.dataclass(frozen=True)
class FilePlan:
    """What downloading a repo revision means: the files, and what is unsafe about it."""

    repo_id: str
    revision: str
    commit: str
    files: list[PlannedFile]
    warnings: list[str]
    gated: bool
    remote_code: bool
    pickle_only: bool
    config: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)
    info: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def download_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON, for the download worker (the Hub's model info stays behind)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "info"}
        return {**fields, "files": [dataclasses.asdict(file) for file in self.files]}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> FilePlan:
        files = [PlannedFile(**file) for file in fields["files"]]
        return cls(**{**fields, "files": files})

    def ensure_safe(self, *, allow_pickle: bool = False, allow_remote_code: bool = False) -> None:
        if self.pickle_only and not allow_pickle:
            raise UnsafeRepo(
                f"{self.repo_id} has only pickle weights (.bin/.pt), which can run code when loaded; "
                "pass allow_pickle=True to download them anyway"
            )
        if self.remote_code and not allow_remote_code:
            raise UnsafeRepo(
                f"{self.repo_id} needs custom code from the repo (config auto_map); mistudio never runs it "
                "unless you pass allow_remote_code=True"
            )


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def validate_repo_id(repo_id: object) -> str:
    """Return `repo_id` if it is a valid Hub model id; raise InvalidRepoId with the reason otherwise."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hf_validate

    if not isinstance(repo_id, str) or not repo_id.strip():
        raise InvalidRepoId("a repo id is required, e.g. 'google/gemma-2-2b'")
    if "://" in repo_id or repo_id.startswith(("/", "\\", "~")) or ".." in repo_id.split("/"):
        raise InvalidRepoId(f"{repo_id!r} is not a repo id; use the form 'org/name', e.g. 'google/gemma-2-2b'")
    try:
        hf_validate(repo_id)
    except HFValidationError as error:
        raise InvalidRepoId(f"{repo_id!r} is not a valid repo id: {error}") from None
    return repo_id


def validate_revision(revision: object) -> str:
    """Return `revision` if git would accept it as a branch, tag or commit; raise InvalidArgument otherwise.

    The revision names a folder under the cache's `refs/`, so anything that could leave it (`.`, `..`,
    empty components, a trailing `/`) is refused, as are the other forms `git check-ref-format` rejects.
    """
    if not isinstance(revision, str) or not revision:
        raise InvalidArgument("a revision (branch, tag or commit) must be a non-empty string")
    problem = _revision_problem(revision)
    if problem:
        raise InvalidArgument(f"{revision!r} is not a valid revision: {problem}")
    return revision


def _revision_problem(revision: str) -> str:
    if len(revision) > MAX_REVISION_LENGTH:
        return f"longer than {MAX_REVISION_LENGTH} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 or ch.isspace() for ch in revision):
        return "it contains a space or a control character"
    if any(ch in _REVISION_FORBIDDEN for ch in revision):
        return f"it contains one of {' '.join(_REVISION_FORBIDDEN)}"
    if "@{" in revision or revision == "@":
        return "'@{' and '@' alone are reserved"
    if revision.startswith("-"):
        return "it starts with '-'"
    if revision.endswith((".", "/")) or revision.startswith("/"):
        return "it starts with '/' or ends with '/' or '.'"
    for component in revision.split("/"):
        if not component:
            return "it has an empty path component ('//')"
        if component.startswith(".") or component.endswith(".lock"):
            return "a path component starts with '.' or ends with '.lock'"
    return ""


def validate_token(token: object, *, source: str = "the token") -> str | None:
    """Return `token` if an HTTP header can carry it (printable ASCII, no spaces); raise InvalidArgument.

    The message never repeats the token.
    """
    if token is None:
        return None
    if not isinstance(token, str) or not token or not all(33 <= ord(ch) <= 126 for ch in token):
        raise InvalidArgument(
            f"{source} is not a Hugging Face token: a token is printable ASCII without spaces (hf_...)"
        )
    return token


class HubClient:
    """Reads what the Hub knows about a repo, without downloading any weights."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoint = settings.hub_endpoint
        # Seconds the Hub took to answer the latest request (None before any): what the path to it is like.
        self.answer_s: float | None = None

    def resolve_token(self, token: str | None = None) -> str | None:
        """The token to use: the argument, else HF_TOKEN (settings), else the huggingface_hub login."""
        if token:
            return validate_token(token)
        if self.settings.token:
            return validate_token(self.settings.token, source="HF_TOKEN")
        from huggingface_hub import get_token

        return validate_token(get_token(), source="the token saved by `hf auth login`")

    @contextlib.contextmanager
    def errors(self, repo_id: str, token: str | None = None) -> Iterator[None]:
        """Map huggingface_hub and network exceptions raised inside the block to domain errors."""
        try:
            yield
        except MiStudioError:
            raise
        except Exception as error:  # noqa: BLE001 - every Hub failure must leave as a domain error
            mapped = map_hub_error(error, repo_id, token, self.endpoint)
            if mapped is None:
                raise
            raise mapped from error

    def model_info(self, repo_id: str, revision: str | None = None, token: str | None = None) -> Any:
        validate_repo_id(repo_id)
        if revision is not None:
            validate_revision(revision)
        token = self.resolve_token(token)
        with self.errors(repo_id, token):
            # As `HfApi.model_info(files_metadata=True)` asks, with the request in flight while its module
            # loads (a tenth of a second in a fresh process, as long as a new connection's round trips).
            answer = _in_background(self._get, self._api_url(repo_id, revision), token, {"blobs": True})
            from huggingface_hub import ModelInfo
            from huggingface_hub.utils import hf_raise_for_status

            response = answer.result()
            hf_raise_for_status(response)
            return ModelInfo(**response.json())

    def _api_url(self, repo_id: str, revision: str | None) -> str:
        if revision is None:
            return f"{self.endpoint}/api/models/{repo_id}"
        return f"{self.endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"

    def _get(self, url: str, token: str | None, params: dict[str, Any] | None = None) -> Any:
        from huggingface_hub.utils import build_hf_headers, get_session

        headers = build_hf_headers(token=token or False)
        asked = time.monotonic()
        response = get_session().get(url, headers=headers, params=params, follow_redirects=True)
        self.answer_s = time.monotonic() - asked
        return response

    def check_downloadable(self, repo_id: str, revision: str | None = None, token: str | None = None) -> Any:
        """The repo's model info, after one round trip; raises what a download would fail with at once:
        no such repo or revision, a rejected token, or a gated repo and no token (its info is public)."""
        token = self.resolve_token(token)
        info = self.model_info(repo_id, revision, token)
        if info.gated and not token:
            raise gated_login_required(repo_id, self.endpoint)
        return info

    def resolve_commit(self, repo_id: str, revision: str | None = None, token: str | None = None) -> str:
        return self.model_info(repo_id, revision, token).sha

    def read_json(self, repo_id: str, commit: str, path: str, token: str | None = None) -> dict[str, Any] | None:
        """A small JSON file of the repo, read over HTTP without touching the cache; None if absent."""
        return self._read_json_at(repo_id, commit, path, token)[1]

    def _read_json_at(
        self, repo_id: str, revision: str, path: str, token: str | None = None
    ) -> tuple[str | None, dict[str, Any] | None]:
        """`read_json` at any revision, with the commit the Hub read it from (`X-Repo-Commit`)."""
        from huggingface_hub.utils import hf_raise_for_status

        token = self.resolve_token(token)
        url = resolve_url(self.endpoint, repo_id, revision, path)
        with self.errors(repo_id, token):
            response = self._get(url, token)
            commit = response.headers.get("X-Repo-Commit")
            if response.status_code == 404 and response.headers.get("X-Error-Code") == "EntryNotFound":
                return commit, None
            hf_raise_for_status(response)
            try:
                return commit, json.loads(response.content)
            except ValueError:
                raise EntryNotFound(f"{path} in {repo_id} is not valid JSON") from None

    def download_plan(
        self, repo_id: str, revision: str | None = None, token: str | None = None
    ) -> tuple[Any, FilePlan | None]:
        """`check_downloadable`, and the plan of the info it got (None when it cannot be made: the worker
        asks again and records why). config.json is read at `revision` while the info is asked, so
        both take one round trip; it is read again by commit if the branch moved in between."""
        validate_repo_id(repo_id)
        validate_revision(revision or "main")
        token = self.resolve_token(token)
        reading = _in_background(self._read_json_at, repo_id, revision or "main", "config.json", token)
        info = self.check_downloadable(repo_id, revision, token)
        try:
            commit, config = reading.result()
        except MiStudioError:  # refused at the branch: asked again by commit
            commit, config = None, None
        try:
            return info, self.plan_of(info, repo_id, revision, token, config=config if commit == info.sha else False)
        except MiStudioError:
            return info, None

    def file_plan(self, repo_id: str, revision: str | None = None, token: str | None = None) -> FilePlan:
        """The files a download of this revision fetches, with sizes, hashes and safety flags."""
        return self.plan_of(self.model_info(repo_id, revision, token), repo_id, revision, token)

    def plan_of(
        self,
        info: Any,
        repo_id: str,
        revision: str | None = None,
        token: str | None = None,
        *,
        config: dict[str, Any] | None | Literal[False] = False,
    ) -> FilePlan:
        """`file_plan` for the model info `info` already asked of the Hub; `config` is its config.json
        when already read at that commit (None: there is none), else (False) it is read now."""
        token = self.resolve_token(token)
        if not isinstance(info.sha, str) or not is_git_object_id(info.sha):
            raise DownloadFailed(f"the Hub answered an invalid commit id for {repo_id}; nothing was downloaded")
        siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
        selected, warnings, pickle_only = select_files(list(siblings))
        files = [_planned(siblings[path], repo_id) for path in selected]
        if "config.json" not in siblings:
            config = None
        elif config is False:
            config = self.read_json(repo_id, info.sha, "config.json", token)
        remote_code = bool(config and config.get("auto_map"))
        if config is None:
            warnings.append("no config.json: the architecture cannot be read and transformers cannot load it")
        if remote_code:
            warnings.append("needs custom code from the repo (auto_map); it is never executed unless allowed")
        return FilePlan(
            repo_id=repo_id,
            revision=revision or "main",
            commit=info.sha,
            files=files,
            warnings=warnings,
            gated=bool(info.gated),
            remote_code=remote_code,
            pickle_only=pickle_only,
            config=config,
            info=info,
        )

    def safetensors_tensors(self, repo_id: str, commit: str, token: str | None = None) -> dict[str, TensorInfo]:
        """Name → dtype and shape of every tensor, from the safetensors headers alone.

        Each shard costs one small ranged read (a second only when its header is unusually long), in
        parallel: a 70B checkpoint's 30 headers take well under a second and a few hundred KB.
        """
        from concurrent.futures import ThreadPoolExecutor

        token = self.resolve_token(token)
        index = self.read_json(repo_id, commit, "model.safetensors.index.json", token)
        if index is not None:
            shards = sorted(set(index.get("weight_map", {}).values()))
        elif self._exists(repo_id, commit, "model.safetensors", token):
            shards = ["model.safetensors"]
        else:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:
            headers = list(pool.map(lambda shard: self._safetensors_header(repo_id, commit, shard, token), shards))
        tensors: dict[str, TensorInfo] = {}
        for header in headers:
            for name, info in header.items():
                if name != "__metadata__":
                    tensors[name] = TensorInfo(dtype=info["dtype"], shape=tuple(info["shape"]))
        return tensors

    def _exists(self, repo_id: str, commit: str, path: str, token: str | None) -> bool:
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = resolve_url(self.endpoint, repo_id, commit, path)
        with self.errors(repo_id, token):
            response = get_session().head(url, headers=build_hf_headers(token=token or False), follow_redirects=True)
            if response.status_code == 404:
                return False
            hf_raise_for_status(response)
        return True

    def _ranged_read(self, repo_id: str, commit: str, path: str, start: int, end: int, token: str | None) -> bytes:
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = resolve_url(self.endpoint, repo_id, commit, path)
        headers = {**build_hf_headers(token=token or False), "Range": f"bytes={start}-{end}"}
        with self.errors(repo_id, token):
            response = get_session().get(url, headers=headers, follow_redirects=True)
            hf_raise_for_status(response)
        return response.content

    def _safetensors_header(self, repo_id: str, commit: str, path: str, token: str | None) -> dict[str, Any]:
        first = self._ranged_read(repo_id, commit, path, 0, HEADER_GUESS_BYTES - 1, token)
        if len(first) < 8:
            raise EntryNotFound(f"{path} in {repo_id} is not a safetensors file")
        length = int.from_bytes(first[:8], "little")
        if length > MAX_HEADER_BYTES:
            raise EntryNotFound(f"{path} in {repo_id} has an implausible safetensors header ({length} bytes)")
        raw = first[8 : 8 + length]
        if len(raw) < length:
            raw += self._ranged_read(repo_id, commit, path, 8 + len(raw), 8 + length - 1, token)
        try:
            return json.loads(raw)
        except ValueError:
            raise EntryNotFound(f"{path} in {repo_id} has a corrupt safetensors header") from None


def select_files(paths: list[str]) -> tuple[list[str], list[str], bool]:
    """Choose config, tokenizer and weight files; safetensors first, pickle only when nothing else.

    Returns (selected paths, warnings, pickle_only).
    """
    top_level = [path for path in paths if "/" not in path]
    wanted = [path for path in top_level if path in CONFIG_FILES or path in TOKENIZER_PATTERNS]
    safetensors = _matching(top_level, SAFETENSORS_PATTERNS)
    if safetensors:
        return sorted(wanted + safetensors), [], False
    pickled = _matching(top_level, PICKLE_PATTERNS)
    if pickled:
        return sorted(wanted + pickled), ["only pickle weights (.bin/.pt): loading them can run arbitrary code"], True
    return sorted(wanted), ["no weight files found"], False


def _matching(paths: list[str], patterns: tuple[str, ...]) -> list[str]:
    return [path for path in paths if any(fnmatch.fnmatch(path, pattern) for pattern in patterns)]


def _planned(sibling: Any, repo_id: str) -> PlannedFile:
    """The file to fetch for a sibling of the Hub's answer, refusing names and ids that are not what
    the Hub would send: they become paths in the cache, and a mirror can be anyone's."""
    path = sibling.rfilename
    if not is_safe_repo_path(path):
        raise DownloadFailed(
            f"the Hub listed a file name that is not a safe relative path in {repo_id}; nothing was downloaded"
        )
    lfs = getattr(sibling, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    size = getattr(lfs, "size", None) if lfs is not None else None
    blob_id = sibling.blob_id
    if not _well_formed_ids(lfs is not None, blob_id, sha256):
        raise DownloadFailed(
            f"the Hub gave {path} of {repo_id} a malformed blob id or sha256 (expected 40 or 64 "
            "lowercase hex digits); nothing was downloaded"
        )
    return PlannedFile(path=path, size=int(size or sibling.size or 0), blob_id=blob_id, sha256=sha256)


def _well_formed_ids(lfs: bool, blob_id: object, sha256: object) -> bool:
    """An LFS file needs its sha256, any other file its git blob id; whatever is given is well formed."""
    if lfs and not is_sha256(sha256):
        return False
    return is_git_object_id(blob_id) if blob_id is not None or not lfs else True


def is_git_object_id(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(GIT_OBJECT_ID, value) is not None


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(SHA256, value) is not None


def is_safe_repo_path(path: object) -> bool:
    """Whether `path` is a relative POSIX path inside a repo: no `.`/`..` or empty components, no
    absolute path, backslash or control character."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        return False
    if any(ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def map_hub_error(error: BaseException, repo_id: str, token: str | None, endpoint: str) -> MiStudioError | None:
    """The domain error for a huggingface_hub or network exception; None for anything else."""
    import httpx2  # the HTTP client huggingface_hub 2.x is built on
    from huggingface_hub import errors as hf

    status = getattr(getattr(error, "response", None), "status_code", None)
    message = str(error).lower()
    if isinstance(error, hf.HFValidationError):
        return InvalidRepoId(f"{repo_id!r} is not a valid repo id: {error}")
    if status == 401 and ("invalid credentials" in message or "invalid user token" in message):
        return InvalidToken(
            "the Hugging Face token was rejected by the Hub (invalid or expired); check HF_TOKEN or `hf auth login`"
        )
    if isinstance(error, hf.GatedRepoError):
        if status == 403 or token:
            return GatedNotApproved(
                f"{repo_id} is gated and this token has not been granted access; request it at {endpoint}/{repo_id}",
                url=f"{endpoint}/{repo_id}",
            )
        return gated_login_required(repo_id, endpoint)
    if isinstance(error, hf.RevisionNotFoundError):
        return RevisionNotFound(f"{repo_id} has no such revision")
    if isinstance(error, hf.RepositoryNotFoundError):
        return RepoNotFound(f"{repo_id} was not found on the Hub (or it is private and the token cannot see it)")
    if isinstance(error, hf.RemoteEntryNotFoundError):
        return EntryNotFound(f"a file was not found in {repo_id}: {error}")
    if isinstance(
        error,
        (httpx2.TransportError, ConnectionError, TimeoutError, hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError),
    ):
        return HubUnreachable(f"cannot reach the Hub at {endpoint}: {type(error).__name__}")
    if isinstance(error, hf.HfHubHTTPError) and status is not None and status >= 500:
        return HubUnreachable(f"the Hub at {endpoint} answered {status} for {repo_id}; try again later")
    if isinstance(error, hf.HfHubHTTPError) and status == 401:
        return InvalidToken("the Hub refused the credentials (401)")
    return None


def resolve_url(endpoint: str, repo_id: str, revision: str, path: str) -> str:
    """A model file's `resolve` URL, as `huggingface_hub.hf_hub_url` makes it (whose module would make a
    download worker's start-up 40 ms longer)."""
    return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def gated_login_required(repo_id: str, endpoint: str) -> GatedLoginRequired:
    return GatedLoginRequired(
        f"{repo_id} is gated: log in (`hf auth login`), set HF_TOKEN or pass a token, after requesting access "
        f"at {endpoint}/{repo_id}"
    )


_T = TypeVar("_T")


def _in_background(function: Callable[..., _T], *args: Any) -> Future[_T]:
    """`function(*args)` called on a new thread; its result, or what it raised, comes through the future."""
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 - the caller raises it from `result()`
            future.set_exception(error)

    threading.Thread(target=run, name="mistudio-hub", daemon=True).start()
    return future
