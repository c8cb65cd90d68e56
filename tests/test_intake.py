"""Trustworthy intake (issue 11), with the Flask test client on both databases: bad rows that
used to crash or slip through, the ingest ledger, locks, who may write, limits, what the report
hands out, and reports under load and over time. The defects that need a real server (cut
bodies on a socket, the bind check) are in test_intake_server.py."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import threading
import time
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from helpers import STATUS, hours, polls, wait_for, write_csv

from storemon import storage
from storemon import create_app, jobs, storage
from storemon.config import ConfigError
from storemon.extensions import db
from storemon.ingest import IngestBusy, ingest_file, ingest_files
from storemon.models import Report
from storemon.reports import write_csv as write_report
from storemon.uploads import sweep_stale

HEADER = "store_id,status,timestamp_utc\n"


# --- 2. only the timestamp forms of the feed ---------------------------------------------------


def test_now_and_today_are_bad_timestamps_not_the_wall_clock(engine, tmp_path):
    path = write_csv(tmp_path / "s.csv", HEADER + "a,active,now\nb,active,today\nc,active, NOW \nd,active,2023-01-25 12:00:00 UTC\n")
    summary = ingest_file(engine, "status", path)
    assert summary.skipped == {"bad timestamp": 3}
    assert [r.store_id for r in polls(engine)] == ["d"]
    again = ingest_file(engine, "status", path, force=True)  # no new poll on a second pass
    assert again.rows_changed == 0 and len(polls(engine)) == 1


# --- 4. rows that used to crash or refuse the whole file ---------------------------------------


def test_rows_with_too_many_fields_are_counted_with_their_lines(engine, tmp_path, client):
    text = HEADER + "a,active,2023-01-25 12:00:00 UTC\nb,active,2023-01-25 12:00:00 UTC,extra\nc,bogus,2023-01-25 12:00:00 UTC\nd,active,2023-01-25 13:00:00 UTC,x,y\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text))
    assert summary.skipped == {"too many fields": 2, "unknown status": 1}
    assert summary.rows_read == 4 and summary.rows_stored == 1
    lines = sorted((b.line, b.reason) for b in summary.examples)
    assert lines == [(3, "too many fields"), (4, "unknown status"), (5, "too many fields")]
    # The first data row too, and over HTTP: a summary, never a 500.
    response = client.post("/ingest/status", data=HEADER + "x,active,2023-01-25 12:00:00 UTC,1\n", content_type="text/csv")
    assert response.status_code == 200 and response.get_json()["skipped"] == {"too many fields": 1}


def test_a_row_that_is_not_utf8_is_skipped_with_its_line(engine, tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(
        HEADER.encode() + b"a,active,2023-01-25 12:00:00 UTC\nb\xff\xfe,active,2023-01-25 12:00:00 UTC\n"
        b"c,active,2023-01-25 12:00:00 UTC\n"
    )
    summary = ingest_file(engine, "status", path)
    assert summary.skipped == {"not UTF-8": 1}
    assert [(b.line, b.reason) for b in summary.examples] == [(3, "not UTF-8")]
    assert "\\xff" in summary.examples[0].text  # shown, not crashing the JSON or the terminal
    assert [r.store_id for r in polls(engine)] == ["a", "c"]


# --- 3. the ingest ledger ------------------------------------------------------------------------


def test_a_restart_does_not_revert_an_upload(app, client, runner, tmp_path, engine):
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,17:00\n")
    write_csv(data / "store_status.csv", STATUS)
    assert runner.invoke(args=["ingest", str(data)]).exit_code == 0
    changed = "store_id,day,start_time_local,end_time_local\n007,1,10:00,11:00\n"
    response = client.post("/ingest/hours", data={"file": (io.BytesIO(changed.encode()), "new_hours.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.get_json()["outcome"] == "stored"
    # make run's start-up ingest of data/ again: the older file is recognised and not re-applied.
    result = runner.invoke(args=["ingest", str(data)])
    assert result.exit_code == 0, result.output
    assert "unchanged, not applied again" in result.output and "ledger #1" in result.output
    assert hours(engine) == [("007", 1, 36000, 39600)]
    # --force re-applies it (the user asked).
    assert runner.invoke(args=["ingest", "--force", "--hours", str(data / "menu_hours.csv")]).exit_code == 0
    assert hours(engine) == [("007", 0, 32400, 61200)]

    listed = client.get("/ingests").get_json()["ingests"]
    assert [(r["kind"], r["source"], r["outcome"]) for r in listed] == [
        ("hours", "cli", "stored"),
        ("status", "cli", "unchanged"),
        ("hours", "cli", "unchanged"),
        ("hours", "http", "stored"),
        ("status", "cli", "stored"),
        ("hours", "cli", "stored"),
    ]
    upload = listed[3]
    assert upload["file_name"] == "new_hours.csv" and upload["size"] == len(changed)
    assert len(upload["sha256"]) == 64 and upload["rows_read"] == upload["rows_stored"] == 1
    assert upload["started_at"].endswith("Z") and upload["finished_at"].endswith("Z")
    result = runner.invoke(args=["ingests"])
    assert result.exit_code == 0, result.exception
    text = result.output.splitlines()
    assert text, (result.output, result.stderr)
    assert text[0].startswith("#6 ") and "hours" in text[0] and "stored" in text[0]


def test_refused_files_are_in_the_ledger_too(client):
    response = client.post("/ingest/hours", data="store_id,oops\n1,2\n", content_type="text/csv")
    assert response.status_code == 400
    row = client.get("/ingests").get_json()["ingests"][0]
    assert row["outcome"] == "refused" and "missing required column" in row["message"]


# --- 5. locks: a long ingest never fails a report, a trigger or a poll ---------------------------


class HeldWriteLock:
    """Holds the data database's write lock the way a long ingest does, until released."""

    def __init__(self, engine):
        self.engine, self.ready, self.release = engine, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with storage.write_transaction(self.engine, 5) as conn:
            conn.exec_driver_sql("INSERT INTO stores (store_id, first_poll_us, last_poll_us) VALUES ('held', 1, 1)")
            self.ready.set()
            self.release.wait(60)

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(10)


