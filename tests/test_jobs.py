"""Report jobs (storemon/jobs.py) with the Flask test client, on both databases: the stages a
running report reports, the jobs table kept bounded, and triggers limited when the queue is full."""

from __future__ import annotations

import threading

import pytest
from helpers import STATUS, as_of, wait_for

from storemon import create_app, jobs, storage
from storemon.api import TRIGGER_BURST, TRIGGER_WINDOW_S, TriggerLimiter
from storemon.extensions import db
from storemon.ingest import ingest_file
from storemon.models import Report


def ingest_text(engine, kind: str, text: str, folder):
    path = folder / f"{kind}.csv"
    path.write_text(text)
    return ingest_file(engine, kind, path)


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


def test_a_trigger_on_a_read_only_database_is_503_with_retry_after(tmp_path, caplog):
    data, state = tmp_path / "storemon.db", tmp_path / "jobs.db"
    settings = {"REPORTS_DIR": str(tmp_path / "reports"), "UPLOAD_DIR": str(tmp_path / "up")}
    writable = create_app({**settings, "DATABASE_URL": f"sqlite:///{data}", "JOBS_DATABASE_URL": f"sqlite:///{state}"})
    with writable.app_context():
        ingest_text(db.engine, "status", STATUS, tmp_path)
        storage.dispose_all()
    app = create_app(
        {
            **settings,
            "DATABASE_URL": f"sqlite:///file:{data}?mode=ro&uri=true",
            "JOBS_DATABASE_URL": f"sqlite:///file:{state}?mode=ro&uri=true",
        }
    )
    client = app.test_client()
    for response in (client.post("/trigger_report"), client.get("/trigger_report?as_of=2023-01-23T12:00:00Z")):
        assert response.status_code == 503 and response.is_json
        assert "read-only" in response.get_json()["message"]
        assert int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in caplog.text
    with app.app_context():
        storage.dispose_all()


@pytest.fixture
def gate(monkeypatch):
    """Report jobs wait at their start until the test sets this event (fails the test after 60 s)."""
    opened = threading.Event()
    build = jobs.build_report

    def gated(*args, **kwargs):
        assert opened.wait(60), "the test never opened the gate"
        return build(*args, **kwargs)

    monkeypatch.setattr(jobs, "build_report", gated)
    yield opened
    opened.set()


def test_triggers_are_limited_per_client_once_the_queue_is_full(app, client, loaded, gate):
    app.config["REPORT_QUEUE_MAX"] = 1
    first = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    for _ in range(TRIGGER_BURST):  # the queue is full: these count (reusing the running report)
        assert client.post("/trigger_report", json=as_of(12)).status_code == 200
    limited = client.post("/trigger_report", json=as_of(12))
    assert limited.status_code == 429 and limited.is_json
    assert limited.headers["Retry-After"] == str(int(TRIGGER_WINDOW_S))
    assert "the report queue is full" in limited.get_json()["message"]
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "127.0.0.2"  # another client is not limited by this one
    assert other.post("/trigger_report", json=as_of(12)).status_code == 200
    assert other.post("/trigger_report", json=as_of(11)).status_code == 503  # a distinct report: no room
    gate.set()
    assert wait_for(client, first).mimetype == "text/csv"
    assert client.post("/trigger_report", json=as_of(11)).status_code == 200  # room again: not limited


def test_the_trigger_limiter_counts_a_sliding_window():
    limiter = TriggerLimiter(burst=2, window_s=10, max_clients=2)
    assert [limiter.allow("a", now=t) for t in (0, 1, 2, 9.9, 10.0, 11.0, 11.5)] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert limiter.allow("b", now=12) and limiter.allow("c", now=12)
    assert list(limiter.hits) == ["b", "c"]  # the least recent client is forgotten


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


def test_a_reused_report_expires_with_the_report_it_names(app, client, loaded):
    first = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    reused = client.post("/trigger_report", json=as_of(12)).get_json()["report_id"]
    assert wait_for(client, reused).mimetype == "text/csv"
    app.config["REPORT_RETENTION_DAYS"] = 0
    with app.app_context():
        assert jobs.expire_reports(app) == 1  # the computed one; the reused row goes with it
    assert [client.get(f"/get_report/{i}").status_code for i in (first, reused)] == [410, 410]
