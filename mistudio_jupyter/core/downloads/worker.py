"""`python -m mistudio_jupyter.core.downloads.worker [MODEL_ID]`: run one download job.

The parent has already claimed the catalog row for this process (`host:pid`) and sends the
settings, token, options and, when it has just asked the Hub, the file plan as one JSON object on
stdin, so the token never shows in argv. The job waits for one of `max_parallel_downloads` slots
(status `pending`), then downloads with the engine, reporting progress and a heartbeat to the row at
most once a second, and checks its cancel flag. SIGTERM stops it at once (even inside a stalled read);
the partial files stay for a resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, MiStudioError, NotFound
from ..hub import FilePlan, HubClient, TensorInfo
from ..jobs import worker_name
from ..settings import Settings
from ..snapshot import count_params, local_tensors, read_json
from ..units import format_bytes
from .cache import ensure_disk_space, missing_bytes
from .engine import Engine, Progress

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..sqlite_catalog import SQLiteCatalog

log = logging.getLogger("mistudio_jupyter.downloads.worker")

EXIT_LOST = 3  # the worker lost its claim (cancelled before start, or another worker took over)
REPORT_EVERY_S = 1.0
SLOT_POLL_S = 0.2
SUMMARY_ENV = "MISTUDIO_DOWNLOAD_SUMMARY"


class _LostClaim(Exception):
    """The row was deleted or claimed by another worker: stop without writing to it."""


class _Interrupt:
    """SIGTERM/SIGINT handling: always sets `stop`; raises Cancelled only while armed, so the
    final catalog write is never cut in half."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.armed = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop.set()
        if self.armed:
            raise Cancelled("download cancelled")

    def trigger(self) -> None:
        """Stop the main thread from another thread, interrupting a blocking read."""
        self.stop.set()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


def open_catalog(db_url: str) -> Catalog | SQLiteCatalog:
    """The catalog at `db_url`: an SQLite file at the newest schema through the standard library, any
    other through SQLAlchemy (which the parent has already migrated)."""
    from ..sqlite_catalog import SQLiteCatalog

    catalog = SQLiteCatalog.open(db_url)
    if catalog is not None:
        return catalog
    from ..catalog import Catalog

    return Catalog(db_url)


class _Reporter(threading.Thread):
    """Opens the catalog, then writes progress and the heartbeat once a second and turns a cancel
    request into a stop.

    Opening a catalog other than a current SQLite file imports SQLAlchemy (a third of a second of CPU),
    so the reporter waits for `open()`, which the job calls once the transfer has its first answer (or
    when it needs the catalog itself): the import then slows neither the first requests nor the engine's
    judgement of the path by that answer. State changes reported before the catalog is open are written
    by its first beat.
    """

    def __init__(self, db_url: str, model_id: str, worker: str, progress: Progress, interrupt: _Interrupt) -> None:
        super().__init__(name="mistudio-reporter", daemon=True)
        self.db_url, self.model_id, self.worker = db_url, model_id, worker
        self.progress, self.interrupt = progress, interrupt
        self.catalog: Catalog | SQLiteCatalog | None = None
        self.failure: BaseException | None = None
        self.status = "downloading"  # as the parent's claim wrote it
        self.unwritten: dict[str, Any] = {}
        self.lost = False
        self._wanted = threading.Event()
        self._open = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._last: tuple[float, int] | None = None  # when and where progress was last written
        self._speed: float | None = None

    def run(self) -> None:
        self._wanted.wait()
        try:
            self.catalog = open_catalog(self.db_url)
        except BaseException as error:  # noqa: BLE001 - the main thread raises it
            self.failure = error
            self.interrupt.trigger()
            return
        finally:
            self._open.set()
        while not self._halt.is_set() and self._beat():
            self._halt.wait(REPORT_EVERY_S)

    def _beat(self) -> bool:
        """One write of everything; False once the job is to stop."""
        try:
            with self._lock:
                cancel = self.catalog.heartbeat(self.model_id, self.worker, **self.fields())  # type: ignore[union-attr]
        except NotFound:
            self.lost = cancel = True
        if cancel:
            self.interrupt.trigger()
        return not cancel

    def open(self) -> None:
        """Open the catalog now (on this thread)."""
        self._wanted.set()

    def opened(self) -> Catalog | SQLiteCatalog:
        """The catalog, once open; raises why it could not be opened."""
        self.open()
        self._open.wait()
        if self.failure is not None:
            raise self.failure
        assert self.catalog is not None
        return self.catalog

    def report(self, **fields: Any) -> bool:
        """Write a state change now if the catalog is open (returns whether a cancel was requested),
        else leave it to the first beat."""
        with self._lock:
            self.status = fields.get("status", self.status)
            self.unwritten.update(fields)
            if self.catalog is None:
                return False
            return self.catalog.heartbeat(self.model_id, self.worker, **self.fields())

    def fields(self) -> dict[str, Any]:
        """State changes not yet written and, once the transfer has counted what is on disk, progress
        with the speed smoothed over the last seconds."""
        progress = self.progress
        unwritten, self.unwritten = self.unwritten, {}
        if not progress.bytes_total:  # the record keeps what the last run reached
            return {**unwritten, "status": self.status}
        now, done = time.monotonic(), progress.bytes_done
        then, before = self._last or (now, done)
        self._last = (now, done)
        if self.status == "downloading" and now > then:
            sample = max(done - before, 0) / (now - then)
            self._speed = sample if self._speed is None else 0.5 * self._speed + 0.5 * sample
        remaining = max(progress.bytes_total - done, 0)
        return {
            **unwritten,
            "status": self.status,
            "bytes_done": done,
            "bytes_total": progress.bytes_total or unwritten.get("bytes_total"),
            "current_file": progress.current_file,
            "speed_bps": self._speed,
            "connections": progress.connections if self.status == "downloading" else None,
            "eta_s": remaining / self._speed if self._speed else None,
        }

    def halt(self) -> None:
        self._halt.set()
        self._wanted.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join()


