"""Report jobs: a thread pool per process, all state in the ``reports`` table.

Life of a report: ``queued`` (row created, job submitted) -> ``running`` (claimed by exactly one
thread, in whichever process: the claim is a conditional UPDATE) -> ``complete`` (CSV renamed
into ``REPORTS_DIR``) or ``failed`` (error recorded). Because the state is in the database, any
web process can answer a poll.

A running job writes a heartbeat every :data:`HEARTBEAT_EVERY` seconds. A report is orphaned
when its process is gone -- same host and its pid dead, or the pid now belongs to another process
(each process has a random token in ``worker``: ``host:pid:token``), or it is this process's but
no thread here has it -- or when its heartbeat is older than :data:`STALE_AFTER` (any host).
Orphans are recovered -- re-queued, or failed after :data:`MAX_ATTEMPTS` -- when a process starts
serving (:func:`recover_reports`) and whenever one is polled (:func:`reap_if_orphaned`): a report
never stays "Running" forever.

A trigger fixes the report's ``now`` (``as_of``, or the latest poll) and the data version (the
ingest ledger's last stored id). A report asked for with the same ``now`` and version as one
queued, running or complete is not computed again: the new id names that one (``reuse_of``) and
answers with its state and CSV. Distinct reports waiting or running are bounded by
``REPORT_QUEUE_MAX`` (:class:`QueueFull` beyond it). Finished reports are kept
``REPORT_RETENTION_DAYS`` days and at most ``REPORT_KEEP`` of them; older ones are expired --
file and database copy deleted, the row kept a while so that ``/get_report`` can say
``410 Gone`` -- and the table stays bounded (:func:`expire_reports`).
"""

from __future__ import annotations

import gzip
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from flask import Flask
from sqlalchemy import bindparam, delete, func, select, update

from . import formats, metrics, snapshot, storage
from .compute import report_windows
from .config import report_parallelism
from .extensions import db
from .models import Report
from .processes import process_alive
from .reports import NoPollsError, build_report, now_warning, write_csv
from .times import format_datetime, format_instant, parse_periods

log = logging.getLogger(__name__)

QUEUED, RUNNING, COMPLETE, FAILED, EXPIRED = "queued", "running", "complete", "failed", "expired"
MAX_ATTEMPTS = 2  # a report whose process died twice is failed, not retried again
HEARTBEAT_EVERY = 10.0  # seconds between heartbeats of a running job
STALE_AFTER = timedelta(seconds=60)  # no heartbeat for this long: the owner is gone
PROGRESS_EVERY_S = 0.5  # at most one progress write per this many seconds
ID_HEX_CHARS = 32  # report ids: 128 random bits as hex
TOMBSTONE_DAYS = 7  # an expired report's row answers 410 this long after its retention ends
# Failures that are the data's or the caller's, not a bug: logged as one line, no traceback.
EXPECTED_FAILURES = (NoPollsError,)

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_lock = threading.Lock()
_token: tuple[int, str] | None = None  # (pid, random token) of this process
_mine: set[str] = set()  # ids of the reports queued or running in this process


def _now() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """``host:pid:token``; the token tells this process from a later one that reuses the pid."""
    global _token
    if _token is None or _token[0] != os.getpid():
        _token = (os.getpid(), secrets.token_hex(4))
    return f"{socket.gethostname()}:{_token[0]}:{_token[1]}"


def new_report_id() -> str:
    return secrets.token_hex(ID_HEX_CHARS // 2)


def is_report_id(text: str) -> bool:
    return len(text) == ID_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


def report_path(app: Flask, report_id: str, fmt: formats.Format = formats.CSV) -> Path:
    """Where this process keeps a finished report in ``fmt`` (the CSV, or a format made from it)."""
    return Path(app.config["REPORTS_DIR"]) / f"report_{report_id}.{fmt.extension}"


def report_file(app: Flask, report: Report, fmt: formats.Format) -> Path:
    """A complete report as ``fmt``: made from its CSV on first request, then kept beside it
    (same retention) so the next request is a file read. The CSV is this process's file, or
    the database copy when another host computed the report. Raises ``FileNotFoundError``
    when neither exists."""
    path = report_path(app, report.id, fmt)
    if path.is_file():
        return path
    csv_path = report_path(app, report.id)
    if csv_path.is_file():
        return formats.convert(csv_path, fmt, path, about(report))
    data = csv_bytes(report)
    if data is None:
        raise FileNotFoundError(f"report {report.id} is complete but its CSV is missing")
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        copy = Path(folder) / "report.csv"
        copy.write_bytes(data)
        return formats.convert(copy, fmt, path, about(report))


def about(report: Report) -> formats.About:
    """What the report is, for the formats that carry it (the workbook's ``about`` sheet, ...)."""
    return formats.About(
        report_id=report.id,
        now=format_instant(report.now_us),
        data_version=report.data_version,
        as_of=format_instant(report.as_of_us) if report.as_of_us is not None else None,
        periods=", ".join(w.name for w in report_windows(report.periods)),
        rows=report.store_count,
        generated_at=format_datetime(report.finished_at),
    )


def executor(app: Flask) -> ThreadPoolExecutor:
    """This process's pool, created on first use (so never before gunicorn forks)."""
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=app.config["REPORT_WORKERS"], thread_name_prefix="report")
            _executor_pid = os.getpid()
        return _executor


