"""The HTTP API (docs/interfaces.md) with the Flask test client, and report jobs."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from helpers import EXPECTED, STATUS, wait_for, write_csv
from sqlalchemy import inspect as sa_inspect

from storemon import jobs, storage
from storemon.extensions import db
from storemon.ingest import ingest_file
from storemon.models import Report
from storemon.reports import build_report, write_csv as write_report


def test_trigger_then_poll_to_the_csv(client, loaded):
    response = client.post("/trigger_report")
    assert response.status_code == 200
    report_id = response.get_json()["report_id"]
    assert jobs.is_report_id(report_id) and len(response.get_json()) == 1
    done = wait_for(client, report_id)
    assert done.status_code == 200
    assert done.mimetype == "text/csv"
    assert done.headers["X-Report-Status"] == "Complete"
    assert done.headers["Content-Disposition"] == f"attachment; filename=report_{report_id}.csv"
    assert done.get_data(as_text=True) == EXPECTED
    # Both addressing forms answer the same.
    assert client.get(f"/get_report/{report_id}", buffered=True).get_data(as_text=True) == EXPECTED


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.post("/trigger_report", json={"as_of": "2023-01-23T11:00:00Z"}),
        lambda c: c.get("/trigger_report?as_of=2023-01-23%2011:00:00%20UTC"),
        lambda c: c.post("/trigger_report", data={"as_of": "2023-01-23T11:00:00+00:00"}),
    ],
)
def test_as_of_from_json_query_or_form(client, loaded, call):
    report_id = call(client).get_json()["report_id"]
    body = wait_for(client, report_id).get_data(as_text=True)
    assert body.splitlines()[1:] == ["007,60.00,2.00,3.00,0.00,0.00,0.00"]


def test_bad_requests_get_json_errors(client, loaded):
    for url, code in [
        ("/get_report", 400),
        ("/get_report?report_id=", 400),
        ("/get_report?report_id=abc", 400),
        ("/get_report?report_id=../../etc/passwd", 400),
        ("/get_report/..%2F..%2Fetc%2Fpasswd", 404),  # never reaches the view: no such route
        ("/get_report/" + "A" * 32, 400),
        ("/get_report/" + "0" * 32, 404),
        ("/no/such/page", 404),
    ]:
        response = client.get(url)
        assert response.status_code == code, url
        assert response.is_json and set(response.get_json()) == {"error", "message"}, url
    response = client.delete("/trigger_report")
    assert response.status_code == 405 and response.is_json
    assert "POST" in response.headers["Allow"]
    response = client.post("/trigger_report", json={"as_of": "soon"})
    assert response.status_code == 400 and "as_of" in response.get_json()["message"]
    response = client.post("/trigger_report", data="{nope", content_type="application/json")
    assert response.status_code == 400 and response.is_json


def test_unexpected_errors_are_json_500(client, loaded, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(jobs, "submit_report", boom)
    response = client.post("/trigger_report")
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal Server Error", "message": "internal error; see the server log"}


def parse_z(text: str) -> datetime:
    """An ISO 8601 UTC instant ending in Z, as the API writes them."""
    assert text.endswith("Z"), text
    value = datetime.fromisoformat(text[:-1])
    assert value.tzinfo is None, text  # no offset besides the Z
    return value.replace(tzinfo=timezone.utc)


def test_running_reports_show_their_stage_progress_and_start(client, loaded, hold):
    before = datetime.now(timezone.utc)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert hold.reached.wait(30), "the report never reached the interpolation stage"
    body = client.get(f"/get_report/{report_id}").get_json()
    assert body == {
        "status": "Running", "report_id": report_id, "state": "running", "stage": "interpolation",
        "progress": round(hold.fraction, 3),  # what the job reported at this stage
        "created_at": body["created_at"], "started_at": body["started_at"], "now": "2023-01-23T12:00:00Z",
    }
    assert 0.02 < body["progress"] < 0.95  # past reading the data, before formatting
    assert before <= parse_z(body["created_at"]) <= parse_z(body["started_at"]) <= datetime.now(timezone.utc)
    hold.release()
    assert wait_for(client, report_id).get_data(as_text=True) == EXPECTED


def test_a_failed_report_says_why(client):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    body = wait_for(client, report_id).get_json()
    assert body["status"] == "Failed"
    assert "no polls in the database yet" in body["error"]


def test_report_state_and_file(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for(client, report_id)
    with app.app_context():
        report = db.session.get(Report, report_id)
        assert (report.status, report.store_count, report.attempts, report.progress) == ("complete", 2, 1, 1.0)
        assert report.now_us == 1674475200000000 and report.finished_at >= report.started_at
    files = sorted(p.name for p in jobs.report_path(app, report_id).parent.iterdir())
    assert files == [f"report_{report_id}.csv"]  # no temp file left behind


# --- ingestion over HTTP ---------------------------------------------------------------------


def test_ingest_upload_multipart_and_text_csv(client, engine):
    response = client.post(
        "/ingest/status", data={"file": (io.BytesIO(STATUS.encode()), "store_status.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["rows_read"], body["rows_stored"], body["rows_changed"], body["file"]) == (3, 3, 3, "store_status.csv")
    response = client.post("/ingest/timezones", data="store_id,timezone_str\n007,Nowhere/Land\n", content_type="text/csv")
    assert response.status_code == 200
    assert response.get_json()["warnings"] == ["1 unknown time zone name(s), reported as America/Chicago: Nowhere/Land"]
    again = client.post("/ingest/status", data=STATUS, content_type="text/csv").get_json()
    assert again["rows_changed"] == 0
    assert client.get("/health").get_json()["polls"] == 3


def test_ingest_upload_errors(client):
    response = client.post("/ingest/hours", data="store_id,start_time_local\n1,09:00\n", content_type="text/csv")
    assert response.status_code == 400 and "missing required column" in response.get_json()["message"]
    assert "upload.csv" in response.get_json()["message"]
    assert client.post("/ingest/menus", data="x", content_type="text/csv").status_code == 404
    assert client.post("/ingest/status", data="x", content_type="application/octet-stream").status_code == 400
    response = client.post("/ingest/status?strict=1", data=STATUS + "1,active,nope\n", content_type="text/csv")
    assert response.status_code == 400 and "line 5: bad timestamp" in response.get_json()["message"]


# --- orphaned reports ------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def orphan(app, status="running", attempts=1) -> str:
    report_id = jobs.new_report_id()
    with app.app_context():
        now = datetime.now(timezone.utc)
        db.session.add(Report(id=report_id, status=status, created_at=now, started_at=now, heartbeat_at=now,
                              progress=0.4, stage="interpolation", attempts=attempts,
                              worker=f"{socket.gethostname()}:{dead_pid()}"))
        db.session.commit()
    return report_id


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
    report_id = jobs.new_report_id()
    with app.app_context():
        beat = datetime.now(timezone.utc) - timedelta(seconds=beat_seconds_ago)
        db.session.add(Report(id=report_id, status="running", created_at=beat, started_at=beat, heartbeat_at=beat,
                              progress=0.1, attempts=1, worker=worker))
        db.session.commit()
    return report_id


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
)
def test_reports_whose_owner_is_gone_are_recovered(app, client, loaded, worker):
    stale = jobs.STALE_AFTER.total_seconds() + 5
    quiet = running_report(app, worker(), beat_seconds_ago=stale if "feedbeef" in worker() or "other" in worker() else 1)
    assert wait_for(client, quiet).get_data(as_text=True) == EXPECTED


def test_a_complete_report_is_served_from_the_database_when_the_file_is_elsewhere(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for(client, report_id)
    jobs.report_path(app, report_id).unlink()  # as on a host that did not compute it
    response = client.get(f"/get_report/{report_id}", buffered=True)
    assert response.status_code == 200 and response.headers["X-Report-Status"] == "Complete"
    assert response.headers["Content-Disposition"] == f"attachment; filename=report_{report_id}.csv"
    assert response.get_data(as_text=True) == EXPECTED


# --- consistency under a concurrent ingest ---------------------------------------------------


def test_a_report_reads_one_snapshot_while_an_ingest_commits(app, loaded, tmp_path, monkeypatch):
    """An ingest commits between the report's reads: no lock error, and the report is the one
    of the database before the ingest."""
    before = build_report(loaded).frame
    newer = write_csv(tmp_path / "later.csv", "store_id,status,timestamp_utc\n007,active,2023-01-23 11:50:00 UTC\nnew,active,2023-01-23 11:00:00 UTC\n")
    real_hours = storage.hours_by_key
    ingested = {}

    def hours_with_an_ingest_in_between(conn, keys=None):
        def other_writer():
            with app.app_context():
                ingested["summary"] = ingest_file(db.engine, "status", newer)

        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=60)
        return real_hours(conn, keys)

    monkeypatch.setattr(storage, "hours_by_key", hours_with_an_ingest_in_between)
    during = build_report(loaded).frame
    assert ingested["summary"].rows_changed == 2  # the ingest did commit, while the report read
    pd.testing.assert_frame_equal(during, before)
    monkeypatch.undo()
    after = build_report(loaded).frame
    assert "new" in after["store_id"].tolist() and not after.equals(before)


def test_report_files_are_written_atomically(tmp_path):
    frame = pd.DataFrame({"store_id": ["1"], "uptime_last_hour": [1.0]})
    path = write_report(frame, tmp_path / "r.csv")
    assert path.read_text() == "store_id,uptime_last_hour\n1,1.00\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


# --- as_of: the accepted range, the `now` used, a warning when it is far after the data ------


@pytest.mark.parametrize("as_of", ["2030-01-01T00:00:00Z", "1999-12-31", "9999-12-31 23:59:59 UTC",
                                   "0001-01-01T00:00:00+05:00"])
def test_an_as_of_outside_the_accepted_range_says_so_with_the_range(client, loaded, as_of):
    response = client.post("/trigger_report", json={"as_of": as_of})
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "cannot read" not in message
    assert "outside the accepted range" in message
    assert "from 2000-01-01T00:00:00Z to one day after the current time" in message
    latest = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert f"({latest}T" in message  # the upper bound, spelled out


def test_an_unreadable_as_of_is_called_unreadable(client, loaded):
    message = client.post("/trigger_report", json={"as_of": "next tuesday"}).get_json()["message"]
    assert message.startswith("as_of: cannot read 'next tuesday' as an instant")


def test_a_complete_report_carries_the_now_used(client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    done = wait_for(client, report_id)
    assert done.headers["X-Report-Now"] == "2023-01-23T12:00:00Z"
    assert "X-Report-Warning" not in done.headers
    # 23 h after the latest poll is not yet worth a warning.
    report_id = client.post("/trigger_report", json={"as_of": "2023-01-24T11:00:00Z"}).get_json()["report_id"]
    done = wait_for(client, report_id)
    assert done.headers["X-Report-Now"] == "2023-01-24T11:00:00Z"
    assert "X-Report-Warning" not in done.headers


def test_an_as_of_long_after_the_last_poll_warns(app, client, loaded, hold):
    expected_warning = (
        "now (2023-03-01T00:00:00Z) is 36.5 days after the latest poll (2023-01-23T12:00:00Z): "
        "the figures extrapolate each store's last known status"
    )
    report_id = client.post("/trigger_report", json={"as_of": "2023-03-01T00:00:00Z"}).get_json()["report_id"]
    queued_or_running = client.get(f"/get_report/{report_id}").get_json()
    assert queued_or_running["status"] == "Running" and queued_or_running["now"] == "2023-03-01T00:00:00Z"
    assert hold.reached.wait(30), "the report never reached the interpolation stage"
    running = client.get(f"/get_report/{report_id}").get_json()
    assert (running["status"], running["now"], running["warning"]) == ("Running", "2023-03-01T00:00:00Z", expected_warning)
    hold.release()
    done = wait_for(client, report_id)
    assert done.headers["X-Report-Now"] == "2023-03-01T00:00:00Z"
    warning = done.headers["X-Report-Warning"]
    assert warning == expected_warning
    with app.app_context():
        report = db.session.get(Report, report_id)
        assert (report.now_us, report.latest_poll_us, report.warning) == (1677628800000000, 1674475200000000, warning)


def test_the_running_answer_shows_now_and_warning_once_known(app, client, loaded):
    report_id = jobs.new_report_id()
    with app.app_context():
        now = datetime.now(timezone.utc)
        db.session.add(Report(id=report_id, status="running", created_at=now, started_at=now, heartbeat_at=now,
                              progress=0.3, stage="interpolation", attempts=1, worker="other-host:1:abcd1234",
                              now_us=1677628800000000, latest_poll_us=1674475200000000, warning="far"))
        db.session.commit()
    body = client.get(f"/get_report/{report_id}").get_json()
    assert (body["status"], body["now"], body["warning"]) == ("Running", "2023-03-01T00:00:00Z", "far")


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


def test_json_timestamps_are_iso_8601_utc_with_z(client, loaded, hold):
    before = datetime.now(timezone.utc)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert hold.reached.wait(30), "the report never reached the interpolation stage"
    body = client.get(f"/get_report/{report_id}").get_json()
    assert body["status"] == "Running"
    assert parse_z(body["now"]) == datetime(2023, 1, 23, 12, tzinfo=timezone.utc)
    # In UTC: the instants lie between the trigger and now.
    created, started = parse_z(body["created_at"]), parse_z(body["started_at"])
    assert before <= created <= started <= datetime.now(timezone.utc)
    hold.release()
    wait_for(client, report_id)


def test_an_older_reports_table_gains_the_new_columns(app, client, loaded, database_url):
    """A database created before `latest_poll_us`/`warning` existed is upgraded at start-up."""
    with app.app_context():
        with db.engines["jobs"].begin() as conn:
            conn.exec_driver_sql("ALTER TABLE reports DROP COLUMN warning")
            conn.exec_driver_sql("ALTER TABLE reports DROP COLUMN latest_poll_us")
        storage.dispose_all()
    from storemon import create_app

    again = create_app({"TESTING": True, "DATABASE_URL": database_url, "REPORTS_DIR": app.config["REPORTS_DIR"]})
    again.config["REPORT_START_DELAY"] = 0
    try:
        with again.app_context():
            columns = {c["name"] for c in sa_inspect(db.engines["jobs"]).get_columns("reports")}
            assert {"latest_poll_us", "warning"} <= columns
        test_client = again.test_client()
        report_id = test_client.post("/trigger_report", json={"as_of": "2023-03-01T00:00:00Z"}).get_json()["report_id"]
        assert "X-Report-Warning" in wait_for(test_client, report_id).headers
    finally:
        with again.app_context():
            db.session.remove()
            storage.dispose_all()
