"""Leases: nothing is deleted under a running experiment.

A process that loads a catalog entry's model holds a lease on it, a row in the catalog that a thread of
that process renews every third of the heartbeat timeout while the model object lives. The lease ends
when the model is garbage-collected, when `release(model)` is called, or when the process exits; a
killed process stops renewing, and its lease stops counting once its heartbeat is older than the
timeout (`Settings.heartbeat_timeout_s`, as for download workers); its row is removed by the first
lease taken a day later (until then a process that was only suspended takes it up again). Deleting an
entry that a lease holds is a `Conflict` naming the holders, unless forced.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import getpass
import logging
import os
import socket
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import sessionmaker

from .catalog import Catalog, Lease, ModelRecord
from .errors import Conflict, NotFound
from .records import RecordView, utcnow, valid_id

log = logging.getLogger(__name__)

BEATS_PER_TIMEOUT = 3
ROWS_OF_STALE_LEASES_KEPT = dt.timedelta(days=1)
_HELD: weakref.WeakKeyDictionary[Any, HeldLease] = weakref.WeakKeyDictionary()


class LeaseHolding(Protocol):
    """What is told of a lease: who holds it and since when."""

    id: str
    holder: str
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]: ...


class Leases(abc.ABC):
    """The leases of a catalog (this process's, or a team store's), as seen by a process whose heartbeat
    timeout is `timeout_s`."""

    timeout_s: float

    @abc.abstractmethod
    def acquire(self, model_id: str, holder: str) -> LeaseHolding:
        """A new lease of `holder` (who holds it, as people should read it) on an entry."""

    @abc.abstractmethod
    def renew(self, lease_id: str) -> LeaseHolding:
        """Record the holder's heartbeat; NotFound once the lease was released or its entry deleted."""

    @abc.abstractmethod
    def release(self, lease_id: str) -> None:
        """End a lease; NotFound when there is no such lease (any more)."""

    @abc.abstractmethod
    def live(self, model_id: str) -> list[LeaseHolding]:
        """The leases on an entry whose heartbeat is fresh, oldest first."""

    def holder(self) -> str:
        """Who this process is, as its leases name it."""
        return holder_description()

    def refuse_delete(self, record: RecordView) -> None:
        """Conflict when a live lease holds the entry: who holds it and since when."""
        leases = self.live(record.id)
        if leases:
            raise Conflict(
                f"{record.name} is in use by {holders_text(leases)}; delete it once they are done, "
                "or force the delete (force=True, `mistudio delete --force`, DELETE …?force=true)"
            )

    @contextlib.contextmanager
    def holding(self, record: RecordView) -> Iterator[HeldLease]:
        """A lease of this process on `record`, renewed while it is held; released if the block fails.

        Inside the block, `held.attach(model)` hands it to the loaded model, whose lifetime it follows.
        """
        held = HeldLease(self, self.acquire(record.id, self.holder()).id)
        try:
            yield held
        except BaseException:
            held.release()
            raise


class LeaseBook(Leases):
    """The leases of this process's catalog."""

    def __init__(self, catalog: Catalog, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._sessions = sessionmaker(catalog.engine, expire_on_commit=False)

    def acquire(self, model_id: str, holder: str) -> Lease:
        with self._sessions() as session, session.begin():
            record = session.get(ModelRecord, valid_id(model_id))
            if record is None:
                raise NotFound(f"no model with id {model_id!r} in the catalog")
            lease = Lease(model_id=record.id, commit=record.commit, holder=holder[:255])
            session.add(lease)
            session.execute(delete(Lease).where(Lease.heartbeat_at < utcnow() - ROWS_OF_STALE_LEASES_KEPT))
        return lease

    def renew(self, lease_id: str) -> Lease:
        with self._sessions() as session, session.begin():
            renewed = session.execute(update(Lease).where(Lease.id == valid_id(lease_id)).values(heartbeat_at=utcnow()))
            if renewed.rowcount == 0:
                raise NotFound(f"no lease {lease_id!r}: it was released, or its model was deleted")
            return session.scalars(select(Lease).where(Lease.id == lease_id)).one()

    def release(self, lease_id: str) -> None:
        with self._sessions() as session, session.begin():
            if session.execute(delete(Lease).where(Lease.id == valid_id(lease_id))).rowcount == 0:
                raise NotFound(f"no lease {lease_id!r}: it was released, or its model was deleted")

    def live(self, model_id: str) -> list[Lease]:  # type: ignore[override]
        fresh_since = utcnow() - dt.timedelta(seconds=self.timeout_s)
        query = (
            select(Lease)
            .where(Lease.model_id == model_id, Lease.heartbeat_at >= fresh_since)
            .order_by(Lease.created_at, Lease.id)
        )
        with self._sessions() as session:
            return list(session.scalars(query))


class HeldLease:
    """A lease this process holds: a daemon thread renews it until `release()`."""

    def __init__(self, book: Leases, lease_id: str) -> None:
        self.id = lease_id
        self._book = book
        self._owner = os.getpid()
        self._stop = threading.Event()
        threading.Thread(target=self._beat, name="mistudio-lease", daemon=True).start()

    def attach(self, model: Any) -> None:
        """Hold the lease while `model` lives: released when it is garbage-collected or the process exits."""
        _HELD[model] = self
        weakref.finalize(model, self.release)

    def release(self) -> None:
        """End the lease now (again: nothing happens)."""
        if self._stop.is_set() or os.getpid() != self._owner:
            return  # a forked child (a DataLoader worker, say) shares the model, not the lease
        self._stop.set()
        with contextlib.suppress(NotFound):
            self._book.release(self.id)

    def _beat(self) -> None:
        while not self._stop.wait(self._book.timeout_s / BEATS_PER_TIMEOUT):
            try:
                self._book.renew(self.id)
            except NotFound:  # the entry was deleted by force
                self._stop.set()
            except Exception:  # the catalog is busy or unreachable for now: try again on the next beat
                log.warning("mistudio: renewing lease %s failed", self.id, exc_info=True)


def release(model: Any) -> bool:
    """End the lease that loading `model` (`ModelManager.load`) took, before the model is garbage-collected;
    returns whether it held one. Its entry can then be deleted while the model stays in memory."""
    held = _HELD.pop(model, None)
    if held is None:
        return False
    held.release()
    return True


def holder_description() -> str:
    """Who holds a lease, as `user@host pid N kernel` (or `process` outside a Jupyter kernel)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a container, say)
        user = str(os.getuid())
    return f"{user}@{process_description()}"


def process_description() -> str:
    """This process, as `host pid N kernel` (or `process` outside a Jupyter kernel)."""
    kind = "kernel" if "ipykernel" in sys.modules else "process"
    return f"{socket.gethostname()} pid {os.getpid()} {kind}"


def holders_text(leases: list[LeaseHolding]) -> str:
    """`alice@gpu1 pid 42 kernel since 2026-12-01 20:15 UTC`, and how many more hold it."""
    first = leases[0]
    since = first.created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    more = f" and {len(leases) - 1} more" if len(leases) > 1 else ""
    return f"{first.holder} since {since}{more}"