def test_while_an_ingest_holds_the_database(app, client, runner, loaded, tmp_path):
    app.config["INGEST_WAIT_SECONDS"] = 0.5
    with HeldWriteLock(loaded):
        started = time.monotonic()
        response = client.post("/trigger_report")
        assert response.status_code == 200 and time.monotonic() - started < 5  # at once
        report = wait_for(client, response.get_json()["report_id"])
        assert report.headers["X-Report-Status"] == "Complete"  # a report reads its snapshot
        busy = client.post("/ingest/status", data=HEADER + "z,active,2023-01-23 12:00:00 UTC\n", content_type="text/csv")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == str(IngestBusy.retry_after)
        assert "try again later" in busy.get_json()["message"]
        path = write_csv(tmp_path / "more.csv", HEADER + "z,active,2023-01-23 12:00:00 UTC\n")
        result = runner.invoke(args=["ingest", "--status", str(path)])
        assert result.exit_code == 75
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    ok = client.post("/ingest/status", data=HEADER + "z,active,2023-01-23 12:00:00 UTC\n", content_type="text/csv")
    assert ok.status_code == 200  # its turn came


# --- 6. who may write -----------------------------------------------------------------------------


@pytest.fixture
def secured(app):
    app.config["STOREMON_API_TOKENS"] = "s3cret-one-0123456, s3cret-two-0123456"
    return app.test_client()


