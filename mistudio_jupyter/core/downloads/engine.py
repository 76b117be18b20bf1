"""Fetch a Hub repo revision into the Hugging Face cache: resumable, verified and cancellable.

Each file goes over HTTP Range into one stable partial file per blob, so any later attempt (in any
process) continues from the bytes already on disk. Size and hash (sha256 for LFS files, the git
blob sha1 otherwise) are checked before the partial becomes `blobs/{etag}` with an atomic rename;
then the snapshot link and the ref are written as huggingface_hub writes them. huggingface_hub
provides the URL, headers, HTTP session and error types.

The body is read from the connection's socket straight into reusable blocks that are appended to
the partial file and then hashed by a thread while still in memory, so receiving and hashing
overlap and no byte is read twice. On a low-latency path the socket's receive buffer is pinned
small, so a killed download loses little besides the block in hand.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import mmap
import os
import queue
import shutil
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlparse

from ..errors import Cancelled, DownloadFailed, HubUnreachable, InsufficientDisk, MiStudioError
from ..hub import FilePlan, PlannedFile, map_hub_error
from ..units import format_bytes
from .cache import RepoCache

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BLOCK_BYTES = 1 << 20
HASH_WINDOW_BYTES = 8 << 20
HASH_QUEUE_BLOCKS = 16
# Bytes held in memory before they reach the partial file are lost if the process is killed,
# so a slow stream is flushed after this long even when the block is not full.
FLUSH_AFTER_S = 0.002
# How often a wait (for the blob lock, for the hash to catch up) checks the stop event.
POLL_S = 0.2
# A kill also loses what the kernel holds in the socket's receive buffer, which Linux autotunes up
# to tcp_rmem's maximum (often 6-32 MiB) whatever the path. Where the round trip is so short that
# LOW_LATENCY_WINDOW_BYTES carries LOW_LATENCY_RATE_BPS (under ~200 µs: loopback, a mirror in the
# same rack) the buffer is pinned to that; on any longer path autotuning is left alone.
LOW_LATENCY_WINDOW_BYTES = 2 << 20
LOW_LATENCY_RATE_BPS = 10e9


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
            with _PartialFile(partial, file, self.stop) as sink:
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
            readinto = _body_reader(response, self.read_timeout_s)
            while not self.stop.is_set():
                count = readinto(sink.space())
                if not count:
                    return
                sink.advance(count)
                progress.bytes_done += count
                if sink.size > file.size:
                    raise DownloadFailed(f"the Hub sent more than the {file.size} bytes of {file.path} in {repo_id}")
            raise Cancelled("download cancelled")

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
            _pin_receive_buffer(response)
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
                lock.acquire(timeout=POLL_S)
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

    Bytes are received straight into a block (`space`, `advance`) that is appended to the file when
    full or FLUSH_AFTER_S old, so a kill loses at most that block; the written block then goes to
    a `_BlockHasher` thread, so the slower hash never holds up the socket and no byte is read twice.
    """

    def __init__(self, path: Path, file: PlannedFile, stop: threading.Event) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = file
        self._stop = stop
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self.size = os.fstat(self._fd).st_size
        if self.size > file.size:
            os.ftruncate(self._fd, 0)
            self.size = 0
        self._hashing = _BlockHasher(path, file, self.size)
        self._block, self._filled = self._hashing.take(stop), 0
        self._flushed_at = time.monotonic()
        self._digest: str | None = None

    def __enter__(self) -> "_PartialFile":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(complete=exc_type is None)

    def space(self) -> memoryview:
        """Where the next received bytes go: the unfilled rest of the block."""
        return self._block[self._filled:]

    def advance(self, count: int) -> None:
        """`count` bytes were received into the start of `space()`."""
        self._filled += count
        self.size += count
        if self._filled == len(self._block) or time.monotonic() - self._flushed_at >= FLUSH_AFTER_S:
            self._flush()

    def restart(self) -> None:
        """Drop everything: the server ignored the Range and sends the file from its first byte."""
        self._hashing.stop()
        os.ftruncate(self._fd, 0)
        self.size = self._filled = 0
        self._hashing = _BlockHasher(self.path, self._file, 0)
        self._block = self._hashing.take(self._stop)

    def hexdigest(self) -> str | None:
        """The hash of the whole file, once closed after a complete transfer."""
        return self._digest

    def close(self, complete: bool = True) -> None:
        """Write what is pending and close the file; after a `complete` transfer, first wait
        until every byte is hashed (raises `Cancelled` if the stop event is set meanwhile)."""
        try:
            self._write_block()
            if complete:
                self._digest = self._hashing.result(self._stop)
        finally:
            self._hashing.stop()
            os.close(self._fd)

    def _flush(self) -> None:
        if self._filled:
            self._write_block()
            self._block = self._hashing.take(self._stop)
        self._flushed_at = time.monotonic()

    def _write_block(self) -> None:
        """Append the filled part of the block and pass it to the hasher (which owns it from then on)."""
        if not self._filled:
            return
        try:
            _write_all(self._fd, self._block[: self._filled])
        except OSError as error:
            raise _write_error(self.path, error) from error
        self._hashing.hand(self._block, self._filled)
        self._filled = 0