class QueueFull(Exception):
    """As many distinct reports as REPORT_QUEUE_MAX are already waiting or running."""

    retry_after = 10  # seconds


def submit_report(app: Flask, as_of_us: int | None = None, periods: str | None = None) -> str:
    """Record a new report and, unless an identical one exists, hand it to this process's pool.

    ``periods``: the extra periods, as :func:`~storemon.times.parse_periods` reads them (None or
    empty: none). ``now`` (``as_of_us`` or the latest poll) and the data version are read here,
    so two triggers with nothing ingested between them ask for the same report (same periods
    too) and share it. The check and the insert are one write transaction on the jobs database,
    so concurrent triggers (any process) see each other. Raises :class:`QueueFull`.
    """
    expire_reports(app)
    with db.engine.connect() as conn:  # a short read of the data (never waits for an ingest)
        with conn.begin():
            now_us = as_of_us if as_of_us is not None else storage.latest_poll_us(conn)
            version = storage.data_version(conn)
    periods = ",".join(name for name, _length in parse_periods(periods)) or None
    report_id = new_report_id()
    jobs_engine = db.engines["jobs"]
    with storage.write_transaction(jobs_engine, app.config["SQLITE_BUSY_TIMEOUT_MS"] / 1000, lock=_JOBS_LOCK) as conn:
        same = None
        if now_us is not None:
            same = conn.execute(
                select(Report.id)
                .where(
                    Report.now_us == now_us,
                    Report.data_version == version,
                    Report.periods.is_(None) if periods is None else Report.periods == periods,
                    Report.reuse_of.is_(None),
                    Report.status.in_([QUEUED, RUNNING, COMPLETE]),
                )
                .order_by(Report.created_at.desc())
                .limit(1)
            ).scalar()
        if same is None:
            waiting = _waiting(conn)
            if waiting >= app.config["REPORT_QUEUE_MAX"]:
                raise QueueFull(
                    f"{waiting} reports are already waiting or running (REPORT_QUEUE_MAX = "
                    f"{app.config['REPORT_QUEUE_MAX']}); try again shortly"
                )
        conn.execute(
            Report.__table__.insert().values(
                id=report_id,
                status=QUEUED if same is None else COMPLETE,
                created_at=_now(),
                as_of_us=as_of_us,
                now_us=now_us,
                data_version=version,
                periods=periods,
                reuse_of=same,
                progress=0.0,
                stage="queued" if same is None else "reused",
                attempts=0,
                worker=worker_name(),
            )
        )
    if same is None:
        _hand_over(app, report_id)
    else:
        log.info("report %s: same now and data as report %s, reusing its result", report_id, same)
    return report_id


_JOBS_LOCK = 0x5709F  # PostgreSQL advisory lock key for trigger's check-then-insert


def resolve(report: Report) -> Report | None:
    """The report that holds the result: itself, or the one it reuses (None if that is gone)."""
    if report.reuse_of is None:
        return report
    return db.session.get(Report, report.reuse_of)


def csv_bytes(report: Report) -> bytes | None:
    """The database copy of a finished report's CSV, uncompressed (None if not kept)."""
    return gzip.decompress(report.csv_gz) if report.csv_gz is not None else None


