"""Faults the test Hub injects into its responses, and the record it keeps of every request."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from email.message import Message
from typing import Any

from .wan import WanLink, WanProfile

_COUNTED = {"fail_requests", "fail_times", "cut_after_bytes", "cut_times"}


@dataclasses.dataclass
class RequestRecord:
    """One request as the server answered it. `bytes_sent` counts body bytes, and is up to date by the
    time the client has received them; `headers` are the request's (case-insensitive lookups); `at` is
    when it arrived (`time.monotonic()`, comparable across processes on one machine).

    When the client goes away mid-body, the server has counted bytes its peer never took: `undelivered`
    is how many of `bytes_sent` the client's TCP never acknowledged (Linux; 0 elsewhere), and
    `finished` says the server is done with the request, so the counts are final."""

    method: str
    path: str
    status: int
    range: str | None
    bytes_sent: int
    headers: Message
    query: str = ""
    at: float = dataclasses.field(default_factory=time.monotonic)
    undelivered: int = 0
    finished: bool = False

    @property
    def bytes_delivered(self) -> int:
        """Body bytes that reached the client."""
        return self.bytes_sent - self.undelivered


@dataclasses.dataclass(frozen=True)
class RequestFaults:
    """What happens to one request before it is answered."""

    stall_s: float = 0.0
    fail_status: int | None = None
    ignore_range: bool = False
    range_shift: int = 0
    range_header_lies: bool = False


@dataclasses.dataclass(frozen=True)
class BodyFaults:
    """What happens to one response body while it is sent."""

    throttle_bps: int | None = None
    cut_after: int | None = None
    corrupt: bool = False


@dataclasses.dataclass
class Faults:
    """Faults set from tests on the live server; `reset()` clears them all.

    Each applies to every request whose URL path contains `paths[name]` (all requests when unset);
    `set(path=..., **faults)` sets faults and scopes them in one call. Counting starts again whenever a
    counted fault is set.

    - `throttle_bps`: send bodies at this many bytes per second.
    - `cut_after_bytes`: close the connection after this many body bytes (bodies longer than that only),
      for the next `cut_times` such responses (every one when None).
    - `fail_requests`: the Nth matching request (1-based), and `fail_times - 1` after it, answer
      `fail_status` (a 5xx).
    - `corrupt`: flip the first byte of every body (same length, different sha256).
    - `stall_s`: wait this long before answering (before any header).
    - `ignore_range`: answer as if the request had no `Range` header (200 with the whole body).
    - `range_shift`: answer a ranged request with the bytes from this many bytes before the asked start;
      its `Content-Range` says so, or, with `range_header_lies`, claims the range that was asked for.
    - `model_info`: repo id → a function that rewrites the model info the Hub answers (a hostile mirror).
    - `wan`: a `WanProfile` the whole server sits behind (every path: it cannot be scoped); setting it
      starts a new `wan_link` (caps, connection and in-flight counts start again).
    """

    throttle_bps: int | None = None
    cut_after_bytes: int | None = None
    cut_times: int | None = None
    fail_requests: int | None = None
    fail_times: int = 1
    fail_status: int = 500
    corrupt: bool = False
    stall_s: float = 0.0
    ignore_range: bool = False
    range_shift: int = 0
    range_header_lies: bool = False
    wan: WanProfile | None = None
    model_info: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dataclasses.field(default_factory=dict)
    paths: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen = 0
        self._cuts = 0

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _COUNTED:
            super().__setattr__("_seen", 0)
            super().__setattr__("_cuts", 0)
        if name == "wan":
            super().__setattr__("_wan_link", WanLink(value) if value else None)

    @property
    def wan_link(self) -> WanLink | None:
        """The live network of `wan`, None when it is unset."""
        return self._wan_link

    def set(self, path: str = "", **faults: Any) -> None:
        """Set faults (by field name) and scope each to URL paths containing `path`."""
        for name, value in faults.items():
            if name not in _FIELDS:
                raise AttributeError(f"unknown fault {name!r}")
            if name == "wan" and path:
                raise ValueError("the WAN profile applies to every path")
            setattr(self, name, value)
            self.paths[name] = path

    def reset(self) -> None:
        """Clear every fault."""
        for name in _FIELDS:
            setattr(self, name, getattr(_DEFAULTS, name))
        self.paths = {}
        self.model_info = {}

    def _applies(self, name: str, path: str) -> bool:
        return self.paths.get(name, "") in path

    def on_request(self, path: str) -> RequestFaults:
        """The faults for a new request to `path` (counts it against `fail_requests`)."""
        fail = None
        with self._lock:
            if self.fail_requests is not None and self._applies("fail_requests", path):
                self._seen += 1
                if self.fail_requests <= self._seen < self.fail_requests + self.fail_times:
                    fail = self.fail_status
        stall = self.stall_s if self._applies("stall_s", path) else 0.0
        shift = self.range_shift if self._applies("range_shift", path) else 0
        return RequestFaults(
            stall, fail, self.ignore_range and self._applies("ignore_range", path), shift, self.range_header_lies
        )

    def on_body(self, path: str, length: int) -> BodyFaults:
        """The faults for a response body of `length` bytes to `path` (counts cuts)."""
        cut = None
        with self._lock:
            limit = self.cut_after_bytes
            if limit is not None and length > limit and self._applies("cut_after_bytes", path):
                if self.cut_times is None or self._cuts < self.cut_times:
                    self._cuts += 1
                    cut = limit
        return BodyFaults(
            throttle_bps=self.throttle_bps if self._applies("throttle_bps", path) else None,
            cut_after=cut,
            corrupt=self.corrupt and self._applies("corrupt", path),
        )


_FIELDS = {field.name for field in dataclasses.fields(Faults)} - {"paths", "model_info"}
_DEFAULTS = Faults()
