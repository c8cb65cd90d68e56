"""The HTTP API (storemon/api.py, docs/interfaces.md) with the Flask test client, on both databases:
triggering and fetching reports, uploads, as_of, the trigger limit, /health and read-only databases;
special hours uploaded, listed and removed."""

from __future__ import annotations

import io
import shutil
import threading
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import pytest
from helpers import EXPECTED, SPECIAL_HEADER, STATUS, add_report, as_of, postgres_database, special, wait_for

from storemon import create_app, jobs, storage
from storemon.api import TRIGGER_BURST, TRIGGER_WINDOW_S, TriggerLimiter
from storemon.extensions import db
from storemon.ingest import ingest_file
from storemon.models import Report


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
    ids=["json", "query", "form"],
)
def test_as_of_from_json_query_or_form(client, loaded, call):
    report_id = call(client).get_json()["report_id"]
    body = wait_for(client, report_id).get_data(as_text=True)
    assert body.splitlines()[1:] == ["007,60.00,2.00,3.00,0.00,0.00,0.00"]


@pytest.mark.parametrize(
    "url, code",
    [
        ("/get_report", 400),
        ("/get_report?report_id=", 400),
        ("/get_report?report_id=abc", 400),
        ("/get_report?report_id=../../etc/passwd", 400),
        ("/get_report/..%2F..%2Fetc%2Fpasswd", 404),  # never reaches the view: no such route
        ("/get_report/" + "A" * 32, 400),
        ("/get_report/" + "0" * 32, 404),
        ("/no/such/page", 404),
    ],
    ids=[
        "no id",
        "an empty id",
        "a short id",
        "a path as id",
        "an encoded path",
        "an upper-case id",
        "an unknown id",
        "no such page",
    ],
)
def test_bad_addresses_get_json_errors(client, loaded, url, code):
    response = client.get(url)
    assert response.status_code == code, url
    assert response.is_json and set(response.get_json()) == {"error", "message"}, url


def test_bad_trigger_requests_get_json_errors(client, loaded):
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
    return value.replace(tzinfo=UTC)


def test_running_reports_show_their_stage_progress_and_start(client, loaded, hold):
    before = datetime.now(UTC)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert hold.reached.wait(30), "the report never reached the interpolation stage"
    body = client.get(f"/get_report/{report_id}").get_json()
    assert body == {
        "status": "Running",
        "report_id": report_id,
        "state": "running",
        "stage": "interpolation",
        "progress": round(hold.fraction, 3),  # what the job reported at this stage
        "created_at": body["created_at"],
        "started_at": body["started_at"],
        "now": "2023-01-23T12:00:00Z",
    }
    assert 0.02 < body["progress"] < 0.95  # past reading the data, before formatting
    assert before <= parse_z(body["created_at"]) <= parse_z(body["started_at"]) <= datetime.now(UTC)
    hold.release()
    assert wait_for(client, report_id).get_data(as_text=True) == EXPECTED


def test_a_failed_report_says_why(client):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    body = wait_for(client, report_id).get_json()
    assert body["status"] == "Failed"
    assert "no polls in the database yet" in body["error"]


