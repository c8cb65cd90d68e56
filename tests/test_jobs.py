"""Report jobs (storemon/jobs.py) with the Flask test client, on both databases: the stages a
running report reports, its state and file, reports whose process died, failures and their log
lines, identical reports computed once, the queue bound, and the jobs table kept bounded."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import subprocess
import threading

import pandas as pd
import pytest
from helpers import EXPECTED, STATUS, STATUS_HEADER, add_report, as_of, wait_for
from sqlalchemy import delete

from storemon import jobs
from storemon.extensions import db
from storemon.models import Report

ENGINE_STAGES = ["business hours", "look-back", "interpolation", "formatting"]  # per batch


@pytest.mark.parametrize("batch_stores", [10_000, 1], ids=["one batch", "a batch per store"])
def test_a_report_goes_through_every_documented_stage(app, client, loaded, monkeypatch, batch_stores):
    app.config["REPORT_BATCH_STORES"] = batch_stores
    app.config["REPORT_CACHE_POLLS"] = 0
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()
    record = jobs._set

    def recording(report_id, **values):
        if "stage" in values:
            with lock:
                seen.append((values["stage"], values["progress"]))
        record(report_id, **values)

    monkeypatch.setattr(jobs, "PROGRESS_EVERY_S", 0.0)  # every progress call is written
    monkeypatch.setattr(jobs, "_set", recording)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).mimetype == "text/csv"
    stages = [stage for stage, _ in seen]
    stores = len({line.split(",")[0] for line in STATUS.splitlines()[1:]})  # both in the report
    batches = 1 if batch_stores >= stores else stores
    assert stages == ["read", *ENGINE_STAGES * batches, "formatting"]  # then the rows joined, the CSV
    progress = [fraction for _, fraction in seen]
    assert progress == sorted(progress) and 0 < progress[0] and progress[-1] < 1


def test_report_state_and_file(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for(client, report_id)
    with app.app_context():
        report = db.session.get(Report, report_id)
        assert (report.status, report.store_count, report.attempts, report.progress) == ("complete", 2, 1, 1.0)
        assert report.now_us == 1674475200000000 and report.finished_at >= report.started_at
    files = sorted(p.name for p in jobs.report_path(app, report_id).parent.iterdir())
    assert files == [f"report_{report_id}.csv"]  # no temp file left behind


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def orphan(app, status="running", attempts=1) -> str:
    """A report whose process (on this host) is gone."""
    worker = f"{socket.gethostname()}:{dead_pid()}"
    return add_report(app, status=status, attempts=attempts, progress=0.4, stage="interpolation", worker=worker)


def test_a_report_whose_process_died_is_rerun_when_polled(app, client, loaded):
    report_id = orphan(app)
    assert wait_for(client, report_id).get_data(as_text=True) == EXPECTED
    with app.app_context():
        assert db.session.get(Report, report_id).attempts == 2


def test_a_report_whose_process_died_twice_is_failed_with_a_reason(app, client, loaded):
    report_id = orphan(app, attempts=2)
    body = client.get(f"/get_report/{report_id}").get_json()
    assert body["status"] == "Failed"
    assert "stopped; gave up after 2 attempts" in body["error"]


def running_report(app, worker: str, beat_seconds_ago: float) -> str:
    return add_report(app, beat_seconds_ago, worker=worker)


def test_start_up_recovers_orphans_but_not_live_reports(app, client, loaded):
    dead = orphan(app, status="queued", attempts=0)
    # Another live process (our parent) with a fresh heartbeat: left alone.
    live = running_report(app, f"{socket.gethostname()}:{os.getppid()}:feedbeef", beat_seconds_ago=1)
    assert jobs.recover_reports(app) == 1
    assert wait_for(client, dead).mimetype == "text/csv"
    assert client.get(f"/get_report/{live}").get_json()["status"] == "Running"


@pytest.mark.parametrize(
    "worker",
    [
        lambda: f"{socket.gethostname()}:{os.getppid()}:feedbeef",  # alive, but silent for too long
        lambda: f"{socket.gethostname()}:{os.getpid()}:0ldt0ken",  # our pid, an earlier process's token
        lambda: jobs.worker_name(),  # ours, but no thread here has it
        lambda: "other-host:12:abcd1234",  # another host, silent for too long
    ],
    ids=["alive but silent", "our pid with an earlier token", "ours but no thread has it", "another host, silent"],
)
def test_reports_whose_owner_is_gone_are_recovered(app, client, loaded, worker):
    stale = jobs.STALE_AFTER.total_seconds() + 5
    quiet = running_report(
        app, worker(), beat_seconds_ago=stale if "feedbeef" in worker() or "other" in worker() else 1
    )
    assert wait_for(client, quiet).get_data(as_text=True) == EXPECTED


def test_an_as_of_before_every_poll_fails_clearly_with_one_log_line(client, loaded, caplog):
    caplog.set_level("INFO")
    report_id = client.post("/trigger_report", json={"as_of": "2023-01-01T00:00:00Z"}).get_json()["report_id"]
    body = wait_for(client, report_id).get_json()
    assert body["status"] == "Failed" and body["now"] == "2023-01-01T00:00:00Z"
    assert body["error"] == (
        "NoPollsError: no poll at or before 2023-01-01T00:00:00Z; the earliest poll is at 2023-01-23T10:14:00Z"
    )
    records = [r for r in caplog.records if r.name == "storemon.jobs" and r.levelno >= logging.WARNING]
    assert len(records) == 1
    assert records[0].exc_info is None and report_id in records[0].getMessage()
    assert "\n" not in records[0].getMessage()


def test_an_unexpected_report_failure_still_logs_its_traceback(client, loaded, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(jobs, "build_report", broken)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).get_json()["error"] == "RuntimeError: kaboom"
    records = [r for r in caplog.records if r.name == "storemon.jobs" and r.levelno >= logging.WARNING]
    assert len(records) == 1 and records[0].exc_info is not None


def test_identical_reports_are_computed_once(app, client, loaded, tmp_path):
    first = client.post("/trigger_report").get_json()["report_id"]
    second = client.post("/trigger_report").get_json()["report_id"]
    assert first != second
    one, two = wait_for(client, first), wait_for(client, second)
    assert one.data == two.data
    assert two.headers["Content-Disposition"] == f"attachment; filename=report_{second}.csv"
    with app.app_context():
        assert db.session.get(Report, second).reuse_of == first
        kept = db.session.get(Report, first)
        assert gzip.decompress(kept.csv_gz) == one.data  # the database copy, compressed
        assert len(kept.csv_gz) < len(one.data)
    # New data: a new computation.
    client.post("/ingest/status", data=STATUS_HEADER + "new,active,2023-01-23 11:00:00 UTC\n", content_type="text/csv")
    third = client.post("/trigger_report").get_json()["report_id"]
    assert b"new," in wait_for(client, third).data
    with app.app_context():
        assert db.session.get(Report, third).reuse_of is None


def test_the_queue_of_distinct_reports_is_bounded(app, client, loaded, hold):
    app.config.update(REPORT_QUEUE_MAX=1)
    first = client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"})
    assert first.status_code == 200
    assert hold.reached.wait(60), "the first report never started"  # it is running: the queue is full
    assert client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"}).status_code == 200  # same: reused
    full = client.post("/trigger_report", json={"as_of": "2023-01-23T11:00:00Z"})
    assert full.status_code == 503 and full.headers["Retry-After"] == "10"
    assert "REPORT_QUEUE_MAX" in full.get_json()["message"]
    hold.release()
    wait_for(client, first.get_json()["report_id"])
    assert client.post("/trigger_report", json={"as_of": "2023-01-23T11:00:00Z"}).status_code == 200


def test_old_reports_expire_with_a_clear_410(app, client, loaded):
    app.config["REPORT_KEEP"] = 1
    old = client.post("/trigger_report", json={"as_of": "2023-01-23T11:00:00Z"}).get_json()["report_id"]
    wait_for(client, old)
    new = client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"}).get_json()["report_id"]
    wait_for(client, new)
    client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"})  # a trigger sweeps
    gone = client.get(f"/get_report/{old}")
    assert gone.status_code == 410 and "expired" in gone.get_json()["message"]
    assert not jobs.report_path(app, old).exists()
    assert client.get(f"/get_report/{new}", buffered=True).status_code == 200
    app.config["REPORT_RETENTION_DAYS"] = 0
    with app.app_context():
        assert jobs.expire_reports(app) >= 1
    assert client.get(f"/get_report/{new}").status_code == 410


def rows(app) -> dict[str, int]:
    with app.app_context():
        found = db.session.execute(db.select(Report.status, Report.reuse_of)).all()
    tally: dict[str, int] = {}
    for status, reuse_of in found:
        key = "reused" if reuse_of else status
        tally[key] = tally.get(key, 0) + 1
    return tally


def test_the_reports_table_stays_bounded(app, client, loaded):
    app.config["REPORT_KEEP"] = 2
    ids = []
    for minute in range(6):  # six distinct reports, each asked for three times
        asked = [client.post("/trigger_report", json=as_of(12, minute)).get_json()["report_id"] for _ in range(3)]
        for report_id in asked:
            assert wait_for(client, report_id).mimetype == "text/csv"
        ids.append(asked)
    with app.app_context():
        jobs.expire_reports(app)  # as every trigger does first
    assert rows(app) == {"complete": 2, "expired": 2, "reused": 2}
    # The newest expired reports still answer 410; older ones are deleted: 404.
    assert [client.get(f"/get_report/{asked[0]}").status_code for asked in ids[:4]] == [404, 404, 410, 410]
    # Only the newest reused rows are kept (here the last report's two).
    assert [client.get(f"/get_report/{asked[2]}").status_code for asked in ids[:4]] == [404] * 4
    for report_id in ids[5]:
        assert client.get(f"/get_report/{report_id}", buffered=True).mimetype == "text/csv"


def test_a_reused_row_whose_report_is_gone_goes_even_when_nothing_else_is_due(app, client, loaded):
    """Expiry looks at the whole table only when something is due; a reused row left naming a
    deleted report (another process deleted it as this row was written) is such a thing."""
    first = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    reused = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    assert wait_for(client, reused).mimetype == "text/csv"
    with app.app_context():
        assert jobs.expire_reports(app) == 0 and rows(app) == {"complete": 1, "reused": 1}  # nothing due
        db.session.execute(delete(Report).where(Report.id == first))
        db.session.commit()
        jobs.expire_reports(app)
    assert rows(app) == {}
    assert client.get(f"/get_report/{reused}").status_code == 404


def test_a_reused_report_expires_with_the_report_it_names(app, client, loaded):
    first = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    reused = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    assert wait_for(client, reused).mimetype == "text/csv"
    app.config["REPORT_RETENTION_DAYS"] = 0
    with app.app_context():
        assert jobs.expire_reports(app) == 1  # the computed one; the reused row goes with it
    assert [client.get(f"/get_report/{i}").status_code for i in (first, reused)] == [410, 410]


def demo_loaded(engine, tmp_path, stores: int = 60) -> list[str]:
    """Demo feeds of `stores` stores ingested; their ids."""
    from storemon.demo import generate_demo_data
    from storemon.ingest import ingest_files

    feeds = tmp_path / "feeds"
    generate_demo_data(feeds, stores=stores, days=8, seed=3)
    ingest_files(engine, feeds)
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT store_id FROM stores ORDER BY store_key")]


def threaded_jobs(app, monkeypatch) -> list[str]:
    """Report jobs on 4 threads in batches of 5 stores (a thread's batch may be that small here),
    with a cache of their own; returns the names of the threads that compute batches."""
    from storemon import config, reports

    monkeypatch.setattr(config, "MIN_THREAD_BATCH_STORES", 1)
    app.config.update(REPORT_BATCH_STORES=20, REPORT_PARALLEL=4, REPORT_CACHE_POLLS=10**6 + 7)
    names: list[str] = []
    one_batch = reports._one_batch

    def named(*args, **kwargs):
        names.append(threading.current_thread().name)
        return one_batch(*args, **kwargs)

    monkeypatch.setattr(reports, "_one_batch", named)
    return names


def test_a_report_job_on_threads_gives_the_one_thread_report_cold_and_warm(app, client, engine, tmp_path, monkeypatch):
    """A job's batches computed by 4 threads, its progress only going forward; the CSV byte for
    byte the one-thread report, and again after an hour of polls, refreshed from the cache."""
    from storemon.ingest import ingest_file
    from storemon.reports import build_report, write_csv

    ids = demo_loaded(engine, tmp_path)
    names = threaded_jobs(app, monkeypatch)
    seen: list[float] = []
    record = jobs._set

    def recording(report_id, **values):
        if "progress" in values:
            seen.append(values["progress"])
        record(report_id, **values)

    monkeypatch.setattr(jobs, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(jobs, "_set", recording)

    def one_thread() -> bytes:
        return write_csv(build_report(engine, batch_stores=1000).frame, tmp_path / "one.csv").read_bytes()

    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).data == one_thread()
    assert sum(name.startswith("report-batch") for name in names) >= 12  # 60 stores, batches of 5
    assert len(seen) > 12 and seen == sorted(seen)
    with engine.connect() as conn:
        last = conn.exec_driver_sql("SELECT max(last_poll_us) FROM stores").scalar()
    stamp = pd.Timestamp(last + 3_600_000_000, unit="us").strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    hour = "store_id,status,timestamp_utc\n" + "".join(
        f"{s},{'active' if i % 3 else 'inactive'},{stamp}\n" for i, s in enumerate(ids)
    )
    (tmp_path / "hour.csv").write_text(hour)
    ingest_file(engine, "status", tmp_path / "hour.csv")
    names.clear()
    cache = jobs.report_cache(app)
    refreshed = cache.counts["refreshed"]
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).data == one_thread()
    assert cache.counts["refreshed"] > refreshed and any(name.startswith("report-batch") for name in names)


def test_a_batch_failing_on_its_thread_fails_the_job(app, client, engine, tmp_path, monkeypatch):
    from storemon import reports

    demo_loaded(engine, tmp_path)
    threaded_jobs(app, monkeypatch)
    one_batch = reports._one_batch

    def failing(*args, **kwargs):
        if threading.current_thread().name.startswith("report-batch"):
            raise RuntimeError("batch kaboom")
        return one_batch(*args, **kwargs)

    monkeypatch.setattr(reports, "_one_batch", failing)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    body = wait_for(client, report_id).get_json()
    assert body["status"] == "Failed" and body["error"] == "RuntimeError: batch kaboom"


@pytest.mark.parametrize("seed", range(16))
def test_the_one_query_says_nothing_is_due_exactly_when_a_full_expiry_pass_changes_nothing(app, seed):
    """Random tables (finished, expired and reused rows of random ages, reused rows naming a
    report that is there or gone, REPORT_KEEP small): expiry's one query (`_within_bounds`) and
    the full pass it stands for agree."""
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(seed)
    app.config.update(REPORT_KEEP=rng.randint(1, 3), REPORT_RETENTION_DAYS=2)
    computed = []
    for _ in range(rng.randint(0, 6)):
        status = rng.choice(["complete", "failed", "expired"])
        created = datetime.now(UTC) - timedelta(days=rng.choice([0.5, 1.5, 3, 8, 20]))
        computed.append(add_report(app, status=status, created_at=created))
    for _ in range(rng.randint(0, 4)):
        names = rng.choice(computed) if computed and rng.random() < 0.8 else jobs.new_report_id()  # or gone
        add_report(app, status="complete", reuse_of=names, created_at=datetime.now(UTC) - timedelta(hours=1))
    with app.app_context():
        before = sorted(db.session.execute(db.select(Report.id, Report.status)).all())
        quiet = jobs._within_bounds(int(app.config["REPORT_KEEP"]), float(app.config["REPORT_RETENTION_DAYS"]))
    with app.app_context(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(jobs, "_within_bounds", lambda keep, days: False)  # the full pass, always
        jobs.expire_reports(app)
        after = sorted(db.session.execute(db.select(Report.id, Report.status)).all())
    assert quiet == (before == after), (before, after)