def basic(password: str, user: str = "") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_api_tokens(secured, loaded):
    for call in (secured.post("/trigger_report"), secured.get("/ingests"), secured.get("/get_report/" + "0" * 32),
                 secured.post("/ingest/status", data=STATUS, content_type="text/csv"),
                 secured.post("/trigger_report", headers={"Authorization": "Bearer wrong"}),
                 secured.post("/trigger_report", headers=basic("wrong"))):
        assert call.status_code == 401
        assert call.get_json()["error"] == "Unauthorized"
        assert call.headers.getlist("WWW-Authenticate") == ['Bearer realm="storemon"', 'Basic realm="storemon", charset="UTF-8"']
    assert secured.get("/health").status_code == 200  # open, for load balancers
    assert secured.post("/trigger_report", headers={"Authorization": "Bearer s3cret-two-0123456"}).status_code == 200
    assert secured.get("/ingests", headers=basic("s3cret-one-0123456")).status_code == 200  # curl -u :token
    assert secured.get("/ingests", headers=basic("s3cret-one-0123456", user="anyone")).status_code == 200


def test_without_tokens_other_sites_cannot_write(client, loaded):
    csv_body = HEADER + "x,active,2023-01-23 12:00:00 UTC\n"
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"},
                    {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://localhost:9999"}):
        response = client.post("/ingest/status", data=csv_body, content_type="text/plain", headers=headers)
        assert response.status_code == 403, headers
        assert "cross-site request refused" in response.get_json()["message"]
        assert client.get("/trigger_report", headers=headers).status_code == 403  # GET creates a report
    assert client.get("/ingests", headers={"Origin": "https://evil.example"}).status_code == 200  # reads: CORS applies
    assert client.post("/trigger_report", headers={"Origin": "http://localhost"}).status_code == 200  # own page
    assert client.post("/trigger_report", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post("/trigger_report").status_code == 200  # curl
    # DNS rebinding: a name that is not this machine's.
    assert client.get("/ingests", headers={"Host": "evil.example:8000"}).status_code == 403
    assert client.get("/ingests", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/ingests", headers={"Host": "[::1]:8000"}).status_code == 200


def test_head_does_not_create_a_report(app, client, loaded):
    assert client.head("/trigger_report").status_code == 200
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Report)).scalar_one() == 0


# --- 7. limits --------------------------------------------------------------------------------------


def test_upload_limit(app, client):
    app.config["MAX_UPLOAD_BYTES"] = 100
    body = HEADER + "a,active,2023-01-23 12:00:00 UTC\n" * 5
    for response in (client.post("/ingest/status", data=body, content_type="text/csv"),
                     client.post("/ingest/status", data={"file": (io.BytesIO(body.encode()), "s.csv")},
                                 content_type="multipart/form-data")):
        assert response.status_code == 413
        assert "limit is 100 bytes" in response.get_json()["message"]
    assert client.get("/ingests").get_json()["ingests"] == []


def test_long_store_ids_and_long_lines(app, engine, tmp_path, client):
    long_id = "x" * 256
    text = HEADER + f"{long_id},active,2023-01-23 12:00:00 UTC\n{'y' * 255},active,2023-01-23 12:00:00 UTC\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text))
    assert summary.skipped == {"store_id too long": 1} and summary.rows_stored == 1
    assert len(summary.examples[0].text) < 260  # quoted, cut: at most ~200 characters of a row
    app.config["MAX_LINE_BYTES"] = 2048
    huge = HEADER + "a," + "z" * 5000 + ",2023-01-23 12:00:00 UTC\n"
    response = client.post("/ingest/status", data=huge, content_type="text/csv")
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "line 2 is longer than 2,048 bytes" in message and len(message) < 400


def test_a_refused_header_is_quoted_short(client):
    response = client.post("/ingest/status", data="h" * 100_000 + "\n1\n", content_type="text/csv")
    assert response.status_code == 400 and len(response.get_json()["message"]) < 600


def test_stale_upload_files_are_swept_at_start_up(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    dead = folder / "upload-999999999-0123abcd.part"  # no such pid
    dead.write_bytes(b"half an upload")
    mine = folder / "notes.txt"
    mine.write_text("not ours")
    assert sweep_stale(folder) == 1
    assert not dead.exists() and mine.exists()


def test_uploads_leave_no_file_behind(app, client):
    client.post("/ingest/status", data=STATUS, content_type="text/csv")
    client.post("/ingest/status", data={"other": (io.BytesIO(STATUS.encode()), "s.csv")}, content_type="multipart/form-data")
    assert list((app.config["UPLOAD_DIR"] and __import__("pathlib").Path(app.config["UPLOAD_DIR"])).glob("*")) == []


# --- 8. what the report hands out -------------------------------------------------------------------


def test_every_store_id_round_trips_through_the_report_csv(tmp_path):
    ids = ['plain', 'with,comma', 'with "quotes"', 'cr\rinside', 'lf\ninside', 'crlf\r\nboth', ' lead', 'trail ', '007', 'ünï']
    frame = pd.DataFrame({"store_id": ids, **{c: [1.5] * len(ids) for c in (
        "uptime_last_hour", "uptime_last_day", "uptime_last_week", "downtime_last_hour", "downtime_last_day",
        "downtime_last_week")}})
    path = write_report(frame, tmp_path / "r.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows[1:]] == ids and all(r[1:] == ["1.50"] * 6 for r in rows[1:])
    back = pd.read_csv(path, dtype={"store_id": str}, keep_default_na=False)
    assert back["store_id"].tolist() == ids


def test_unsafe_store_ids_are_refused_at_ingest(engine, tmp_path):
    bad = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "tab\tin", "nul\x00", "bell\x07"]
    rows = "".join(f'"{b.replace(chr(34), chr(34) * 2)}",active,2023-01-23 12:00:00 UTC\n' for b in bad)
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", HEADER + rows + "ok=1,active,2023-01-23 12:00:00 UTC\n"))
    assert summary.skipped == {"unsafe store_id": len(bad)}
    assert [r.store_id for r in polls(engine)] == ["ok=1"]  # '=' inside an id is fine
    hours_file = write_csv(tmp_path / "h.csv", "store_id,day,start_time_local,end_time_local\n=cmd,0,09:00,10:00\n")
    assert ingest_file(engine, "hours", hours_file).skipped == {"unsafe store_id": 1}


# --- 9. reports under load and over time ---------------------------------------------------------


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
    client.post("/ingest/status", data=HEADER + "new,active,2023-01-23 11:00:00 UTC\n", content_type="text/csv")
    third = client.post("/trigger_report").get_json()["report_id"]
    assert b"new," in wait_for(client, third).data
    with app.app_context():
        assert db.session.get(Report, third).reuse_of is None


def test_the_queue_of_distinct_reports_is_bounded(app, client, loaded):
    app.config.update(REPORT_QUEUE_MAX=1, REPORT_START_DELAY=2)
    first = client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"})
    assert first.status_code == 200
    assert client.post("/trigger_report", json={"as_of": "2023-01-23T12:00:00Z"}).status_code == 200  # same: reused
    full = client.post("/trigger_report", json={"as_of": "2023-01-23T11:00:00Z"})
    assert full.status_code == 503 and full.headers["Retry-After"] == "10"
    assert "REPORT_QUEUE_MAX" in full.get_json()["message"]
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


# --- 10. small ones ----------------------------------------------------------------------------------


def test_settings_that_cannot_work_are_refused_at_start_up(tmp_path, monkeypatch):
    for key, value in (("REPORT_WORKERS", 0), ("REPORT_WORKERS", "two"), ("MAX_UPLOAD_BYTES", -1)):
        with pytest.raises(ConfigError, match=key):
            create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path), key: value})


