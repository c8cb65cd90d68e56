"""Report jobs (storemon/jobs.py) with the Flask test client, on both databases: the stages a
running report reports, the jobs table kept bounded, and triggers limited when the queue is full."""

from __future__ import annotations

import threading

import pytest
from test_api import STATUS, loaded, wait_for  # noqa: F401  (fixture)

from storemon import jobs

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