class _BlockHasher:
    """The sha256 (LFS) or git blob sha1 of a partial file from its first byte, on a thread: first
    the bytes already on disk (mapped from the page cache), then each block handed over after it
    was written, hashed from memory while it is still hot (mapping the page cache again costs ~20%).

    Blocks circulate between `take` and `hand`: HASH_QUEUE_BLOCKS of them, so the receiver runs at
    most that far ahead of the hash and the memory stays bounded. hashlib releases the GIL.
    """

    def __init__(self, path: Path, file: PlannedFile, on_disk: int) -> None:
        self._path = path
        self._on_disk = on_disk
        self._hasher = _new_hasher(file)
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._written: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._blocks_left = HASH_QUEUE_BLOCKS if self._hasher else 1
        self._stopped = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="mistudio-partial-hasher", daemon=True)
        if self._hasher:
            self._thread.start()

    def take(self, stop: threading.Event) -> memoryview:
        """A block to receive into: a free one, a new one while fewer than HASH_QUEUE_BLOCKS exist,
        else the next one the hash frees."""
        with contextlib.suppress(queue.Empty):
            return self._free.get_nowait()
        if self._blocks_left:
            self._blocks_left -= 1
            return memoryview(bytearray(BLOCK_BYTES))
        while True:
            try:
                return self._free.get(timeout=POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise Cancelled("download cancelled") from None
                if not self._thread.is_alive():
                    raise self._failure() from self._error

    def hand(self, block: memoryview, length: int) -> None:
        """The first `length` bytes of `block` were appended to the file: hash them, then free it."""
        if self._hasher:
            self._written.put((block, length))
        else:
            self._free.put(block)

    def result(self, stop: threading.Event) -> str | None:
        """The hex digest once every handed byte is hashed; raises `Cancelled` once `stop` is set."""
        if not self._hasher:
            return None
        self._written.put(None)
        while self._thread.is_alive():
            if stop.is_set():
                raise Cancelled("download cancelled")
            self._thread.join(POLL_S)
        if self._error is not None:
            raise self._failure() from self._error
        return self._hasher.hexdigest()

    def stop(self) -> None:
        self._stopped = True
        self._written.put(None)
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            self._hash_on_disk()
            while (item := self._written.get()) is not None and not self._stopped:
                block, length = item
                self._hasher.update(block[:length])
                self._free.put(block)
        except Exception as error:  # noqa: BLE001 - e.g. the file shrank under the mapping: `result` and `take` raise it
            self._error = error

    def _failure(self) -> DownloadFailed:
        return DownloadFailed(f"cannot hash {self._path}: {self._error or 'the hash thread stopped'}")

    def _hash_on_disk(self) -> None:
        with open(self._path, "rb", buffering=0) as reader:
            for start in range(0, self._on_disk, HASH_WINDOW_BYTES):
                if self._stopped:
                    return
                length = min(self._on_disk - start, HASH_WINDOW_BYTES)
                with mmap.mmap(reader.fileno(), length, offset=start, access=mmap.ACCESS_READ) as window:
                    with memoryview(window) as view:
                        self._hasher.update(view)


def _body_reader(response: Any, timeout_s: float) -> Callable[[memoryview], int]:
    """`readinto` for the body of `response`: straight from its socket where the connection allows
    (one copy, no object per chunk), else from httpx's chunks."""
    return (_SocketBody.attach(response, timeout_s) or _ChunkBody(response.iter_raw())).readinto


class _ChunkBody:
    """`readinto` over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    def readinto(self, view: memoryview) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        count = min(len(view), len(self._rest))
        view[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


class _SocketBody:
    """`readinto` straight from the socket of an HTTP/1.x response with a Content-Length.

    httpx (h11) has already read the headers and maybe the start of the body: its first body
    chunk is everything it buffered, so after that chunk the rest of the body is on the socket.
    The connection is closed with the response (h11 never sees the end of the body).
    """

    def __init__(self, sock: socket.socket, chunks: Iterator[bytes], first: bytes, length: int) -> None:
        self._sock = sock
        self._chunks = chunks  # holds httpx's stream open while the socket is read
        self._first = _ChunkBody(iter([first]))
        self._remaining = length - len(first)

    @classmethod
    def attach(cls, response: Any, timeout_s: float) -> "_SocketBody | None":
        """The socket reader for `response`, or None where its bytes are not plain on a socket
        (HTTP/2, chunked, TLS inside TLS through an HTTPS proxy, a transport without sockets)."""
        stream = response.extensions.get("network_stream")
        length = response.headers.get("Content-Length", "")
        if (stream is None or not response.http_version.startswith("HTTP/1.") or not length.isdigit()
                or "Transfer-Encoding" in response.headers):
            return None
        sock = stream.get_extra_info("socket")
        if not isinstance(sock, socket.socket) or isinstance(stream.get_extra_info("ssl_object"), ssl.SSLObject):
            return None
        sock.settimeout(timeout_s)
        chunks = iter(response.stream)
        return cls(sock, chunks, next(chunks, b""), int(length))

    def readinto(self, view: memoryview) -> int:
        return self._first.readinto(view) or self._recv_into(view[: self._remaining])

    def _recv_into(self, view: memoryview) -> int:
        if not view:
            return 0
        try:
            count = self._sock.recv_into(view)
        except OSError as error:
            import httpx2

            raise (httpx2.ReadTimeout if isinstance(error, TimeoutError) else httpx2.ReadError)(str(error)) from error
        if not count:
            import httpx2

            raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")
        self._remaining -= count
        return count


def _pin_receive_buffer(response: Any) -> None:
    """Pin the receive buffer of `response`'s connection to LOW_LATENCY_WINDOW_BYTES when its
    round trip (smoothed RTT + 4 deviations, from TCP_INFO) is short enough; Linux only."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket) or not hasattr(socket, "TCP_INFO"):
        return
    with contextlib.suppress(OSError, struct.error):
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        rtt_us, rttvar_us = struct.unpack_from("=II", info, 68)  # tcpi_rtt, tcpi_rttvar
        if LOW_LATENCY_RATE_BPS * (rtt_us + 4 * rttvar_us) / 1e6 <= LOW_LATENCY_WINDOW_BYTES:
            # The kernel doubles the value for its bookkeeping: the window stays near the pinned size.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOW_LATENCY_WINDOW_BYTES // 2)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


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


def _write_error(path: Path, error: OSError) -> MiStudioError:
    """A full disk (or quota) is `insufficient_disk`, resumable once there is room; anything else fails."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        return InsufficientDisk(f"the disk filled while writing {path.name}: {format_bytes(free)} free in "
                                f"{path.parent}; free some space and resume")
    return DownloadFailed(f"cannot write {path}: {error}")
