"""Report jobs: a thread pool per process, all state in the ``reports`` table.

Life of a report: ``queued`` (row created, job submitted) -> ``running`` (claimed by exactly one
thread, in whichever process: the claim is a conditional UPDATE) -> ``complete`` (CSV renamed
into ``REPORTS_DIR``) or ``failed`` (error recorded). Because the state is in the database, any
web process can answer a poll.

A process that dies leaves its reports ``running`` (or ``queued``) with its ``host:pid`` in
``worker``. They are recovered -- re-queued, or failed after :data:`MAX_ATTEMPTS` -- when a
process starts serving (:func:`recover_reports`) and whenever such a report is polled
(:func:`reap_if_orphaned`): a report never stays "Running" forever.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import select, update

from .extensions import db
from .models import Report
from .reports import build_report, write_csv

log = logging.getLogger(__name__)

QUEUED, RUNNING, COMPLETE, FAILED = "queued", "running", "complete", "failed"
MAX_ATTEMPTS = 2  # a report whose process died twice is failed, not retried again
STALE_AFTER = timedelta(minutes=15)  # no heartbeat from another host for this long: orphaned
PROGRESS_EVERY_S = 0.5  # at most one progress write per this many seconds
ID_HEX_CHARS = 32  # report ids: 128 random bits as hex

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_lock = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_report_id() -> str:
    return secrets.token_hex(ID_HEX_CHARS // 2)


def is_report_id(text: str) -> bool:
    return len(text) == ID_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


def report_path(app: Flask, report_id: str) -> Path:
    return Path(app.config["REPORTS_DIR"]) / f"report_{report_id}.csv"


def executor(app: Flask) -> ThreadPoolExecutor:
    """This process's pool, created on first use (so never before gunicorn forks)."""
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(
                max_workers=app.config["REPORT_WORKERS"], thread_name_prefix="report"
            )
            _executor_pid = os.getpid()
        return _executor


def submit_report(app: Flask, as_of_us: int | None = None) -> str:
    """Record a new report as queued and hand it to this process's pool; return its id."""
    report = Report(id=new_report_id(), status=QUEUED, created_at=_now(), as_of_us=as_of_us,
                    progress=0.0, stage="queued", attempts=0, worker=worker_name())
    db.session.add(report)
    db.session.commit()
    executor(app).submit(run_report, app, report.id)
    return report.id


def run_report(app: Flask, report_id: str) -> None:
    """The job body: claim the report, compute it, write the CSV, record the outcome."""
    with app.app_context():
        try:
            if not _claim(report_id):
                return  # another thread or process has it, or it is no longer queued
            delay = float(app.config.get("REPORT_START_DELAY", 0) or 0)
            if delay:
                time.sleep(delay)  # testing aid: a window in which the job is "running"
            report = db.session.get(Report, report_id)
            as_of_us = report.as_of_us
            db.session.rollback()  # end the read; the computation uses its own snapshot
            progress = _ProgressWriter(report_id)
            result = build_report(db.engine, as_of_us, progress=progress)
            path = write_csv(result.frame, report_path(app, report_id))
            _set(report_id, status=COMPLETE, progress=1.0, stage="complete", finished_at=_now(),
                 heartbeat_at=_now(), now_us=result.now_us, store_count=result.store_count,
                 file_name=path.name)
        except Exception as exc:  # noqa: BLE001 -- every failure must reach the reports table
            log.exception("report %s failed", report_id)
            db.session.rollback()
            _set(report_id, status=FAILED, stage="failed", finished_at=_now(), error=_describe(exc))
        finally:
            db.session.remove()


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _claim(report_id: str) -> bool:
    """Queued -> running for this worker; True only for the one caller that wins."""
    result = db.session.execute(
        update(Report)
        .where(Report.id == report_id, Report.status == QUEUED)
        .values(status=RUNNING, started_at=_now(), heartbeat_at=_now(), worker=worker_name(),
                attempts=Report.attempts + 1, stage="starting", progress=0.0)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def _set(report_id: str, **values) -> None:
    db.session.execute(
        update(Report).where(Report.id == report_id).values(**values).execution_options(synchronize_session=False)
    )
    db.session.commit()


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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(report: Report, now: datetime) -> bool:
    """Is the process that owns this queued/running report gone?"""
    host, _, pid = (report.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not _process_alive(int(pid))
    beat = report.heartbeat_at or report.started_at or report.created_at
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=timezone.utc)
    return beat is None or now - beat > STALE_AFTER


def _recover(app: Flask, report: Report) -> bool:
    """Re-queue (and resubmit here) or fail one orphaned report. True if it was re-queued."""
    reason = f"the process computing it ({report.worker}) stopped"
    if report.attempts >= MAX_ATTEMPTS:
        values = dict(status=FAILED, stage="failed", finished_at=_now(),
                      error=f"{reason}; gave up after {report.attempts} attempts")
        requeue = False
    else:
        values = dict(status=QUEUED, stage="queued", progress=0.0, worker=worker_name(),
                      error=f"re-queued: {reason}")
        requeue = True
    result = db.session.execute(
        update(Report)
        .where(Report.id == report.id, Report.status == report.status, Report.worker == report.worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount == 1 and requeue:
        executor(app).submit(run_report, app, report.id)
        log.warning("report %s re-queued: %s", report.id, reason)
    return result.rowcount == 1 and requeue


def recover_reports(app: Flask) -> int:
    """At start-up: recover every queued/running report whose process is gone."""
    with app.app_context():
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
