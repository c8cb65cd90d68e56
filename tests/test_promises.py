"""Promises of docs/ that hold through the real paths (HTTP, the command line, the database),
each by what it promises."""

from __future__ import annotations

import shutil
from contextlib import nullcontext

import pytest
from helpers import fetch_report, postgres_database, upload, write_csv

from storemon import create_app, storage
from storemon.extensions import db

HEADER = ("store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
          "downtime_last_hour,downtime_last_day,downtime_last_week")


# --- docs/report-rules.md: rounding ----------------------------------------------------------


def test_a_rounding_tie_goes_to_the_even_digit(client):
    """docs/report-rules.md: every figure is rounded to 2 decimals, numpy.round: a tie goes to
    the even digit. Open 24x7, now = 12:00:00 (the latest poll)."""
    upload(client, "status", """store_id,status,timestamp_utc
a,active,2023-01-23 11:59:50 UTC
a,inactive,2023-01-23 11:59:55 UTC
b,active,2023-01-23 11:59:00 UTC
b,inactive,2023-01-23 11:59:45 UTC
c,active,2023-01-23 11:45:00 UTC
c,inactive,2023-01-23 12:00:00 UTC
""")
    assert fetch_report(client).splitlines() == [
        HEADER,
        # Midpoint 11:59:52.5: down 7.5 s = 0.125 min -> 0.12 (not 0.13); up 59.875 min -> 59.88.
        "a,59.88,24.00,168.00,0.12,0.00,0.00",
        # Midpoint 11:59:22.5: down 37.5 s = 0.625 min -> 0.62 (not 0.63); up 59.375 min -> 59.38;
        # the day: 37.5 s = 0.0104 h -> 0.01, 86362.5 s = 23.9896 h -> 23.99 (167.99 the week).
        "b,59.38,23.99,167.99,0.62,0.01,0.01",
        # Midpoint 11:52:30: down 7.5 min = 0.125 h -> 0.12 in the day and the week; up
        # 23.875 h -> 23.88 and 167.875 h -> 167.88; the hour: 52.50 up, 7.50 down.
        "c,52.50,23.88,167.88,7.50,0.12,0.12",
    ]


# --- docs/data-formats.md: rows that cannot be read ------------------------------------------


def test_a_skipped_row_counts_once_under_the_first_reason_in_the_documented_order(client):
    # Each row below has the fault of its reason and every later one it can have.
    status = (
        b"store_id,status,timestamp_utc\n"
        b"=x\xff,weird,nope,extra\n"  # 2: too many fields (and not UTF-8, unsafe id, bad time, status)
        b",\xffweird,nope\n"  # 3: not UTF-8 (and empty store_id, bad timestamp, unknown status)
        b",,\n"  # 4: empty line (and empty store_id, bad timestamp, unknown status)
        b"  ,weird,nope\n"  # 5: empty store_id (and bad timestamp, unknown status)
        b"=" + b"a" * 300 + b",weird,nope\n"  # 6: store_id too long (and unsafe, bad timestamp, status)
        b"=1,weird,nope\n"  # 7: unsafe store_id (and bad timestamp, unknown status)
        b"1,weird,nope\n"  # 8: bad timestamp (and unknown status)
        b"1,weird,2023-01-23 10:00:00 UTC\n"  # 9: unknown status
        b"1,active,2023-01-23 10:00:00 UTC\n"  # 10: good
    )
    summary = upload(client, "status", status)
    reasons = ["too many fields", "not UTF-8", "empty line", "empty store_id", "store_id too long",
               "unsafe store_id", "bad timestamp", "unknown status"]
    assert summary["skipped"] == {reason: 1 for reason in reasons}
    assert (summary["rows_read"], summary["rows_skipped"], summary["rows_stored"]) == (9, 8, 1)
    assert [(e["line"], e["reason"]) for e in summary["examples"]] == list(zip(range(2, 7), reasons))

    hours = upload(client, "hours", """store_id,day,start_time_local,end_time_local
=1,7,25:00,xx
1,7,25:00,xx
1,3,25:00,xx
1,3,09:00,xx
1,3,09:00,17:00
""")
    assert hours["skipped"] == {"unsafe store_id": 1, "bad day": 1, "bad start time": 1, "bad end time": 1}
    assert [(e["line"], e["reason"]) for e in hours["examples"]] == [
        (2, "unsafe store_id"), (3, "bad day"), (4, "bad start time"), (5, "bad end time")]
    zones = upload(client, "timezones", "store_id,timezone_str\n@1,\n1,\n2,UTC\n")
    assert zones["skipped"] == {"unsafe store_id": 1, "empty timezone": 1}
    assert [(e["line"], e["reason"]) for e in zones["examples"]] == [(2, "unsafe store_id"), (3, "empty timezone")]


def test_a_line_with_no_value_at_all_is_an_empty_line(client):
    summary = upload(client, "status", "store_id,status,timestamp_utc\n1,active,2023-01-23 10:00:00 UTC\n,,\n\"\",,\"\"\n")
    assert (summary["skipped"], summary["rows_stored"]) == ({"empty line": 2}, 1)
    assert [(e["line"], e["reason"], e["text"]) for e in summary["examples"]] == [
        (3, "empty line", ",,"), (4, "empty line", ",,")]


