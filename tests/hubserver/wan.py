"""A wide-area network between the test Hub and its clients: what it is like (`WanProfile`) and the
live state that enforces it (`WanLink`, one `WanConnection` per TCP connection)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import typing
from collections.abc import Iterator

SLOW_EDGE_DIVISOR = 8
# How far a sender that fell behind its schedule (a late wake-up, a slow write) may catch up at once:
# without it the caps would undershoot on a loaded machine, with more it would burst.
CATCH_UP_S = 0.05
# Body pieces last about this long at their connection's rate, so that Python's cost per write stays
# small next to the link yet a slow connection's pieces still arrive steadily.
PIECE_TIME_S = 1 / 64
MIN_PIECE_BYTES = 16 * 1024
MAX_PIECE_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class WanProfile:
    """A wide-area network, every knob off by default.

    - `per_conn_bps`: cap on each TCP connection, bytes/s.
    - `link_bps`: cap on all connections together (one shared link), bytes/s.
    - `rtt_ms`: round trip added before every response's headers; a new connection pays `connect_rtts`
      more (its TCP and TLS 1.3 handshakes).
    - `slow_every`: every Nth connection (counted as it is accepted) is a slow edge, served at
      1/8 of `per_conn_bps`.
    - `max_in_flight`: a request arriving while this many are being answered gets 429 with
      `Retry-After: retry_after_s`.
    - `url_ttl_s`: the Hub's redirects to the CDN expire this long after they are issued (`?expires=`,
      unix seconds); the CDN answers 403 after that, as presigned URLs do.
    """

    per_conn_bps: float | None = None
    link_bps: float | None = None
    rtt_ms: float = 0.0
    connect_rtts: int = 2
    slow_every: int | None = None
    max_in_flight: int | None = None
    retry_after_s: int = 1
    url_ttl_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("per_conn_bps", "link_bps", "slow_every", "max_in_flight", "url_ttl_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.rtt_ms < 0 or self.connect_rtts < 0 or self.retry_after_s < 0:
            raise ValueError("rtt_ms, connect_rtts and retry_after_s cannot be negative")
        if self.slow_every is not None and self.per_conn_bps is None:
            raise ValueError("slow_every needs per_conn_bps (a slow edge gets 1/8 of it)")

    @classmethod
    def parse(cls, text: str) -> WanProfile:
        """A profile from `knob=value,...`, e.g. `per_conn_bps=8e6,link_bps=96e6,rtt_ms=30`."""
        types = typing.get_type_hints(cls)
        values: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            if name not in types:
                raise ValueError(f"unknown WAN knob {name!r} (knobs: {', '.join(types)})")
            number = float(value)
            integral = types[name] is int or int in typing.get_args(types[name])
            if integral and not number.is_integer():
                raise ValueError(f"{name} must be a whole number, got {value}")
            values[name] = int(number) if integral else number
        return cls(**values)

    def __str__(self) -> str:
        """The knobs that differ from the defaults, in the form `parse` reads."""
        return ",".join(
            f"{field.name}={getattr(self, field.name):g}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        )

    @property
    def rtt_s(self) -> float:
        return self.rtt_ms / 1000


class Pacer:
    """Spaces sends through one point (a connection, the link) to `bps` bytes per second.

    Senders reserve their slot under the lock and wait outside it, so the threads that share a pacer
    are served in the order they asked, each getting an even share when all are waiting.
    """

    def __init__(self, bps: float) -> None:
        self.bps = bps
        self._free_at = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, size: int, not_before: float) -> float:
        """When `size` bytes may leave, at `not_before` or later."""
        with self._lock:
            start = max(self._free_at, not_before - CATCH_UP_S)
            self._free_at = start + size / self.bps
        return max(start, not_before)


class WanLink:
    """The live network of one profile: the shared link, the connections made over it, and the
    requests in flight. A new profile gets a new link, so counts and caps start again."""

    def __init__(self, profile: WanProfile) -> None:
        self.profile = profile
        self._pacer = Pacer(profile.link_bps) if profile.link_bps else None
        self._lock = threading.Lock()
        self._connections = 0
        self._in_flight = 0

    @property
    def connections(self) -> int:
        """Connections made so far."""
        return self._connections

    def connect(self) -> WanConnection:
        with self._lock:
            self._connections += 1
            number = self._connections
        slow = self.profile.slow_every is not None and number % self.profile.slow_every == 0
        return WanConnection(self, slow)

    @contextlib.contextmanager
    def request(self) -> Iterator[bool]:
        """Hold a place in flight while a request is answered; yields False (and holds none) when
        `max_in_flight` are already there."""
        limit = self.profile.max_in_flight
        with self._lock:
            admitted = limit is None or self._in_flight < limit
            if admitted:
                self._in_flight += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._in_flight -= 1

    def reserve(self, size: int, not_before: float) -> float:
        return self._pacer.reserve(size, not_before) if self._pacer else not_before


class WanConnection:
    """One TCP connection over a `WanLink`: its own cap (a slow edge's is 1/8 of it) within the link's."""

    def __init__(self, link: WanLink, slow: bool) -> None:
        self.link = link
        self.slow = slow
        profile = link.profile
        self.bps = profile.per_conn_bps / (SLOW_EDGE_DIVISOR if slow else 1) if profile.per_conn_bps else None
        self._pacer = Pacer(self.bps) if self.bps else None

    @property
    def piece_bytes(self) -> int:
        """How many body bytes to send at a time."""
        rate = self.bps or self.link.profile.link_bps
        if rate is None:
            return MAX_PIECE_BYTES
        return int(min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, rate * PIECE_TIME_S)))

    def handshake(self) -> None:
        """What opening the connection costs."""
        time.sleep(self.link.profile.connect_rtts * self.link.profile.rtt_s)

    def round_trip(self) -> None:
        """What a request costs before its answer starts."""
        time.sleep(self.link.profile.rtt_s)

    def wait_to_send(self, size: int) -> None:
        """Sleep until `size` more bytes fit under this connection's cap and the link's."""
        now = time.monotonic()
        at = self.link.reserve(size, self._pacer.reserve(size, now) if self._pacer else now)
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
