"""Report jobs (storemon/jobs.py) with the Flask test client, on both databases: the stages a
running report reports, the jobs table kept bounded, and triggers limited when the queue is full."""

from __future__ import annotations

import threading

import pytest
from test_api import STATUS, loaded, wait_for  # noqa: F401  (fixture)

from storemon import create_app, jobs, storage
from storemon.extensions import db
from storemon.ingest import ingest_file



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
    app = create_app({**settings, "DATABASE_URL": f"sqlite:///file:{data}?mode=ro&uri=true",
                      "JOBS_DATABASE_URL": f"sqlite:///file:{state}?mode=ro&uri=true"})
    client = app.test_client()
    for response in (client.post("/trigger_report"), client.get("/trigger_report?as_of=2023-01-23T12:00:00Z")):
        assert response.status_code == 503 and response.is_json
        assert "read-only" in response.get_json()["message"]
        assert int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in caplog.text
    with app.app_context():
        storage.dispose_all()
