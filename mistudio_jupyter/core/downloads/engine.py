"""Fetch a Hub repo revision into the Hugging Face cache: resumable, verified and cancellable.

Each file goes over HTTP Range into one stable partial file per blob, so any later attempt (in any
process) continues from the bytes already on disk. Size and hash (sha256 for LFS files, the git
blob sha1 otherwise) are checked before the partial becomes `blobs/{etag}` with an atomic rename;
then the snapshot link and the ref are written as huggingface_hub writes them. huggingface_hub
provides the URL, headers, HTTP session and error types.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin, urlparse

from ..errors import Cancelled, DownloadFailed, HubUnreachable
from ..hub import FilePlan, PlannedFile, map_hub_error
from .cache import RepoCache

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BLOCK_BYTES = 1 << 20
# Bytes held in memory before they reach the partial file are lost if the process is killed,
# so a slow stream is flushed after this long even when the block is not full.
FLUSH_AFTER_S = 0.002
LOCK_POLL_S = 0.2


@dataclasses.dataclass
class Progress:
    """Counters the engine advances per chunk; a reporter thread reads them (no locking needed)."""

    bytes_total: int = 0
    bytes_done: int = 0
    current_file: str | None = None


class _Retry(Exception):
    """A transient HTTP answer (5xx, 429, 408): try again from the current byte."""


class Engine:
    """Downloads the files of `FilePlan`s into `cache_dir`.

    `stop` is checked between chunks and during waits; once set, the engine raises `Cancelled`
    and leaves the partial file in place for a later resume.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        endpoint: str,
        token: str | None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        from huggingface_hub import constants
        from huggingface_hub.utils import build_hf_headers, get_session

        self.cache_dir = Path(cache_dir)
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.stop = stop or threading.Event()
        self.progress = progress or Progress()
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.session = get_session()
        self.read_timeout_s = float(constants.HF_HUB_DOWNLOAD_TIMEOUT)
        self.headers = dict(build_hf_headers(token=token or False, library_name="mistudio-jupyter"))
        self.headers["Accept-Encoding"] = "identity"

    def fetch(self, plan: FilePlan) -> Path:
        """Fetch every file of `plan`; returns the snapshot folder once all of them are in place."""
        repo = RepoCache(self.cache_dir, plan.repo_id)
        self.progress.bytes_total = plan.download_bytes
        self.progress.bytes_done = sum(repo.bytes_on_disk(file) for file in plan.files)
        for file in plan.files:
            self.fetch_file(repo, plan.commit, file)
        repo.write_ref(plan.revision, plan.commit)
        return repo.snapshot(plan.commit)

    def fetch_file(self, repo: RepoCache, commit: str, file: PlannedFile) -> Path:
        """Make `snapshots/{commit}/{file.path}` point at a verified blob; returns that path."""
        if not file.etag:
            raise DownloadFailed(f"the Hub gave no blob id for {file.path} in {repo.repo_id}")
        self.progress.current_file = file.path
        blob = repo.blob(file.etag)
        if not blob.exists():
            with self._locked(repo.lock(file.etag)):
                if not blob.exists():
                    self._download_blob(repo, commit, file, blob)
        pointer = repo.pointer(commit, file.path)
        repo.link(blob, pointer)
        return pointer

    def _download_blob(self, repo: RepoCache, commit: str, file: PlannedFile, blob: Path) -> None:
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(repo.repo_id, file.path, revision=commit, endpoint=self.endpoint)
        partial = repo.partial(file.etag or "")
        problem = ""
        for _attempt in range(2):
            with _PartialFile(partial, file) as sink:
                self._transfer(repo.repo_id, url, sink, file)
            problem = _verification_problem(file, sink)
            if not problem:
                os.replace(partial, blob)
                return
            log.warning("%s of %s: %s; fetching it again", file.path, repo.repo_id, problem)
            self.progress.bytes_done -= file.size
            partial.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{file.path} of {repo.repo_id} failed verification twice ({problem}); the corrupt bytes were discarded"
        )

    def _transfer(self, repo_id: str, url: str, sink: "_PartialFile", file: PlannedFile) -> None:
        """Receive the rest of `file` into `sink`, retrying transient failures from the current byte."""
        import httpx2

        failures = 0
        while sink.size < file.size:
            start = sink.size
            try:
                self._receive(repo_id, url, sink, file)
                continue
            except (httpx2.TransportError, _Retry) as error:
                failures = 0 if sink.size > start else failures + 1
                if failures > self.max_retries:
                    raise HubUnreachable(
                        f"downloading {file.path} of {repo_id} failed {failures} times in a row ({error!r}); "
                        "resume to continue from the bytes already on disk"
                    ) from error
                log.info("retrying %s of %s from byte %d after %r", file.path, repo_id, sink.size, error)
            self._sleep(self.backoff_s * 2 ** (failures - 1) if failures else 0.0)

    def _receive(self, repo_id: str, url: str, sink: "_PartialFile", file: PlannedFile) -> None:
        progress = self.progress
        with self._open(repo_id, url, sink.size) as response:
            if response.status_code == 200 and sink.size:
                progress.bytes_done -= sink.size
                sink.restart()
            for chunk in response.iter_raw():
                if self.stop.is_set():
                    raise Cancelled("download cancelled")
                sink.write(chunk)
                progress.bytes_done += len(chunk)
                if sink.size > file.size:
                    raise DownloadFailed(f"the Hub sent more than the {file.size} bytes of {file.path} in {repo_id}")

    @contextlib.contextmanager
    def _open(self, repo_id: str, url: str, start: int) -> Iterator[Any]:
        """GET `url` from byte `start`, following redirects ourselves so that `Authorization`
        never leaves the Hub's host."""
        import httpx2

        headers = dict(self.headers)
        if start:
            headers["Range"] = f"bytes={start}-"
        hub_host = urlparse(self.endpoint).netloc
        timeout = httpx2.Timeout(self.read_timeout_s, connect=self.read_timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            request = self.session.build_request("GET", url, headers=headers, timeout=timeout)
            response = self.session.send(request, stream=True, follow_redirects=False)
            if not response.is_redirect:
                break
            response.close()
            url = urljoin(url, response.headers["Location"])
            if urlparse(url).netloc != hub_host:
                headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
        else:
            raise DownloadFailed(f"too many redirects while downloading from {repo_id}")
        try:
            self._raise_for_status(repo_id, response)
            yield response
        finally:
            response.close()

    def _raise_for_status(self, repo_id: str, response: Any) -> None:
        if response.status_code < 400:
            return
        response.read()
        if response.status_code in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {response.status_code}")
        from huggingface_hub.utils import hf_raise_for_status

        try:
            hf_raise_for_status(response)
        except Exception as error:  # noqa: BLE001 - every Hub refusal leaves as a domain error
            mapped = map_hub_error(error, repo_id, self.token, self.endpoint)
            raise (mapped or DownloadFailed(f"the Hub refused a download from {repo_id}: {error}")) from error

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Hold huggingface_hub's per-blob lock, waiting for another writer without missing a cancel."""
        from filelock import FileLock, Timeout

        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        while True:
            try:
                lock.acquire(timeout=LOCK_POLL_S)
                break
            except Timeout:
                if self.stop.is_set():
                    raise Cancelled("download cancelled") from None
        try:
            yield
        finally:
            lock.release()

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Cancelled("download cancelled")


class _PartialFile:
    """The stable partial file of one blob: append-only, hashed as it grows.

    Writing and hashing run in a helper thread (both release the GIL), so the network read
    never waits for the disk. Bytes reach the file within FLUSH_AFTER_S of arriving.
    """

    def __init__(self, path: Path, file: PlannedFile) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = file
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        if os.fstat(self._fd).st_size > file.size:
            os.ftruncate(self._fd, 0)
        self._hasher = _new_hasher(file)
        self.size = self._hash_existing()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flushed_at = time.monotonic()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="mistudio-partial-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> "_PartialFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise DownloadFailed(f"cannot write {self.path}: {self._error}") from self._error
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        self.size += len(chunk)
        now = time.monotonic()
        if self._pending_bytes >= BLOCK_BYTES or now - self._flushed_at >= FLUSH_AFTER_S:
            self._flush(now)

    def restart(self) -> None:
        """Drop everything: the server ignored the Range and sends the file from its first byte."""
        self._flush(time.monotonic())
        self._queue.join()
        os.ftruncate(self._fd, 0)
        self._hasher = _new_hasher(self._file)
        self.size = 0

    def hexdigest(self) -> str | None:
        return self._hasher.hexdigest() if self._hasher else None

    def close(self) -> None:
        """Write what is pending and close the file; raises what the writer thread hit."""
        self._flush(time.monotonic())
        self._queue.put(None)
        self._thread.join()
        os.close(self._fd)
        if self._error is not None:
            raise DownloadFailed(f"cannot write {self.path}: {self._error}") from self._error

    def _flush(self, now: float) -> None:
        if self._pending:
            self._queue.put(b"".join(self._pending) if len(self._pending) > 1 else self._pending[0])
            self._pending, self._pending_bytes = [], 0
        self._flushed_at = now

    def _drain(self) -> None:
        while (block := self._queue.get()) is not None:
            try:
                if self._error is None:
                    _write_all(self._fd, block)
                    if self._hasher:
                        self._hasher.update(block)
            except OSError as error:
                self._error = error
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _hash_existing(self) -> int:
        size = 0
        with open(self.path, "rb", buffering=0) as existing:
            while block := existing.read(8 * BLOCK_BYTES):
                if self._hasher:
                    self._hasher.update(block)
                size += len(block)
        return size


def _write_all(fd: int, block: bytes) -> None:
    view = memoryview(block)
    while view:
        view = view[os.write(fd, view):]


def _new_hasher(file: PlannedFile) -> Any:
    """sha256 for LFS files; for regular files the git blob sha1, whose header is the size."""
    if file.sha256:
        return hashlib.sha256()
    if file.blob_id and len(file.blob_id) == 40:
        hasher = hashlib.sha1()
        hasher.update(b"blob %d\0" % file.size)
        return hasher
    return None


def _verification_problem(file: PlannedFile, sink: _PartialFile) -> str:
    """Why the finished partial file is not `file`, or '' when it is."""
    if sink.size != file.size:
        return f"size {sink.size} instead of {file.size}"
    expected = file.sha256 or (file.blob_id if sink.hexdigest() else None)
    actual = sink.hexdigest()
    if expected and actual != expected:
        return f"hash {actual} instead of {expected}"
    return ""


__all__ = ["Engine", "Progress"]
