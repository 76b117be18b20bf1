"""Fetch a Hub repo revision into the Hugging Face cache over many ranged streams: resumable,
verified and cancellable.

Behind a CDN each connection is capped, so one scheduler per plan splits the files into ranges and
keeps N streams (threads, each reusing its connection where it can) busy across all of them, small
files first so that config and tokenizer land early. N adapts: it starts with a stream for every file
that can start (at least START_CONNECTIONS), grows while the aggregate rate grows, halves on 429/503,
and never exceeds `max_connections`. A host on a loopback or private address that answers within
LOCAL_ANSWER_S (the test Hub, a mirror in the same rack) is bound by the CPU, not by connections:
there one stream fetches each file whole, in order, with its receive buffer kept small so that a kill
loses little, and a lower priority than the hash, the step that bounds it. When no range is left to
start, an idle stream takes the second half of the range that needs longest to finish, so a slow or
stalled stream never holds up the end of a download; a read that times out is retried on a new
connection from the byte it reached.

Each stream writes at its offset into the file's stable partial file and records the range in the
journal beside it, so a resume from any process, with any stream count, fetches only the gaps; the
hash follows the written prefix (see `partial.py`). Only a verified file becomes `blobs/{etag}`
(atomic rename); then the snapshot link and the ref are written as huggingface_hub writes them.
huggingface_hub provides the headers, HTTP session and error types.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import ipaddress
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from ..errors import Cancelled, DownloadFailed, HubUnreachable
from ..hub import FilePlan, PlannedFile, map_hub_error, resolve_url
from .cache import RepoCache
from .partial import BLOCK_BYTES, BlockPool, HashThreads, MemoryBudget, PartialFile

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 32
START_CONNECTIONS = 16
MAX_REDIRECTS = 10
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_STATUS = frozenset({429, 503})
EXPIRED_STATUS = frozenset({403, 410})
CHUNK_BYTES = 8 << 20
MIN_SPLIT_BYTES = 1 << 20
# Only a range that needs longer than this at its stream's rate is split: what the server already
# sent past the split point is wasted, so a range about to finish is left alone.
SPLIT_AFTER_S = 1.0
# Ranges at least this long are read straight from the socket (one copy, no object per chunk); the
# connection is then closed with the response. Shorter ones go through httpx, which reuses it.
RAW_SOCKET_MIN_BYTES = 4 << 20
# Bytes received but not yet written are lost if the process is killed, so a slow stream writes its
# block after this long even when it is not full.
FLUSH_AFTER_S = 0.01
ADAPT_EVERY_S = 0.5
GROWTH_THAT_COUNTS = 1.1
THROTTLE_PAUSE_S = 2.0
SYNC_EVERY_S = 5.0
POLL_S = 0.2
MEMORY_PER_STREAM_BYTES = 2 << 20
# An answer this fast means a local path, where one stream is as fast as many and hashes in order.
# A Python server on a busy loopback takes a few milliseconds; a WAN's round trip takes longer.
LOCAL_ANSWER_S = 0.008
PATH_SAMPLES = 8
# The caller's plan request took this long: the Hub is far (a round trip, or a new connection's
# handshakes, on a WAN) and the first stream need not ask alone.
FAR_ANSWER_S = 4 * LOCAL_ANSWER_S
# On a local path Linux would grow the receive buffer to tcp_rmem's maximum (often 6-32 MiB), all of it
# lost on a kill; this much still carries 10 GB/s there.
LOCAL_RECEIVE_BUFFER_BYTES = 2 << 20
# On a local path the hash is the slowest step and the CPU the limit: the stream runs this much nicer,
# so that the hash wins a core they both want (the stream cannot run ahead: its blocks come back only
# as the hash takes them).
LOCAL_STREAM_NICENESS = 5
_stream_state = threading.local()
_CONTENT_RANGE = re.compile(r"bytes (?P<start>\d+)-\d+/(?P<total>\d+)")


@dataclasses.dataclass
class Progress:
    """Counters the streams advance; a reporter thread reads them."""

    bytes_total: int = 0
    bytes_done: int = 0
    current_file: str | None = None
    connections: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count


class _Retry(Exception):
    """A transient answer (5xx, 429, 408, a dropped connection): try the range again."""

    def __init__(self, reason: str, *, throttled: bool = False, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.throttled = throttled
        self.retry_after_s = retry_after_s


class _Expired(Exception):
    """The CDN refused a URL it gave before (presigned URLs expire): resolve it again through the Hub."""


@dataclasses.dataclass(eq=False)
class _Range:
    """`[pos, end)` of one file, fetched by one stream; `end` shrinks when another stream takes the
    second half, `received` is how far the stream has read."""

    target: PartialFile
    pos: int
    end: int
    received: int = 0
    failures: int = 0
    socket: socket.socket | None = None
    body_started_at: float = 0.0
    body_start: int = 0

    def seconds_left(self, now: float) -> float:
        """How long the stream needs for the rest at its rate so far (infinite before any byte)."""
        elapsed, received = now - self.body_started_at, self.received - self.body_start
        if not self.body_started_at or received <= 0 or elapsed <= 0:
            return float("inf") if self.body_started_at and elapsed > SPLIT_AFTER_S else 0.0
        return (self.end - self.received) * elapsed / received


class _Buffer:
    """The block a stream receives into, shared by reference down the stream's calls: once the hash
    takes a block, every frame (one unwinding with an exception too) sees its replacement, and none
    can write into the taken block again."""

    def __init__(self) -> None:
        self.block: memoryview | None = None


class Engine:
    """Downloads the files of `FilePlan`s into `cache_dir`.

    `stop` is checked between blocks and during waits; once set, the engine raises `Cancelled` and
    leaves partial files and journals in place for a later resume. `hub_answer_s`, how long the Hub
    took to answer the caller's plan request, tells a far Hub before the first answer does.
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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        hub_answer_s: float | None = None,
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
        self.max_connections = max(1, max_connections)
        self.hub_answer_s = hub_answer_s
        self.session = get_session()
        self.read_timeout_s = float(constants.HF_HUB_DOWNLOAD_TIMEOUT)
        self.headers = dict(build_hf_headers(token=token or False, library_name="mistudio-jupyter"))
        self.headers["Accept-Encoding"] = "identity"

    def fetch(self, plan: FilePlan, on_start: Callable[[], None] | None = None) -> Path:
        """Fetch every file of `plan`; returns the snapshot folder once all of them are in place.

        `on_start()` is called once the first answer has come (never when nothing was left to fetch).
        """
        repo = RepoCache(self.cache_dir, plan.repo_id)
        snapshot = repo.snapshot(plan.commit)
        self.progress.bytes_done = sum(repo.bytes_on_disk(file) for file in plan.files)
        self.progress.bytes_total = plan.download_bytes  # last: a total tells readers the count is in
        # The ref first: `hf cache prune` removes revisions that no ref names, a running download's too.
        snapshot.mkdir(parents=True, exist_ok=True)
        repo.write_ref(plan.revision, plan.commit)
        _Download(self, repo, plan.commit, plan.files, on_start).run()
        return snapshot

    def fetch_file(self, repo: RepoCache, commit: str, file: PlannedFile) -> Path:
        """Make `snapshots/{commit}/{file.path}` point at a verified blob; returns that path."""
        _Download(self, repo, commit, [file]).run()
        return repo.pointer(commit, file.path)

    # -- HTTP ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(
        self, repo_id: str, url: str, start: int, end: int, on_answer: Callable[[float, bool], None]
    ) -> Iterator[tuple[Any, str]]:
        """GET bytes `[start, end)` of `url`, following redirects ourselves so that `Authorization`
        never leaves the Hub's host; yields the response and the URL that answered. `on_answer` gets,
        as each hop answers, the seconds it took and whether its host is on this machine or network."""
        import httpx2

        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        hub_host = urlparse(self.endpoint).netloc
        if urlparse(url).netloc != hub_host:
            headers.pop("authorization", None)
            headers.pop("Authorization", None)
        timeout = httpx2.Timeout(self.read_timeout_s, connect=self.read_timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            request = self.session.build_request("GET", url, headers=headers, timeout=timeout)
            asked = time.monotonic()
            response = self.session.send(request, stream=True, follow_redirects=False)
            on_answer(time.monotonic() - asked, _from_nearby_host(response))
            if not response.is_redirect:
                break
            response.read()  # read to its end, the connection goes back to the pool for the next request
            response.close()
            url = urljoin(url, response.headers["Location"])
            if urlparse(url).netloc != hub_host:
                headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
        else:
            raise DownloadFailed(f"too many redirects while downloading from {repo_id}")
        try:
            self._raise_for_status(repo_id, response, off_hub=urlparse(url).netloc != hub_host)
            yield response, url
        finally:
            response.close()

    def _raise_for_status(self, repo_id: str, response: Any, *, off_hub: bool) -> None:
        if response.status_code < 400:
            return
        response.read()
        if response.status_code in RETRYABLE_STATUS:
            raise _Retry(
                f"HTTP {response.status_code}",
                throttled=response.status_code in THROTTLE_STATUS,
                retry_after_s=_retry_after(response.headers.get("Retry-After")),
            )
        if off_hub and response.status_code in EXPIRED_STATUS:
            raise _Expired(f"HTTP {response.status_code} from the CDN")
        from huggingface_hub.utils import hf_raise_for_status

        try:
            hf_raise_for_status(response)
        except Exception as error:  # noqa: BLE001 - every Hub refusal leaves as a domain error
            mapped = map_hub_error(error, repo_id, self.token, self.endpoint)
            raise (mapped or DownloadFailed(f"the Hub refused a download from {repo_id}: {error}")) from error


class _Download:
    """One scheduler over the files of a plan: ranges, streams, hash threads, completion."""

    def __init__(
        self,
        engine: Engine,
        repo: RepoCache,
        commit: str,
        files: list[PlannedFile],
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.repo, self.commit = engine, repo, commit
        self._on_start = on_start
        self._urls: dict[str, str] = {}  # file path → the URL that last answered for it (the CDN's)
        self.files = sorted(files, key=lambda file: file.size)  # small files first
        self._cond = threading.Condition()
        self._queue: collections.deque[_Range] = collections.deque()
        self._held: dict[PartialFile, list[_Range]] = {}  # ranges waiting for a file's first 206
        self._ranged: set[PartialFile] = set()
        self._running: list[_Range] = []
        self._hashed: list[PartialFile] = []
        self._open: list[PartialFile] = []
        self._waiting: list[tuple[PlannedFile, PartialFile]] = []  # files another writer holds the lock of
        self._locks: dict[PartialFile, Any] = {}
        self._left = 0
        self._refetched: set[PartialFile] = set()
        self._error: BaseException | None = None
        self._streams: list[threading.Thread] = []
        self._live = 0  # streams started and not yet told to stop
        self._wanted = min(START_CONNECTIONS, engine.max_connections)
        self._growing = True
        self._local: bool | None = None  # decided by the first answers
        self._answers = 0
        self._paused_until = 0.0
        pool = BlockPool(16 + 2 * engine.max_connections)
        self._hashing = HashThreads(
            max(1, min(4, (os.cpu_count() or 2) - 1)),
            pool,
            MemoryBudget(MEMORY_PER_STREAM_BYTES * engine.max_connections),
        )
        self.pool = pool

    # -- the main thread -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            files, index = enumerate(self.files), -1
            with self._cond:
                starting, self._wanted = self._wanted, 1
            for index, file in files:  # until one file has a range to fetch: its stream asks alone
                self._start_file(index, file)
                if self._queue:
                    break
            self._spawn_streams()
            alone_until = time.monotonic() + (0.0 if self._hub_is_far() else 2 * LOCAL_ANSWER_S)
            for index, file in files:  # the next files get ready while that request is in flight
                self._start_file(index, file)
                if self._local is not None or time.monotonic() >= alone_until:
                    break
            with self._cond:  # its answer tells a local path; the other streams wait that long at most
                self._cond.wait_for(
                    lambda: self._local is not None or self._error is not None, max(0.0, alone_until - time.monotonic())
                )
                if not self._local:  # a stream for each file, within the bounds
                    files_left = len(self._queue) + len(self._running) + len(self.files) - index - 1
                    self._wanted = min(self.engine.max_connections, max(starting, files_left))
            self._spawn_streams()
            for index, file in files:  # the streams fetch the files ready while the rest get ready
                self._start_file(index, file)
            self._supervise()
        except BaseException:
            self._abort()
            raise
        finally:
            self._shut_down()

    def _hub_is_far(self) -> bool:
        """Whether an earlier answer of the Hub (the caller's, as it asked for the plan) rules out a local
        path, so that the first stream need not ask alone."""
        return self.engine.hub_answer_s is not None and self.engine.hub_answer_s >= FAR_ANSWER_S

    def _start_file(self, index: int, file: PlannedFile) -> None:
        if not file.etag:
            raise DownloadFailed(f"the Hub gave no blob id for {file.path} in {self.repo.repo_id}")
        target = PartialFile(index, self.repo, file, self._hashing, self._file_hashed)
        if target.blob.exists():
            self._link(file)
            return
        self._left += 1
        lock = _try_lock(self.repo.lock(file.etag))
        if lock is None:
            self._waiting.append((file, target))
            return
        self._open_file(target, lock)

    def _open_file(self, target: PartialFile, lock: Any) -> None:
        self._locks[target] = lock
        self._open.append(target)
        target.open()
        self._plan_ranges(target)

    def _plan_ranges(self, target: PartialFile) -> None:
        """Queue the file's missing ranges: the first now, the rest once it answers 206 (a server that
        ignores Range gets one stream for the whole file)."""
        chunk = None if self._local else CHUNK_BYTES
        ranges = [
            _Range(target, start, end)
            for gap_start, gap_end in target.written.gaps(target.size)
            for start, end in _chunks(gap_start, gap_end, chunk)
        ]
        if not ranges:
            return
        with self._cond:
            self._queue.append(ranges[0])
            if target in self._ranged:
                self._queue.extend(ranges[1:])
            else:
                self._held[target] = ranges[1:]
            self._cond.notify_all()

    def _supervise(self) -> None:
        """Finish files as their hash completes; adapt the stream count; notice stops and failures."""
        last_adapt, last_sync = time.monotonic(), time.monotonic()
        last_bytes, best_rate = self.engine.progress.bytes_done, 0.0
        while self._left:
            with self._cond:
                self.engine.progress.connections = len(self._running)
                self._cond.wait_for(
                    lambda: self._hashed or self._error is not None or self.engine.stop.is_set(), POLL_S
                )
                hashed, self._hashed = self._hashed, []
                if self._error is not None:
                    raise self._error
            if self.engine.stop.is_set():
                raise Cancelled("download cancelled")
            for target in hashed:
                self._finish_file(target)
            self._admit_waiting()
            now = time.monotonic()
            if now - last_adapt >= ADAPT_EVERY_S:
                done = self.engine.progress.bytes_done
                best_rate = self._adapt((done - last_bytes) / (now - last_adapt), best_rate)
                last_adapt, last_bytes = now, done
            if now - last_sync >= SYNC_EVERY_S:
                for target in list(self._open):
                    target.sync()
                last_sync = now

    def _finish_file(self, target: PartialFile) -> None:
        file = target.file
        if target.error is not None:
            raise target.error
        if target.digest == target.expected_digest:
            target.complete()
            self._release(target)
            self._link(file)
            self._left -= 1
            return
        problem = f"hash {target.digest} instead of {target.expected_digest}"
        if target in self._refetched:
            target.discard()
            raise DownloadFailed(
                f"{file.path} of {self.repo.repo_id} failed verification twice ({problem}); "
                "the corrupt bytes were discarded"
            )
        log.warning("%s of %s: %s; fetching it again", file.path, self.repo.repo_id, problem)
        self._refetched.add(target)
        self.engine.progress.add(-target.size)
        target.restart()
        self._plan_ranges(target)

    def _admit_waiting(self) -> None:
        """Files whose lock another writer held: done when their blob appeared, else ours once free."""
        for file, target in list(self._waiting):
            if target.blob.exists():
                self._waiting.remove((file, target))
                self._link(file)
                self._left -= 1
                self.engine.progress.add(file.size)
                continue
            lock = _try_lock(self.repo.lock(file.etag or ""))
            if lock is not None:
                self._waiting.remove((file, target))
                self._open_file(target, lock)

    def _adapt(self, rate: float, best_rate: float) -> float:
        """More streams while they raise the rate; fewer after 429/503."""
        with self._cond:
            if time.monotonic() < self._paused_until or not self._growing or not self._queue:
                return max(best_rate, rate)
            if rate >= best_rate * GROWTH_THAT_COUNTS and self._wanted < self.engine.max_connections:
                self._wanted = min(self.engine.max_connections, self._wanted * 2)
            elif best_rate and rate < best_rate * GROWTH_THAT_COUNTS:
                self._growing = False
        self._spawn_streams()
        return max(best_rate, rate)

    def _link(self, file: PlannedFile) -> None:
        self.repo.link(self.repo.blob(file.etag or ""), self.repo.pointer(self.commit, file.path))

    def _release(self, target: PartialFile) -> None:
        self._open.remove(target)
        self._locks.pop(target).release()

    def _abort(self) -> None:
        """Stop every stream now, a stalled read included."""
        with self._cond:
            if self._error is None:
                self._error = Cancelled("download cancelled")
            for running in self._running:
                if running.socket is not None:
                    with contextlib.suppress(OSError):
                        running.socket.shutdown(socket.SHUT_RDWR)
            self._cond.notify_all()

    def _shut_down(self) -> None:
        with self._cond:
            self._left = 0
            self._cond.notify_all()
        for stream in self._streams:
            stream.join()
        self._hashing.close()
        for target in list(self._open):
            target.close()
            self._locks.pop(target).release()
        self._open.clear()
        self.engine.progress.connections = 0

    # -- streams ---------------------------------------------------------------------------------

    def _spawn_streams(self) -> None:
        with self._cond:
            self._streams = [stream for stream in self._streams if stream.is_alive()]
            missing = max(0, self._wanted - self._live)
            self._live += missing
        for _ in range(missing):  # unlocked: each stream takes its range while the next starts
            stream = threading.Thread(target=self._stream, name="mistudio-stream", daemon=True)
            stream.start()
            with self._cond:
                self._streams.append(stream)

    def _stream(self) -> None:
        buffer = _Buffer()
        try:
            buffer.block = self.pool.take(self.engine.stop)
            while (job := self._next_range()) is not None:
                self._fetch_range(job, buffer)
        except BaseException as error:  # noqa: BLE001 - reaches the main thread, which raises it
            with self._cond:
                self._live -= 1
                self._error = self._error or error
                self._cond.notify_all()
        finally:
            if buffer.block is not None:
                self.pool.give(buffer.block)

    def _next_range(self) -> _Range | None:
        """The next range for a stream: queued, else half of the largest running one; None to stop
        (the stream is then no longer counted live)."""
        with self._cond:
            while True:
                if self._error is not None or self._left == 0 or self.engine.stop.is_set() or self._live > self._wanted:
                    self._live -= 1
                    return None
                job = self._queue.popleft() if self._queue else self._split()
                if job is not None:
                    self._running.append(job)
                    self.engine.progress.current_file = job.target.file.path
                    return job
                self._cond.wait(POLL_S)

    def _split(self) -> _Range | None:
        """Give an idle stream the second half of the running range that needs longest to finish."""
        now = time.monotonic()
        candidates = [
            job for job in self._running if job.target in self._ranged and job.seconds_left(now) > SPLIT_AFTER_S
        ]
        if not candidates:
            return None
        job = max(candidates, key=lambda job: job.seconds_left(now))
        ahead = max(job.pos, job.received) + BLOCK_BYTES  # the stream may be reading a block right now
        if job.end - ahead < 2 * MIN_SPLIT_BYTES:
            return None
        middle = ahead + (job.end - ahead) // 2
        second = _Range(job.target, middle, job.end)
        job.end = middle
        return second

    def _fetch_range(self, job: _Range, buffer: _Buffer) -> None:
        """Fetch what is left of `job`, retrying transient failures."""
        while job.pos < job.end:
            start = job.pos
            try:
                self._receive(job, buffer)
            except _Expired:
                job.failures += 1
            except _Retry as error:
                if error.throttled:  # not a failure: the server asks for fewer requests
                    self._throttled(job, error.retry_after_s)
                    return
                job.failures = 0 if job.pos > start else job.failures + 1
                self._backoff(job, error)
            except OSError as error:  # the connection broke (httpx's errors, a socket shut down)
                if self.engine.stop.is_set() or self._error is not None:
                    raise Cancelled("download cancelled") from None
                job.failures = 0 if job.pos > start else job.failures + 1
                self._backoff(job, error)
            else:
                continue
            self._urls.pop(job.target.file.path, None)  # the next attempt asks the Hub where the file is
            if job.failures > self.engine.max_retries:
                raise HubUnreachable(
                    f"downloading {job.target.file.path} of {self.repo.repo_id} failed {job.failures} times in a "
                    "row; resume to continue from the bytes already on disk"
                )
        with self._cond:
            self._running.remove(job)
            self._cond.notify_all()

    def _backoff(self, job: _Range, error: BaseException) -> None:
        log.info("retrying %s of %s from byte %d after %r", job.target.file.path, self.repo.repo_id, job.pos, error)
        delay = self.engine.backoff_s * 2 ** (job.failures - 1) if job.failures else 0.0
        if self.engine.stop.wait(delay):
            raise Cancelled("download cancelled")

    def _throttled(self, job: _Range, retry_after_s: float) -> None:
        """The server is overloaded (429/503): half the streams, no growth for a while, and this
        stream's range goes back to the queue while it waits, so that a stream no longer wanted retires."""
        with self._cond:
            self._wanted = max(1, self._wanted // 2)
            self._growing = False
            self._paused_until = time.monotonic() + max(THROTTLE_PAUSE_S, retry_after_s)
            self._running.remove(job)
            self._queue.appendleft(job)
            self._cond.notify_all()
        if self.engine.stop.wait(retry_after_s or self.engine.backoff_s):
            raise Cancelled("download cancelled")

    def _receive(self, job: _Range, buffer: _Buffer) -> None:
        import httpx2

        target, file = job.target, job.target.file
        url = self._urls.get(file.path) or self._hub_file_url(file)
        try:
            with self.engine.open(self.repo.repo_id, url, job.pos, job.end, self._learn_path) as (
                response,
                answered_by,
            ):
                self._urls[file.path] = answered_by
                if self._local:
                    _keep_receive_buffer_small(response)
                    _give_way_to_the_hash()
                if response.status_code == 200:
                    self._whole_file(job)
                else:
                    _check_content_range(response.headers.get("Content-Range", ""), job.pos, file, self.repo.repo_id)
                    self._ranges_work(target)
                self._read_body(job, response, buffer)
        except httpx2.TransportError as error:
            raise OSError(str(error)) from error

    def _hub_file_url(self, file: PlannedFile) -> str:
        return resolve_url(self.engine.endpoint, self.repo.repo_id, self.commit, file.path)

    def _learn_path(self, answer_s: float, nearby: bool) -> None:
        """A local path gets one stream, fetching whole files. One answer within LOCAL_ANSWER_S, from
        the Hub or from the host it redirects to, proves the path local (a WAN cannot answer faster
        than its round trip) when that host's address is on this machine or a private network: a CDN
        edge in the same city can answer as fast, and caps each connection. PATH_SAMPLES other answers
        rule it out (one slow answer may only mean a busy CPU)."""
        with self._cond:
            if self._local is not None:
                return
            self._answers += 1
            first = self._answers == 1
            self._cond.notify_all()
            if nearby and answer_s < LOCAL_ANSWER_S:
                self._local, self._wanted, self._growing = True, 1, False
                self._queue = collections.deque(_joined(list(self._queue)))  # streams beyond the first retire
                for target, held in self._held.items():
                    self._held[target] = _joined(held)
            elif self._answers >= PATH_SAMPLES:
                self._local = False
        if first and self._on_start is not None:
            self._on_start()

    def _ranges_work(self, target: PartialFile) -> None:
        with self._cond:
            if target not in self._ranged:
                self._ranged.add(target)
                self._queue.extend(self._held.pop(target, []))
                self._cond.notify_all()

    def _whole_file(self, job: _Range) -> None:
        """The server ignored Range and sends the whole file: this stream takes all of it, from byte 0."""
        target = job.target
        with self._cond:
            if target in self._ranged:
                raise _Retry("a ranged request was answered with the whole file")
            self._held.pop(target, None)
        self.engine.progress.add(-target.written.covered())
        target.restart()
        job.pos, job.end, job.received = 0, target.size, 0

    def _read_body(self, job: _Range, response: Any, buffer: _Buffer) -> None:
        reader = _body_reader(response, self.engine.read_timeout_s, job.end - job.pos >= RAW_SOCKET_MIN_BYTES)
        job.socket = _socket_of(response)
        job.received = job.body_start = job.pos
        job.body_started_at = time.monotonic()
        filled, flushed_at = 0, job.body_started_at
        try:
            while (wanted := job.end - job.received) > 0:
                if self.engine.stop.is_set():
                    raise Cancelled("download cancelled")
                block = buffer.block
                count = reader(block[filled : min(len(block), filled + wanted)])
                if not count:
                    raise _Retry("the connection closed before the range was complete")
                filled += count
                job.received += count
                self.engine.progress.add(count)
                if filled == len(block) or time.monotonic() - flushed_at >= FLUSH_AFTER_S:
                    flushing, filled = filled, 0  # written once, even if the flush raises
                    self._flush(job, buffer, flushing)
                    flushed_at = time.monotonic()
            reader(memoryview(bytearray()))  # see the body's end, so that httpx keeps the connection
        finally:
            if filled:
                self._flush(job, buffer, filled)
            job.socket, job.body_started_at = None, 0.0

    def _flush(self, job: _Range, buffer: _Buffer, filled: int) -> None:
        """Write the block's bytes that are still this stream's (another may have taken the rest); a
        block the hash took is replaced by a free one."""
        with self._cond:
            keep = max(0, min(filled, job.end - job.pos))
            offset = job.pos
            job.pos += keep
        if keep < filled:
            self.engine.progress.add(keep - filled)
        if keep and job.target.write(offset, buffer.block, keep):
            buffer.block = None  # the hash thread's now, whatever happens next
            buffer.block = self.pool.take(self.engine.stop)

    def _file_hashed(self, target: PartialFile) -> None:
        with self._cond:
            self._hashed.append(target)
            self._cond.notify_all()


def _chunks(start: int, end: int, size: int | None) -> Iterator[tuple[int, int]]:
    """`[start, end)` in pieces of `size` bytes (whole when None)."""
    step = size or end - start
    for position in range(start, end, step):
        yield position, min(end, position + step)


def _joined(ranges: list[_Range]) -> list[_Range]:
    """Adjacent ranges of a file as one."""
    joined: list[_Range] = []
    for piece in ranges:
        if joined and joined[-1].target is piece.target and joined[-1].end == piece.pos:
            joined[-1].end = piece.end
        else:
            joined.append(piece)
    return joined


def _keep_receive_buffer_small(response: Any) -> None:
    sock = _socket_of(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            # The kernel doubles the value for its bookkeeping: the window stays near the size asked for.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOCAL_RECEIVE_BUFFER_BYTES // 2)


def _give_way_to_the_hash() -> None:
    """Make this stream LOCAL_STREAM_NICENESS nicer than it started, once (Linux sets niceness per thread)."""
    if getattr(_stream_state, "gave_way", False) or not sys.platform.startswith("linux"):
        return
    _stream_state.gave_way = True
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + LOCAL_STREAM_NICENESS))


def _try_lock(path: Path) -> Any:
    """huggingface_hub's lock of a blob, if no other writer holds it; None otherwise."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def _retry_after(value: str | None) -> float:
    try:
        return min(60.0, max(0.0, float(value or 0)))
    except ValueError:
        return 0.0


def _check_content_range(header: str, start: int, file: PlannedFile, repo_id: str) -> None:
    """A 206 must carry the bytes asked for, of a file of the planned size: anything else would be
    written at the wrong offset (the hash would catch it, but only after the whole transfer)."""
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None or int(match["start"]) != start or int(match["total"]) != file.size:
        raise DownloadFailed(
            f"the server answered a request for {file.path} of {repo_id} from byte {start} "
            f"with Content-Range {header[:80]!r}; nothing from it was kept"
        )


def _from_nearby_host(response: Any) -> bool:
    """Whether `response` came from a loopback, private or link-local address (False when unknown)."""
    sock = _socket_of(response)
    try:
        return sock is not None and is_nearby_address(sock.getpeername()[0])
    except OSError:  # closed already
        return False


def is_nearby_address(host: str) -> bool:
    """A loopback, private (RFC 1918, unique local) or link-local IP address; no public one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _socket_of(response: Any) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _body_reader(response: Any, timeout_s: float, raw: bool) -> Callable[[memoryview], int]:
    """`readinto` for the body of `response`: straight from its socket for long ranges where the
    connection allows, else from httpx's chunks."""
    socket_body = _SocketBody.attach(response, timeout_s) if raw else None
    return (socket_body or _ChunkBody(response.iter_raw())).readinto


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

    httpx (h11) has already read the headers and maybe the start of the body: its first body chunk
    is everything it buffered, so after that chunk the rest of the body is on the socket. The
    connection is closed with the response (h11 never sees the end of the body).
    """

    def __init__(self, sock: socket.socket, chunks: Iterator[bytes], first: bytes, length: int) -> None:
        self._sock = sock
        self._chunks = chunks  # holds httpx's stream open while the socket is read
        self._first = _ChunkBody(iter([first]))
        self._remaining = length - len(first)

    @classmethod
    def attach(cls, response: Any, timeout_s: float) -> _SocketBody | None:
        """The socket reader for `response`, or None where its bytes are not plain on a socket
        (HTTP/2, chunked, TLS, a transport without sockets)."""
        length = response.headers.get("Content-Length", "")
        sock = _socket_of(response)
        if (
            sock is None
            or isinstance(response.extensions["network_stream"].get_extra_info("ssl_object"), ssl.SSLObject)
            or not response.http_version.startswith("HTTP/1.")
            or not length.isdigit()
            or "Transfer-Encoding" in response.headers
        ):
            return None
        sock.settimeout(timeout_s)
        chunks = iter(response.stream)
        return cls(sock, chunks, next(chunks, b""), int(length))

    def readinto(self, view: memoryview) -> int:
        return self._first.readinto(view) or self._recv_into(view[: self._remaining])

    def _recv_into(self, view: memoryview) -> int:
        if not view:
            return 0
        count = self._sock.recv_into(view)
        self._remaining -= count
        return count


__all__ = ["DEFAULT_MAX_CONNECTIONS", "Engine", "Progress"]