def test_a_complete_report_is_served_from_the_database_when_the_file_is_elsewhere(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for(client, report_id)
    jobs.report_path(app, report_id).unlink()  # as on a host that did not compute it
    response = client.get(f"/get_report/{report_id}", buffered=True)
    assert response.status_code == 200 and response.headers["X-Report-Status"] == "Complete"
    assert response.headers["Content-Disposition"] == f"attachment; filename=report_{report_id}.csv"
    assert response.get_data(as_text=True) == EXPECTED


# --- ingestion over HTTP --------------------------------------------------------------------------


def test_ingest_upload_multipart_and_text_csv(client, engine):
    response = client.post(
        "/ingest/status",
        data={"file": (io.BytesIO(STATUS.encode()), "store_status.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["rows_read"], body["rows_stored"], body["rows_changed"], body["file"]) == (3, 3, 3, "store_status.csv")
    response = client.post(
        "/ingest/timezones", data="store_id,timezone_str\n007,Nowhere/Land\n", content_type="text/csv"
    )
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


# --- special hours: uploaded, listed, removed -------------------------------------------------------

SPECIAL = SPECIAL_HEADER + (
    '007,2023-01-23,,\n007,2023-01-24,10:00,14:00\n007,2023-01-24,17:00,24:00:00\n"a ""quoted"", id",2023-01-23,,\n'
    "=cmd,2023-01-23,,\n"
)


def test_special_hours_are_uploaded_as_multipart_or_text_csv_like_every_feed(client, engine):
    response = client.post(
        "/ingest/special_hours",
        data={"file": (io.BytesIO(SPECIAL.encode()), "holidays.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["kind"], body["file"], body["rows_read"], body["rows_stored"], body["rows_changed"]) == (
        "special_hours",
        "holidays.csv",
        5,
        4,
        None,
    )
    assert (body["stores"], body["skipped"]) == (2, {"unsafe store_id": 1})
    assert [row[4] for row in special(engine)] == ["holidays.csv"] * 4
    later = client.post("/ingest/special_hours", data=SPECIAL_HEADER + "007,2023-01-24,,\n", content_type="text/csv")
    assert later.status_code == 200 and later.get_json()["rows_stored"] == 1
    assert [(r[0], r[1], r[2], r[4]) for r in special(engine)][:3] == [
        ("007", "2023-01-23", None, "holidays.csv"),
        ("007", "2023-01-24", None, "upload.csv"),  # the upload's date replaced, the other kept
        ('a "quoted", id', "2023-01-23", None, "holidays.csv"),
    ]
    strict = SPECIAL_HEADER + "x,2023-01-23,,\nx,2023-02-30,,\n"
    refused = client.post("/ingest/special_hours?strict=1", data=strict, content_type="text/csv")
    assert refused.status_code == 400 and "line 3: bad date" in refused.get_json()["message"]


def test_a_stores_special_dates_are_listed_by_date_with_hours_or_closed_and_their_file(client):
    client.post("/ingest/special_hours", data={"file": (io.BytesIO(SPECIAL.encode()), "holidays.csv")})
    answer = client.get("/special_hours", query_string={"store_id": "007"})
    assert answer.status_code == 200
    assert answer.get_json() == {
        "store_id": "007",
        "special_hours": [
            {
                "date": "2023-01-23",
                "closed": True,
                "start_time_local": None,
                "end_time_local": None,
                "source": "holidays.csv",
            },
            {
                "date": "2023-01-24",
                "closed": False,
                "start_time_local": "10:00:00",
                "end_time_local": "14:00:00",
                "source": "holidays.csv",
            },
            {
                "date": "2023-01-24",
                "closed": False,
                "start_time_local": "17:00:00",
                "end_time_local": "24:00:00",
                "source": "holidays.csv",
            },
        ],
    }
    quoted = client.get("/special_hours", query_string={"store_id": 'a "quoted", id'}).get_json()
    assert [row["date"] for row in quoted["special_hours"]] == ["2023-01-23"]
    for nobody in ("7", "=cmd", "a\x00b", " "):  # none stored, or none can be: an empty list
        answer = client.get("/special_hours", query_string={"store_id": nobody})
        assert answer.status_code == 200 and answer.get_json() == {"store_id": nobody, "special_hours": []}
    for missing in ("/special_hours", "/special_hours?store_id="):
        answer = client.get(missing)
        assert answer.status_code == 400 and answer.get_json()["message"] == "store_id is required (?store_id=...)"


def test_removing_a_special_date_answers_what_went_and_records_it_in_the_ledger(client, engine):
    client.post("/ingest/special_hours", data={"file": (io.BytesIO(SPECIAL.encode()), "holidays.csv")})
    answer = client.delete("/special_hours", query_string={"store_id": "007", "date": "2023-01-24"})
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["store_id"], body["date"], body["rows_removed"]) == ("007", "2023-01-24", 2)
    assert [(r["start_time_local"], r["end_time_local"]) for r in body["removed"]] == [
        ("10:00:00", "14:00:00"),
        ("17:00:00", "24:00:00"),
    ]
    ledger = client.get("/ingests?limit=1").get_json()["ingests"][0]
    assert (ledger["id"], ledger["kind"], ledger["file_name"], ledger["outcome"], ledger["rows_stored"]) == (
        body["ledger_id"],
        "special_hours",
        "remove 007 2023-01-24",
        "stored",
        2,
    )
    assert ledger["source"] == "http"
    quoted = client.delete("/special_hours", query_string={"store_id": 'a "quoted", id', "date": "2023-01-23"})
    assert quoted.status_code == 200 and quoted.get_json()["rows_removed"] == 1
    assert [(r[0], r[1]) for r in special(engine)] == [("007", "2023-01-23")]


@pytest.mark.parametrize(
    "query, code, message",
    [
        (
            {"store_id": "007", "date": "2023-01-25"},
            404,
            "store '007' has no special hours on 2023-01-25: nothing to remove",
        ),
        ({"store_id": "=cmd", "date": "2023-01-23"}, 404, "store '=cmd' has no special hours on 2023-01-23"),
        ({"store_id": "007", "date": "2023-02-30"}, 400, "date: '2023-02-30' is not a real calendar date"),
        ({"store_id": "007", "date": "1999-12-31"}, 400, "date: '1999-12-31' is outside the accepted range"),
        ({"store_id": "007", "date": "23-01-2023"}, 400, "date: cannot read '23-01-2023' as a date"),
        ({"store_id": "007"}, 400, "date is required"),
        ({"date": "2023-01-23"}, 400, "store_id is required"),
    ],
)
def test_removing_what_is_not_there_or_a_date_that_is_none_is_a_json_error_and_records_nothing(
    client, engine, query, code, message
):
    client.post("/ingest/special_hours", data=SPECIAL, content_type="text/csv")
    before = client.get("/ingests").get_json()["ingests"]
    answer = client.delete("/special_hours", query_string=query)
    assert answer.status_code == code
    assert answer.get_json()["message"].startswith(message)
    assert client.get("/ingests").get_json()["ingests"] == before
    assert len(special(engine)) == 4


# --- as_of: the accepted range, the `now` used, a warning when it is far after the data -----------


@pytest.mark.parametrize(
    "as_of", ["2030-01-01T00:00:00Z", "1999-12-31", "9999-12-31 23:59:59 UTC", "0001-01-01T00:00:00+05:00"]
)
def test_an_as_of_outside_the_accepted_range_says_so_with_the_range(client, loaded, as_of):
    response = client.post("/trigger_report", json={"as_of": as_of})
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "cannot read" not in message
    assert "outside the accepted range" in message
    assert "from 2000-01-01T00:00:00Z to one day after the current time" in message
    latest = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
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
    assert (running["status"], running["now"], running["warning"]) == (
        "Running",
        "2023-03-01T00:00:00Z",
        expected_warning,
    )
    hold.release()
    done = wait_for(client, report_id)
    assert done.headers["X-Report-Now"] == "2023-03-01T00:00:00Z"
    warning = done.headers["X-Report-Warning"]
    assert warning == expected_warning
    with app.app_context():
        report = db.session.get(Report, report_id)
        assert (report.now_us, report.latest_poll_us, report.warning) == (1677628800000000, 1674475200000000, warning)


def test_the_running_answer_shows_now_and_warning_once_known(app, client, loaded):
    report_id = add_report(
        app,
        progress=0.3,
        stage="interpolation",
        worker="other-host:1:abcd1234",
        now_us=1677628800000000,
        latest_poll_us=1674475200000000,
        warning="far",
    )
    body = client.get(f"/get_report/{report_id}").get_json()
    assert (body["status"], body["now"], body["warning"]) == ("Running", "2023-03-01T00:00:00Z", "far")


def test_json_timestamps_are_iso_8601_utc_with_z(client, loaded, hold):
    before = datetime.now(UTC)
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert hold.reached.wait(30), "the report never reached the interpolation stage"
    body = client.get(f"/get_report/{report_id}").get_json()
    assert body["status"] == "Running"
    assert parse_z(body["now"]) == datetime(2023, 1, 23, 12, tzinfo=UTC)
    # In UTC: the instants lie between the trigger and now.
    created, started = parse_z(body["created_at"]), parse_z(body["started_at"])
    assert before <= created <= started <= datetime.now(UTC)
    hold.release()
    wait_for(client, report_id)


# --- the trigger: a full queue, the per-client limit ----------------------------------------------


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


# --- /health, headers, read-only and unreachable databases ----------------------------------------


def test_head_does_not_create_a_report(app, client, loaded):
    assert client.head("/trigger_report").status_code == 200
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Report)).scalar_one() == 0


def test_no_answer_names_the_process_that_runs_a_report(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for(client, report_id)
    with app.app_context():
        worker = db.session.get(Report, report_id).worker  # host:pid:token
    host, pid, token = worker.split(":")
    for path in ("/health", f"/get_report/{report_id}", "/ingests", "/"):
        answer = client.get(path, buffered=True)
        text = " ".join(f"{k}: {v}" for k, v in answer.headers.items()) + answer.get_data(as_text=True)
        assert f"{pid}:{token}" not in text and f"{host}:{pid}" not in text, path


def test_read_only_database_is_degraded_and_writes_get_503(tmp_path):
    path = tmp_path / "storemon.db"
    settings = {
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "up"),
        "JOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
    }
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
    removal = client.delete("/special_hours?store_id=007&date=2023-01-23")
    assert removal.status_code == 503 and "read-only" in removal.get_json()["message"]
    result = app.test_cli_runner().invoke(args=["special-hours", "--remove", "007", "2023-01-23"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "read-only" in result.output


def ingest_text(engine, kind: str, text: str, folder):
    path = folder / f"{kind}.csv"
    path.write_text(text)
    return ingest_file(engine, kind, path)


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


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_health_answers_503_when_the_database_cannot_be_reached(tmp_path, kind, caplog):
    folder = tmp_path / "gone"
    folder.mkdir()
    with postgres_database() if kind == "postgresql" else nullcontext() as url:
        url = url or f"sqlite:///{folder / 'storemon.db'}"
        app = create_app(
            {
                "TESTING": True,
                "DATABASE_URL": url,
                "REPORTS_DIR": str(tmp_path / "reports"),
                "UPLOAD_DIR": str(tmp_path / "uploads"),
            }
        )
        client = app.test_client()
        try:
            assert client.get("/health").get_json()["status"] == "ok"
            if kind == "sqlite":
                shutil.rmtree(folder)  # the folder of the database (and of its jobs database) vanished
            else:
                _drop(url)  # the server no longer has the database
            with app.app_context():
                storage.dispose_all()  # no connection left open from before
            answer = client.get("/health")
            assert answer.status_code == 503
            body = answer.get_json()
            assert (body["status"], body["database"]) == ("error", "unreachable") and body["message"]
        finally:
            with app.app_context():
                db.session.remove()
                storage.dispose_all()


def _drop(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{target.database}" WITH (FORCE)')


# --- extra periods ------------------------------------------------------------------------------

# conftest's `loaded` with periods=2h,30d. 007: the 2h window [10:00, 12:00) holds 10:00-10:44:30
# up and 10:44:30-12:00 down; the 30d window adds four earlier Mondays 09:00-12:00 (Dec 26 .. Jan
# 16), all nearest the 10:14 poll: 12 h + 1.74 h up. The other store is open 24x7, polled once.
EXPECTED_PERIODS = (
    EXPECTED.splitlines()[0] + ",uptime_last_2h,downtime_last_2h,uptime_last_30d,downtime_last_30d\n"
    "007,0.00,1.74,1.74,60.00,1.26,1.26,0.74,1.26,13.74,1.26\n"
    "9204962793113048005,60.00,24.00,168.00,0.00,0.00,0.00,2.00,0.00,720.00,0.00\n"
)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.post("/trigger_report", json={"periods": "2h,30d"}),
        lambda c: c.get("/trigger_report?periods=2h,%2030d"),
        lambda c: c.post("/trigger_report", data={"periods": "002h,30D"}),
    ],
    ids=["json", "query", "form"],
)
def test_periods_add_two_columns_each_in_the_order_given(client, loaded, call):
    report_id = call(client).get_json()["report_id"]
    assert wait_for(client, report_id).get_data(as_text=True) == EXPECTED_PERIODS


def test_a_report_is_reused_only_for_the_same_periods(app, client, loaded):
    plain = client.post("/trigger_report").get_json()["report_id"]
    month = client.post("/trigger_report", json={"periods": "2h,30d"}).get_json()["report_id"]
    again = client.post("/trigger_report", json={"periods": "2h, 30d"}).get_json()["report_id"]
    other_order = client.post("/trigger_report", json={"periods": "30d,2h"}).get_json()["report_id"]
    assert wait_for(client, plain).get_data(as_text=True) == EXPECTED
    assert wait_for(client, again).get_data(as_text=True) == EXPECTED_PERIODS
    with app.app_context():
        rows = {r.id: r for r in db.session.scalars(db.select(Report))}
    assert rows[month].reuse_of is None and rows[other_order].reuse_of is None and rows[plain].reuse_of is None
    assert rows[again].reuse_of == month and rows[month].periods == "2h,30d"
    header = wait_for(client, other_order).get_data(as_text=True).splitlines()[0]
    assert header.endswith("uptime_last_30d,downtime_last_30d,uptime_last_2h,downtime_last_2h")


@pytest.mark.parametrize(
    "periods, message",
    [
        ("30", "cannot read '30'"),
        ("0d", "cannot read '0d'"),
        ("93d", "93d is longer than 92d"),
        ("2232h", "2232h is longer than 92d"),
        ("1h,2h,3h,4h,5h,6h,7h", "7 given, at most 6"),
        ("30d,30d", "30d is given twice"),
        ("1.5d", "cannot read '1.5d'"),
        ("1w", "cannot read '1w'"),
    ],
)
def test_unreadable_periods_are_refused_with_a_reason(client, loaded, periods, message):
    for answer in (
        client.post("/trigger_report", json={"periods": periods}),
        client.get("/trigger_report", query_string={"periods": periods}),
    ):
        assert answer.status_code == 400 and message in answer.get_json()["message"], answer.get_json()


def test_periods_that_are_not_text_are_refused(client, loaded):
    answer = client.post("/trigger_report", json={"periods": ["30d"]})
    assert answer.status_code == 400 and "periods must be a string" in answer.get_json()["message"]


def test_the_running_answer_names_its_periods(client, loaded, hold):
    report_id = client.post("/trigger_report", json={"periods": "30d"}).get_json()["report_id"]
    assert hold.reached.wait(30)
    answer = client.get(f"/get_report/{report_id}").get_json()
    hold.release()
    assert answer["status"] == "Running" and answer["periods"] == "30d"