def test_no_worker_header(client):
    assert "X-Storemon-Worker" not in client.get("/health").headers


def test_multipart_needs_a_field_named_file(client):
    response = client.post("/ingest/status", data={"upload": (io.BytesIO(STATUS.encode()), "s.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "field named 'file'" in response.get_json()["message"]


def test_a_multipart_body_without_its_closing_boundary_is_incomplete(client, engine):
    body = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="s.csv"\r\n\r\n' + STATUS.encode()
    response = client.post("/ingest/status", data=body, content_type="multipart/form-data; boundary=XX")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("upload incomplete: the multipart body ends before")
    assert polls(engine) == []


def test_rows_stored_counts_distinct_keys(app, engine, tmp_path):
    text = HEADER + "a,active,2023-01-23 12:00:00 UTC\n" * 7 + "a,inactive,2023-01-23 12:00:00 UTC\nb,active,2023-01-23 12:00:00 UTC\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text), chunk_rows=3)
    assert (summary.rows_read, summary.rows_stored) == (9, 2)
    assert polls(engine)[0][2] in (False, 0)  # the later row for the key won


def test_demo_data_refuses_zero_stores(runner, tmp_path):
    result = runner.invoke(args=["demo-data", "--stores", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--stores" in result.output and result.exception.__class__ is SystemExit


def test_read_only_database_is_degraded_and_writes_get_503(tmp_path):
    path = tmp_path / "storemon.db"
    settings = {"REPORTS_DIR": str(tmp_path / "reports"), "UPLOAD_DIR": str(tmp_path / "up"),
                "JOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}"}
    writable = create_app({**settings, "DATABASE_URL": f"sqlite:///{path}"})
    assert writable.test_client().get("/health").get_json()["status"] == "ok"
    with writable.app_context():
        storage.dispose_all()
    app = create_app({**settings, "DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"})
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded" and "read-only" in health.get_json()["message"]
    response = client.post("/ingest/status", data=STATUS, content_type="text/csv")
    assert response.status_code == 503 and "read-only" in response.get_json()["message"]
    assert response.headers["Retry-After"]


def test_wide_rows_at_the_start_and_later_keep_true_line_numbers(engine, tmp_path):
    text = (HEADER + "w1,active,2023-01-25 12:00:00 UTC,x\nw2,active,2023-01-25 12:00:00 UTC,x,y\n"
            "a,active,2023-01-25 12:00:00 UTC\nw3,active,2023-01-25 12:00:00 UTC,x\nb,bogus,2023-01-25 12:00:00 UTC\n")
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text), chunk_rows=2)
    assert summary.skipped == {"too many fields": 3, "unknown status": 1}
    assert sorted((b.line, b.reason) for b in summary.examples) == [
        (2, "too many fields"), (3, "too many fields"), (5, "too many fields"), (6, "unknown status")]
    assert [r.store_id for r in polls(engine)] == ["a"]


def test_distinct_keys_are_exact_then_bounded(monkeypatch):
    from storemon.storage import DistinctKeys

    t0 = 1_700_000_000_000_000
    keys = DistinctKeys()
    for start in (0, 3, 3, 10):  # overlapping chunks: 0-5, 3-8 twice, 10-15
        keys.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0)
    assert keys.count() == 13 and keys.exact
    far = DistinctKeys()  # timestamps too far apart to pack: the exact complex fallback
    far.add(np.array([1]), np.array([1_000_000_000_000_000]))
    far.add(np.array([1, 2]), np.array([1_000_000_000_000_000, 1_700_000_000_000_000]))
    assert far.count() == 2 and not far.packed
    monkeypatch.setattr(DistinctKeys, "EXACT_UP_TO", 6)
    ordered = DistinctKeys()  # chunks in time order: no key kept is needed, the count stays exact
    for start in (0, 10, 20):
        ordered.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0, overlaps=False)
    assert ordered.exact and ordered.count() == 15 and ordered.dropped
    bounded = DistinctKeys()
    for start in (0, 10, 0):
        bounded.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0)
    assert not bounded.exact and bounded.count() == 15  # the last chunk counted again, memory freed
    assert len(bounded.seen) == 0