class Job:
    """One download job of one catalog entry, in this process."""

    def __init__(
        self,
        settings: Settings,
        model_id: str,
        token: str | None,
        *,
        plan: FilePlan | None = None,
        allow_pickle: bool = False,
        allow_remote_code: bool = False,
        hub_answer_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.model_id = model_id
        self.token = token
        self.plan = plan
        self.allow_pickle = allow_pickle
        self.allow_remote_code = allow_remote_code
        self.hub = HubClient(settings)
        self.hub.answer_s = hub_answer_s  # the parent's, until this process asks the Hub itself
        self.worker = worker_name()
        self.interrupt = _Interrupt()
        self.progress = Progress()
        self.reporter = _Reporter(settings.db_url, model_id, self.worker, self.progress, self.interrupt)

    def run(self) -> int:
        """Run to a final status in the catalog; returns the exit status."""
        self.reporter.start()
        try:
            self.interrupt.armed = True
            fields = self._download()
            self.interrupt.armed = False
            self._finish(status="ready", **fields)
            self._store_architecture(Path(fields["file_path"]))
        except (Cancelled, _LostClaim):
            self.interrupt.armed = False
            if self.reporter.lost:
                return EXIT_LOST
            self._finish(status="cancelled")
        except MiStudioError as error:
            self.interrupt.armed = False
            self._finish(status="failed", error_code=error.code, error_message=error.message)
        except Exception as error:  # noqa: BLE001 - any failure must reach the catalog, not just the log
            self.interrupt.armed = False
            log.exception("download of %s failed", self.model_id)
            self._finish(status="failed", error_code="download_failed", error_message=_describe(error))
        return 0

    def _download(self) -> dict[str, Any]:
        with self._slot():
            self._report(status="downloading")
            plan = self.plan or self._plan()
            plan.ensure_safe(allow_pickle=self.allow_pickle, allow_remote_code=self.allow_remote_code)
            self._report(commit=plan.commit, gated=plan.gated, bytes_total=plan.download_bytes)
            ensure_disk_space(self.settings.cache_dir, plan, self.settings.disk_margin_bytes)
            engine = Engine(
                self.settings.cache_dir,
                endpoint=self.settings.hub_endpoint,
                token=self.token,
                stop=self.interrupt.stop,
                progress=self.progress,
                max_connections=self.settings.max_connections,
                hub_answer_s=self.hub.answer_s,
            )
            snapshot = engine.fetch(plan, on_start=self.reporter.open)
        return completion_fields(plan, snapshot)

    def _plan(self) -> FilePlan:
        """The plan, asked of the Hub (a resume, or a parent that had none); notes bytes fetched before
        that are gone from the disk."""
        record = self.reporter.opened().get(self.model_id)
        with self.hub.errors(record.repo_id, self.token):
            plan = self.hub.file_plan(record.repo_id, record.revision, self.token)
        lost = record.bytes_done - (plan.download_bytes - missing_bytes(self.settings.cache_dir, plan))
        if lost > 0:
            self._report(
                note=f"{format_bytes(lost)} fetched before were no longer on disk (removed by a clean-up of the "
                "cache, such as `prune_cache()` or deleting its folder); they are fetched again"
            )
        return plan

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the host's `max_parallel_downloads` slots (a file lock each); queued until then."""
        from filelock import FileLock, Timeout

        folder = self.settings.cache_dir / ".locks" / "mistudio"
        folder.mkdir(parents=True, exist_ok=True)
        locks = [
            FileLock(str(folder / f"download-slot-{index}.lock"))
            for index in range(self.settings.max_parallel_downloads)
        ]
        while True:
            for lock in locks:
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                try:
                    yield
                finally:
                    lock.release()
                return
            if self.reporter.status != "pending":
                self.reporter.opened()  # a queued job says so at once
                self._report(status="pending")
            if self.interrupt.stop.wait(SLOT_POLL_S):
                raise _LostClaim() if self.reporter.lost else Cancelled("download cancelled")

    def _report(self, **fields: Any) -> None:
        """Write a state change (at once when the catalog is open; progress waits for the reporter's next beat)."""
        try:
            cancel = self.reporter.report(**fields)
        except NotFound:
            self.reporter.lost = True
            raise _LostClaim() from None
        if cancel or self.reporter.lost:
            raise _LostClaim() if self.reporter.lost else Cancelled("download cancelled")

    def _store_architecture(self, snapshot: Path) -> None:
        """Add the architecture summary after the entry is ready: it imports torch and transformers
        (seconds of CPU), which a finished download should not wait for."""
        config = read_json(snapshot / "config.json")
        if config is None or not _summary_wanted():
            return
        architecture = _architecture(config, local_tensors(snapshot), snapshot)
        if architecture is not None:
            with contextlib.suppress(NotFound):
                self.reporter.opened().update(self.model_id, architecture=architecture)

    def _finish(self, **fields: Any) -> None:
        self.reporter.halt()
        try:
            catalog = self.reporter.opened()
        except Exception:  # noqa: BLE001 - no catalog, nowhere to write: the log has it
            log.exception("the catalog could not be opened; the final status of %s is not written", self.model_id)
            return
        final = {**self.reporter.fields(), "speed_bps": None, "eta_s": None, "connections": None, **fields}
        if final["status"] == "ready":
            final["current_file"] = None
        try:
            catalog.heartbeat(self.model_id, self.worker, **final)
        except NotFound:
            log.info("%s was deleted or taken over; its final status is not written", self.model_id)


def _describe(error: Exception) -> str:
    """An unexpected failure as the catalog shows it: for OS errors the reason without the file path
    (the message reaches REST clients; the log has the traceback)."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"{type(error).__name__}: {reason}"


def completion_fields(plan: FilePlan, snapshot: Path) -> dict[str, Any]:
    """Catalog fields of a ready entry: where it is, what it is and how big."""
    from ..anatomy.families import family_of

    config = read_json(snapshot / "config.json")
    model_type = config.get("model_type") if config else None
    tensors = local_tensors(snapshot)
    return {
        "file_path": str(snapshot),
        "commit": plan.commit,
        "size_bytes": plan.download_bytes,
        "bytes_done": plan.download_bytes,
        "bytes_total": plan.download_bytes,
        "model_type": model_type,
        "family": family_of(model_type) if model_type else None,
        "params": count_params(tensors),
    }


def _summary_wanted() -> bool:
    """`MISTUDIO_DOWNLOAD_SUMMARY=0` skips the architecture summary, which imports torch and
    transformers (seconds of CPU): for download-only hosts, and tests that do not look at it."""
    return os.environ.get(SUMMARY_ENV, "1") != "0"


def _architecture(config: dict[str, Any], tensors: dict[str, TensorInfo], snapshot: Path) -> dict[str, Any] | None:
    from ..anatomy.architecture import describe_architecture

    try:
        return describe_architecture(config, tensors)
    except Exception as error:  # noqa: BLE001 - the summary is extra; a complete download stays ready
        log.warning("no architecture summary for %s: %s", snapshot, error)
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: the request (model id, settings, token, options) as JSON on stdin; a model id in
    argv names the job while it waits for it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _warm_up()
    text = sys.stdin.read()
    if not text:
        return EXIT_LOST  # the parent lost the claim race, or its download did not start, and told us nothing
    request = json.loads(text)
    _log_to(Path(request["log"]))
    values = request["settings"]
    settings = Settings(**{**values, "cache_dir": Path(values["cache_dir"]), "token": request.get("token")})
    plan = request.get("plan")
    job = Job(
        settings,
        request["model_id"],
        request.get("token"),
        plan=FilePlan.from_json(plan) if plan else None,
        allow_pickle=request.get("allow_pickle", False),
        allow_remote_code=request.get("allow_remote_code", False),
        hub_answer_s=request.get("hub_answer_s"),
    )
    return job.run()


def _warm_up() -> None:
    """What every job needs, made ready before its request comes (a worker started ahead of its job is
    idle until then): the HTTP session, its TLS context the costly part, and the modules a job's first
    request would otherwise wait for."""
    import filelock  # noqa: F401
    from huggingface_hub.utils import build_hf_headers, get_session

    get_session()
    build_hf_headers(token=False)


def _log_to(path: Path) -> None:
    """Send this process's output to its job's log (a worker started ahead of its job logs elsewhere)."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    for stream in (1, 2):
        os.dup2(descriptor, stream)
    os.close(descriptor)


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # As multiprocessing's children do: the job has written all it keeps, and the interpreter's own
    # teardown (a tenth of a second with the database layer loaded) would only delay the parent.
    os._exit(status)