def expire_reports(app: Flask) -> int:
    """Keep the reports table bounded; returns how many reports were expired.

    * A computed report finished more than ``REPORT_RETENTION_DAYS`` ago, or beyond the
      ``REPORT_KEEP`` newest computed ones, is expired: its CSV file and database copy go, the
      row stays (status ``expired``) for a clear ``410``.
    * An expired row is deleted :data:`TOMBSTONE_DAYS` after the retention ends, or beyond the
      ``REPORT_KEEP`` newest expired rows (``/get_report`` then answers ``404``).
    * A reused row (a trigger that named an identical report) lives and dies with the report it
      names: it is deleted with that report's row, and only the ``REPORT_KEEP`` newest are kept.

    So the table holds at most the waiting reports plus three times ``REPORT_KEEP`` rows.
    """
    config = app.config
    keep, days = int(config["REPORT_KEEP"]), float(config["REPORT_RETENTION_DAYS"])
    computed, reused = Report.reuse_of.is_(None), Report.reuse_of.is_not(None)
    finished = [COMPLETE, FAILED]
    if _within_bounds(keep, days):  # as every trigger asks: one query when nothing is due (then stray files)
        _remove_files_not_live(app)
        return 0
    # Each step reads first, then writes in a transaction that begins with a write (on SQLite a
    # read transaction that turns into a write fails at once if another writer came between).
    ids = _beyond(computed & Report.status.in_(finished), keep, _now() - timedelta(days=days))
    db.session.rollback()
    if ids:
        for report_id in ids:
            for fmt in formats.FORMATS.values():
                report_path(app, report_id, fmt).unlink(missing_ok=True)
        for chunk in _chunks(ids):
            db.session.execute(
                update(Report)
                .where(Report.id.in_(chunk), Report.status.in_(finished))
                .values(status=EXPIRED, stage="expired", csv_gz=None)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        log.info("expired %d report(s) (REPORT_RETENTION_DAYS=%s, REPORT_KEEP=%s)", len(ids), days, keep)
    gone = _beyond(computed & (Report.status == EXPIRED), keep, _now() - timedelta(days=days + TOMBSTONE_DAYS))
    kept = set(db.session.execute(select(Report.id).where(computed)).scalars()) - set(gone)
    gone += [
        row.id
        for row in db.session.execute(select(Report.id, Report.reuse_of).where(reused))
        if row.reuse_of not in kept
    ]  # reused rows whose report is gone
    gone = sorted(set(gone) | set(_beyond(reused, keep, None)))
    db.session.rollback()
    _remove_files_not_live(app)
    if gone:
        for chunk in _chunks(gone):
            db.session.execute(delete(Report).where(Report.id.in_(chunk)).execution_options(synchronize_session=False))
        db.session.commit()
    return len(ids)


def _within_bounds(keep: int, days: float) -> bool:
    """Is nothing in the reports table due to expire or go (see :func:`expire_reports`)? At most
    ``keep`` finished, expired and reused rows each, none past its time, and no reused row
    naming a report that is gone -- counted in one query."""
    retention = _now() - timedelta(days=days)
    counts = db.session.execute(
        _bounds_query(), {"retention": retention, "tombstone": retention - timedelta(days=TOMBSTONE_DAYS)}
    ).one()
    db.session.rollback()
    return counts[0] <= keep and counts[1] <= keep and counts[2] <= keep and counts[3] == 0


@cache
def _bounds_query():
    """:func:`_within_bounds`' query, built once (a statement with an alias costs a millisecond)."""
    computed, reused = Report.reuse_of.is_(None), Report.reuse_of.is_not(None)
    finished = computed & Report.status.in_([COMPLETE, FAILED])
    expired = computed & (Report.status == EXPIRED)
    original = Report.__table__.alias("original")
    orphan = reused & ~select(original.c.id).where(original.c.id == Report.reuse_of).exists()
    due = (
        (finished & (Report.created_at < bindparam("retention", type_=Report.created_at.type)))
        | (expired & (Report.created_at < bindparam("tombstone", type_=Report.created_at.type)))
        | orphan
    )
    counts = (func.count().filter(which) for which in (finished, expired, reused, due))
    return select(*counts).select_from(Report)


def _remove_files_not_live(app: Flask) -> None:
    """Remove the report files (any format) in this process's REPORTS_DIR whose report is not
    live (queued, running or complete): expired by another process, perhaps on another host
    with its own REPORTS_DIR, or deleted."""
    live = set(
        db.session.execute(
            select(Report.id).where(Report.reuse_of.is_(None), Report.status.in_([QUEUED, RUNNING, COMPLETE]))
        ).scalars()
    )
    db.session.rollback()
    for path in Path(app.config["REPORTS_DIR"]).glob("report_*.*"):
        report_id, _, extension = path.name[len("report_") :].partition(".")
        if extension in formats.FORMATS and is_report_id(report_id) and report_id not in live:
            path.unlink(missing_ok=True)


def _beyond(which, keep: int, cutoff: datetime | None) -> list[str]:
    """Ids of the rows matching ``which`` created before ``cutoff`` or beyond the ``keep`` newest."""
    old = (
        []
        if cutoff is None
        else db.session.execute(select(Report.id).where(which, Report.created_at < cutoff)).scalars().all()
    )
    beyond = (
        db.session.execute(select(Report.id).where(which).order_by(Report.created_at.desc()).offset(keep))
        .scalars()
        .all()
    )
    return sorted(set(old) | set(beyond))


def _chunks(ids: list[str], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def queue_full(app: Flask) -> bool:
    """Are ``REPORT_QUEUE_MAX`` distinct reports waiting or running (all processes)?"""
    with db.engines["jobs"].connect() as conn:
        return _waiting(conn) >= app.config["REPORT_QUEUE_MAX"]


def _waiting(conn) -> int:
    return conn.execute(
        select(func.count()).select_from(Report).where(Report.status.in_([QUEUED, RUNNING]), Report.reuse_of.is_(None))
    ).scalar_one()


def _hand_over(app: Flask, report_id: str) -> None:
    with _lock:
        _mine.add(report_id)
    executor(app).submit(run_report, app, report_id)


def run_report(app: Flask, report_id: str) -> None:
    """The job body: claim the report, compute it, write the CSV, record the outcome."""
    with app.app_context():
        beat = None
        started = None
        try:
            if not _claim(report_id):
                return  # another thread or process has it, or it is no longer queued
            started = time.perf_counter()
            beat = _Heartbeat(app, report_id)
            delay = float(app.config.get("REPORT_START_DELAY", 0) or 0)
            if delay:
                time.sleep(delay)  # testing aid: a window in which the job is "running"
            report = db.session.get(Report, report_id)
            now_us = report.now_us if report.now_us is not None else report.as_of_us
            windows = report_windows(report.periods)
            threads, batch_stores = report_parallelism(app.config)
            db.session.rollback()  # end the read; the computation uses its own snapshot
            result = build_report(
                db.engine,
                now_us,
                progress=_ProgressWriter(report_id),
                on_now=_NowRecorder(report_id),
                cache=report_cache(app),
                batch_stores=batch_stores,
                windows=windows,
                parallel=threads,
            )
            path = write_csv(result.frame, report_path(app, report_id))
            _finish(
                report_id,
                status=COMPLETE,
                progress=1.0,
                stage="complete",
                now_us=result.now_us,
                latest_poll_us=result.latest_poll_us,
                warning=result.warning,
                data_version=result.data_version,
                store_count=result.store_count,
                file_name=path.name,
                csv_gz=gzip.compress(path.read_bytes(), compresslevel=1),
            )  # 8 ms, not 33 (level 6), for 14,000 rows
            metrics.report_finished(COMPLETE, time.perf_counter() - started, result.batches)
        except Exception as exc:  # noqa: BLE001 -- every failure must reach the reports table
            if isinstance(exc, EXPECTED_FAILURES):
                log.warning("report %s failed: %s", report_id, _describe(exc))
            else:
                log.exception("report %s failed", report_id)
            db.session.rollback()
            _finish(report_id, status=FAILED, stage="failed", error=_describe(exc))
            if started is not None:
                metrics.report_finished(FAILED, time.perf_counter() - started)
        finally:
            if beat is not None:
                beat.stop()
            db.session.remove()  # connection back to the pool before the job counts as done
            with _lock:
                _mine.discard(report_id)


def report_cache(app: Flask) -> snapshot.ReportCache | None:
    """This process's report cache (storemon/snapshot.py), or None when REPORT_CACHE_POLLS is 0."""
    if not app.config["REPORT_CACHE_POLLS"]:
        return None
    return snapshot.process_cache(app.config["REPORT_CACHE_POLLS"], report_parallelism(app.config)[1])


def _finish(report_id: str, **values) -> None:
    """Record the outcome -- only if this worker still owns the report -- retrying a few times
    (a lock held past the busy timeout, a dropped connection) so it is not lost."""
    for attempt in range(4):
        try:
            db.session.execute(
                update(Report)
                .where(Report.id == report_id, Report.status == RUNNING, Report.worker == worker_name())
                .values(finished_at=_now(), heartbeat_at=_now(), **values)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            return
        except Exception:  # noqa: BLE001
            db.session.rollback()
            if attempt == 3:
                log.exception("could not record the outcome of report %s", report_id)
                return
            time.sleep(0.5 * 2**attempt)


class _Heartbeat:
    """Writes ``heartbeat_at`` every HEARTBEAT_EVERY seconds while a job runs (its own thread)."""

    def __init__(self, app: Flask, report_id: str):
        self.app, self.report_id, self.worker = app, report_id, worker_name()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{report_id[:8]}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(HEARTBEAT_EVERY):
            with self.app.app_context():
                try:
                    db.session.execute(
                        update(Report)
                        .where(Report.id == self.report_id, Report.status == RUNNING, Report.worker == self.worker)
                        .values(heartbeat_at=_now())
                        .execution_options(synchronize_session=False)
                    )
                    db.session.commit()
                except Exception:  # noqa: BLE001 -- a missed beat is retried next time
                    log.warning("heartbeat of report %s failed", self.report_id, exc_info=True)
                finally:
                    db.session.remove()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _claim(report_id: str) -> bool:
    """Queued -> running for this worker; True only for the one caller that wins."""
    result = db.session.execute(
        update(Report)
        .where(Report.id == report_id, Report.status == QUEUED)
        .values(
            status=RUNNING,
            started_at=_now(),
            heartbeat_at=_now(),
            worker=worker_name(),
            attempts=Report.attempts + 1,
            stage="starting",
            progress=0.0,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def _set(report_id: str, **values) -> None:
    """Record progress; a write that fails (the jobs database busy) is dropped, not fatal."""
    try:
        db.session.execute(
            update(Report).where(Report.id == report_id).values(**values).execution_options(synchronize_session=False)
        )
        db.session.commit()
    except Exception:  # noqa: BLE001 -- progress is advisory; the next write brings it up to date
        db.session.rollback()
        log.warning("progress of report %s not recorded", report_id, exc_info=True)


class _NowRecorder:
    """Records the report's `now`, the latest poll before it and any warning as soon as the job
    knows them, so a poll of a running report shows them."""

    def __init__(self, report_id: str):
        self.report_id = report_id

    def __call__(self, now_us: int, latest_poll_us: int) -> None:
        _set(self.report_id, now_us=now_us, latest_poll_us=latest_poll_us, warning=now_warning(now_us, latest_poll_us))


class _ProgressWriter:
    """Progress callback for the engine: writes progress + heartbeat, at most every 0.5 s."""

    def __init__(self, report_id: str):
        self.report_id = report_id
        self.last = 0.0

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        _set(self.report_id, progress=round(float(fraction), 3), stage=stage, heartbeat_at=_now())


# ---------------------------------------------------------------------------------------------
# Orphans: reports whose process died


def _orphaned(report: Report, now: datetime) -> bool:
    """Is the process that owns this queued/running report gone?"""
    host, pid, token = ((report.worker or "").split(":") + ["", "", ""])[:3]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            # This process (or an earlier one with the same pid): alive only if a thread has it.
            with _lock:
                return token != worker_name().rsplit(":", 1)[1] or report.id not in _mine
        if not process_alive(int(pid)):
            return True
    beat = report.heartbeat_at or report.started_at or report.created_at
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return beat is None or now - beat > STALE_AFTER


def _recover(app: Flask, report: Report) -> bool:
    """Re-queue (and resubmit here) or fail one orphaned report. True if it was re-queued."""
    report_id, status, worker, attempts = report.id, report.status, report.worker, report.attempts
    db.session.rollback()  # end the read first: the UPDATE then takes the write lock directly
    reason = f"the process computing it ({worker}) stopped"
    if attempts >= MAX_ATTEMPTS:
        values = dict(
            status=FAILED, stage="failed", finished_at=_now(), error=f"{reason}; gave up after {attempts} attempts"
        )
        requeue = False
    else:
        values = dict(
            status=QUEUED,
            stage="queued",
            progress=0.0,
            worker=worker_name(),
            heartbeat_at=_now(),
            error=f"re-queued: {reason}",
        )
        requeue = True
    result = db.session.execute(
        update(Report)
        .where(Report.id == report_id, Report.status == status, Report.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount == 1 and requeue:
        _hand_over(app, report_id)
        log.warning("report %s re-queued: %s", report_id, reason)
    return result.rowcount == 1 and requeue


def recover_reports(app: Flask) -> int:
    """At start-up: recover every queued/running report whose process is gone."""
    with app.app_context():
        expire_reports(app)
        now = _now()
        reports = db.session.execute(select(Report).where(Report.status.in_([QUEUED, RUNNING]))).scalars().all()
        recovered = 0
        for report in reports:
            if _orphaned(report, now):
                _recover(app, report)
                recovered += 1
        db.session.remove()
        return recovered


def reap_if_orphaned(app: Flask, report: Report) -> None:
    """Called when a queued/running report is polled: recover it if its process is gone."""
    if report.status in (QUEUED, RUNNING) and _orphaned(report, _now()):
        _recover(app, report)