def test_the_summary_quotes_at_most_five_skipped_rows(client, runner, tmp_path):
    bad = [f"{i},active,never" for i in range(7)]  # lines 2-8: seven bad timestamps
    text = "store_id,status,timestamp_utc\n" + "\n".join(bad) + "\n9,active,2023-01-23 10:00:00 UTC\n"
    summary = upload(client, "status", text)
    assert summary["skipped"] == {"bad timestamp": 7}
    assert [(e["line"], e["text"]) for e in summary["examples"]] == [(i + 2, bad[i]) for i in range(5)]
    # The command line prints the same five, and says there are more.
    path = write_csv(tmp_path / "store_status.csv", text.replace("never", "someday"))
    result = runner.invoke(args=["ingest", "--status", str(path)])
    assert result.exit_code == 0, result.output
    assert "  skipped 7 x bad timestamp (lines 2, 3, 4, 5, 6, ...)" in result.output.splitlines()


# --- docs/data-formats.md: what ingesting changes --------------------------------------------


def test_within_one_time_zone_file_the_later_row_for_a_store_wins(client):
    upload(client, "timezones", "store_id,timezone_str\ns,America/New_York\ns,Asia/Kolkata\n")
    upload(client, "hours", "store_id,day,start_time_local,end_time_local\ns,0,09:00,10:00\n")
    upload(client, "status", "store_id,status,timestamp_utc\ns,active,2023-01-23 04:00:00 UTC\n"
                             "clock,active,2023-01-23 12:00:00 UTC\n")
    # Monday 09:00-10:00 in Kolkata (UTC+5:30) is 03:30-04:30 UTC: the poll at 04:00 counts, and
    # the store is up that hour, inside the day and week before now (Monday 12:00 UTC). In New
    # York it would be 14:00-15:00 UTC, and the poll (Sunday 23:00 there) would not count: zeros.
    assert fetch_report(client).splitlines()[1:] == [
        "clock,60.00,24.00,168.00,0.00,0.00,0.00",
        "s,0.00,1.00,1.00,0.00,0.00,0.00",
    ]
    assert client.get("/stores/s/timeline").get_json()["timezone"] == "Asia/Kolkata"


# --- docs/interfaces.md: /health ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_health_answers_503_when_the_database_cannot_be_reached(tmp_path, kind, caplog):
    folder = tmp_path / "gone"
    folder.mkdir()
    with postgres_database() if kind == "postgresql" else nullcontext() as url:
        url = url or f"sqlite:///{folder / 'storemon.db'}"
        app = create_app({"TESTING": True, "DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "reports"),
                          "UPLOAD_DIR": str(tmp_path / "uploads")})
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


# --- docs/interfaces.md: flask ingest --------------------------------------------------------


def polls_stored(app) -> int:
    with app.test_client() as client:
        return client.get("/health").get_json()["polls"]


def test_the_command_line_stops_at_a_refused_file_and_keeps_the_files_before_it(app, runner, tmp_path):
    first = write_csv(tmp_path / "a.csv", "store_id,status,timestamp_utc\n1,active,2023-01-23 10:00:00 UTC\n")
    refused = write_csv(tmp_path / "b.csv", "store_id,timestamp_utc\n2,2023-01-23 10:00:00 UTC\n")  # no status
    after = write_csv(tmp_path / "c.csv", "store_id,status,timestamp_utc\n3,active,2023-01-23 11:00:00 UTC\n")
    result = runner.invoke(args=["ingest", "--status", str(first), "--status", str(refused), "--status", str(after)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("status    a.csv: 1 rows read, 1 stored")
    assert lines[1].startswith("Error: ") and "b.csv" in lines[1] and "status" in lines[1]
    assert "c.csv" not in result.output
    assert polls_stored(app) == 1  # a.csv's poll; b.csv stored nothing, c.csv was not read
    ledger = app.test_client().get("/ingests").get_json()["ingests"]
    assert [(row["file_name"], row["outcome"]) for row in ledger] == [("b.csv", "refused"), ("a.csv", "stored")]


def test_the_command_line_stops_at_a_refused_file_of_a_folder(app, runner, tmp_path):
    # A folder is loaded time zones first, then business hours, then polls.
    write_csv(tmp_path / "timezones.csv", "store_id,timezone_str\n1,UTC\n")
    write_csv(tmp_path / "menu_hours.csv", "store_id,day,start_time_local\n1,0,09:00\n")  # no end_time_local
    write_csv(tmp_path / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-23 10:00:00 UTC\n")
    result = runner.invoke(args=["ingest", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("timezones timezones.csv: 1 rows read, 1 stored")
    assert "Error: " in result.output and "end_time_local" in result.output
    assert "store_status.csv" not in result.output
    health = app.test_client().get("/health").get_json()
    assert (health["stores_with_timezone"], health["stores_with_hours"], health["polls"]) == (1, 0, 0)
