"""Ingestion of the four feeds (storemon/ingest.py, docs/data-formats.md) into SQLite and
PostgreSQL: what is stored and what is skipped (with its line), store ids, chunks; the limits (files
too wide, rows too long -- a row is a CSV record, the line breaks of its quoted fields included --,
fields too big for Python's csv module, too many hours rows for one store, zone names that are no
names, how much of a value a summary or an error quotes; the memory an ingest takes, measured in a
subprocess); the ledger of ingests, a long ingest holding the database, and `flask ingest`;
special hours -- a date named twice, 50 rows per store and date, their file names -- and the
removal of a special date, recorded in the ledger."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import (
    REAL_SAMPLE,
    SPECIAL_HEADER,
    STATUS,
    STATUS_HEADER,
    fetch_report,
    hours,
    polls,
    snapshot,
    special,
    table,
    upload,
    wait_for,
    write_csv,
)

from storemon import ingest, parse, storage
from storemon import scan as scan_module
from storemon.ingest import IngestBusy, NoSpecialDate, find_files, ingest_file, ingest_files, remove_special_date
from storemon.parse import IngestError
from storemon.times import to_us

TS = "2023-01-25 12:00:00 UTC"
ZONES = "store_id,timezone_str\n"
MAX_COLUMNS = 64  # of a header or a row (docs/data-formats.md)
HOURS = "store_id,day,start_time_local,end_time_local\n"


def post(client, kind, text, name=None):
    data = text.encode() if isinstance(text, str) else text
    if name is None:
        return client.post(f"/ingest/{kind}", data=data, content_type="text/csv")
    return client.post(f"/ingest/{kind}", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def ledger_outcomes(engine):
    return table(engine, "SELECT outcome, message FROM ingests ORDER BY id")


# --- what is stored, what a later file replaces ---------------------------------------------------


def test_real_sample_ingests_with_the_right_counts(engine):
    summary = ingest_files(engine, REAL_SAMPLE)
    by_kind = {f.kind: f for f in summary.files}
    assert by_kind["timezones"].rows_read == by_kind["timezones"].rows_stored == 13_559
    assert by_kind["hours"].rows_read == by_kind["hours"].rows_stored == 86_198
    assert by_kind["status"].rows_read == by_kind["status"].rows_stored == 5_032
    assert all(f.rows_skipped == 0 for f in summary.files)
    assert table(engine, f"SELECT count(*) FROM {storage.ALL_POLLS} p") == [(5_032,)]
    assert table(engine, "SELECT count(*) FROM stores") == [(by_kind["status"].stores,)]
    assert table(engine, "SELECT count(*) FROM business_hours") == [(86_198,)]
    assert table(engine, "SELECT count(*) FROM store_timezones") == [(13_559,)]
    # The real hours file names its day column `day`; every value landed in 0..6.
    assert table(engine, "SELECT min(day), max(day) FROM business_hours") == [(0, 6)]


def test_every_bad_row_kind_is_skipped_counted_and_located(engine, tmp_path):
    status = write_csv(
        tmp_path / "store_status.csv",
        """
store_id,status,timestamp_utc
1,active,2023-01-25 12:09:39.388884 UTC
2,active,yesterday
3,sleeping,2023-01-25 12:00:00 UTC
,active,2023-01-25 12:00:00 UTC
4, Inactive ,2023-01-25 13:00:00 UTC
5,active,2023-02-30 10:00:00 UTC
""",
    )
    s = ingest_file(engine, "status", status)
    assert (s.rows_read, s.rows_stored) == (6, 2)
    assert s.skipped == {"bad timestamp": 2, "unknown status": 1, "empty store_id": 1}
    assert [(b.line, b.reason) for b in s.examples] == [
        (3, "bad timestamp"),
        (4, "unknown status"),
        (5, "empty store_id"),
        (7, "bad timestamp"),
    ]
    assert s.examples[0].text == "2,active,yesterday"
    assert "lines 3, 7" in s.describe()

    hours = write_csv(
        tmp_path / "menu_hours.csv",
        """
store_id,dayOfWeek,start_time_local,end_time_local
1,0,09:00:00,17:00:00
1,7,09:00:00,17:00:00
1,x,09:00:00,17:00:00
1,1,25:00:00,17:00:00
1,1,09:00,9pm
1,2,24:00:00,10:00
1,3,09:00,24:00:00
1,4,09:61,12:00
""",
    )
    h = ingest_file(engine, "hours", hours)
    assert h.rows_stored == 2
    assert h.skipped == {"bad day": 2, "bad start time": 3, "bad end time": 1}
    assert table(engine, "SELECT day, start_s, end_s FROM business_hours ORDER BY day") == [
        (0, 9 * 3600, 17 * 3600),
        (3, 9 * 3600, 86_400),
    ]

    zones = write_csv(tmp_path / "timezones.csv", "store_id,timezone_str\n1,\n2,America/Denver\n")
    z = ingest_file(engine, "timezones", zones)
    assert (z.rows_stored, z.skipped) == (1, {"empty timezone": 1})


def test_strict_refuses_the_whole_file(engine, tmp_path):
    path = write_csv(
        tmp_path / "s.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n2,active,bad\n"
    )
    with pytest.raises(IngestError, match="line 3: bad timestamp"):
        ingest_file(engine, "status", path, strict=True)
    assert polls(engine) == []
    assert table(engine, "SELECT count(*) FROM stores") == [(0,)]


def test_a_file_missing_a_required_column_is_refused_and_changes_nothing(engine, runner, tmp_path):
    good = write_csv(tmp_path / "good.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n")
    ingest_file(engine, "status", good)
    before = snapshot(engine)
    bad = write_csv(tmp_path / "bad.csv", "store_id,timestamp_utc\n1,2023-01-26 12:00:00 UTC\n")
    with pytest.raises(IngestError, match="missing required column.*status"):
        ingest_file(engine, "status", bad)
    result = runner.invoke(args=["ingest", "--status", str(bad)])
    assert result.exit_code != 0
    assert "missing required column(s) status" in result.output
    hours = write_csv(tmp_path / "h.csv", "store_id,weekday,start_time_local,end_time_local\n1,0,09:00,10:00\n")
    result = runner.invoke(args=["ingest", "--hours", str(hours)])
    assert result.exit_code != 0 and "day (or dayofweek/day/day_of_week)" in result.output
    assert snapshot(engine) == before


def test_reingesting_changes_nothing(engine, tmp_path):
    first = ingest_files(engine, REAL_SAMPLE)
    before = snapshot(engine)
    again = ingest_files(engine, REAL_SAMPLE)
    assert snapshot(engine) == before
    changed = {f.kind: f.rows_changed for f in again.files}
    assert changed == {"timezones": 0, "hours": None, "status": 0}
    assert {f.kind: f.rows_changed for f in first.files}["status"] == 5_032


def test_a_later_poll_for_the_same_key_replaces_the_earlier(engine, tmp_path):
    one = write_csv(
        tmp_path / "a.csv",
        """
store_id,status,timestamp_utc
1,active,2023-01-25 12:00:00 UTC
1,inactive,2023-01-25T12:00:00Z
2,active,2023-01-25 12:00:00
""",
    )
    s = ingest_file(engine, "status", one)
    assert polls(engine) == [("1", 1674648000000000, False), ("2", 1674648000000000, True)]
    assert s.rows_changed == 2  # two keys, both new (the file holds two rows for the first)
    two = write_csv(tmp_path / "b.csv", "store_id,status,timestamp_utc\n2,inactive,2023-01-25 12:00:00+00:00\n")
    assert ingest_file(engine, "status", two).rows_changed == 1
    assert polls(engine)[1] == ("2", 1674648000000000, False)


def test_hours_and_zones_given_for_a_store_replace_its_old_ones(engine, tmp_path):
    ingest_file(
        engine,
        "hours",
        write_csv(
            tmp_path / "h1.csv",
            "store_id,day,start_time_local,end_time_local\nA,0,09:00,17:00\nA,1,09:00,17:00\nB,0,10:00,11:00\n",
        ),
    )
    ingest_file(
        engine,
        "hours",
        write_csv(
            tmp_path / "h2.csv",
            "store_id,day_of_week,start_time_local,end_time_local\nA,5,08:00,12:00\nA,5,08:00,12:00\n",
        ),
    )
    assert table(engine, "SELECT store_id, day, start_s, end_s FROM business_hours ORDER BY 1, 2") == [
        ("A", 5, 8 * 3600, 12 * 3600),
        ("B", 0, 10 * 3600, 11 * 3600),
    ]
    ingest_file(
        engine, "timezones", write_csv(tmp_path / "z1.csv", "store_id,timezone_str\nA,America/Denver\nB,Asia/Kolkata\n")
    )
    z = ingest_file(engine, "timezones", write_csv(tmp_path / "z2.csv", "timezone_str,store_id\nAmerica/New_York,A\n"))
    assert z.rows_changed == 1
    assert table(engine, "SELECT * FROM store_timezones ORDER BY 1") == [
        ("A", "America/New_York"),
        ("B", "Asia/Kolkata"),
    ]


def test_a_failure_in_the_middle_of_a_file_leaves_nothing_of_it(engine, tmp_path, monkeypatch):
    rows = "".join(f"{i},active,2023-01-25 1{i}:00:00 UTC\n" for i in range(6))
    path = write_csv(tmp_path / "s.csv", "store_id,status,timestamp_utc\n" + rows)
    real_write = storage.PollWriter.write
    calls = []

    def failing_write(self, conn, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise RuntimeError("disk fell off")
        return real_write(self, conn, chunk)

    monkeypatch.setattr(storage.PollWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk fell off"):
        ingest_file(engine, "status", path, chunk_rows=2)
    assert calls == [2, 2]  # the first chunk was written before the failure ...
    assert polls(engine) == []  # ... and rolled back with the rest
    assert table(engine, "SELECT count(*) FROM stores") == [(0,)]


def test_store_ids_come_back_byte_for_byte(engine, tmp_path):
    ids = ["007", "9204962793113048005", "0", "8d3a2f1e-6c1b-4b7e-9a1d-3f5c2e7b9a10"]
    body = "".join(f"{s},active,2023-01-25 12:00:00 UTC\n" for s in ids)
    ingest_file(engine, "status", write_csv(tmp_path / "s.csv", "store_id,status,timestamp_utc\n" + body))
    ingest_file(engine, "timezones", write_csv(tmp_path / "z.csv", "store_id,timezone_str\n007,America/Denver\n"))
    ingest_file(
        engine,
        "hours",
        write_csv(tmp_path / "h.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,10:00\n"),
    )
    assert sorted(r[0] for r in polls(engine)) == sorted(ids)
    assert table(engine, "SELECT store_id FROM store_timezones") == [("007",)]
    assert table(engine, "SELECT store_id FROM business_hours") == [("007",)]


def test_header_and_timestamp_variants(engine, tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(
        "\ufeffTimestamp_UTC, Status ,extra,STORE_ID\n".encode() + b"2023-01-25 12:09:39.388884 UTC,active,x,1\n"
        b"2023-01-25 12:09:39 UTC,active,x,2\n"
        b"2023-01-25 12:09:39.5 UTC,active,x,3\n"
        b"2023-01-25T12:09:39Z,ACTIVE,x,4\n"
        b"2023-01-25T12:09:39+00:00,active,x,5\n"
        b"2023-01-25 12:09:39,active,x,6\n"
        b"2023-01-25 14:09:39+02:00,active,x,7\n"
    )
    s = ingest_file(engine, "status", path)
    assert s.rows_skipped == 0
    got = {sid: ts for sid, ts, _ in polls(engine)}
    base = 1674648579000000
    assert got == {"1": base + 388884, "2": base, "3": base + 500000, "4": base, "5": base, "6": base, "7": base}


def test_unknown_time_zones_are_warned_about(engine, tmp_path):
    z = ingest_file(
        engine,
        "timezones",
        write_csv(tmp_path / "z.csv", "store_id,timezone_str\n1,Venus/Maxwell_Montes\n2,America/Chicago\n"),
    )
    assert z.rows_stored == 2
    assert z.warnings == ["1 unknown time zone name(s), reported as America/Chicago: Venus/Maxwell_Montes"]


def test_folder_file_names_are_recognised(tmp_path):
    for name in ["store status.csv", "Menu hours.csv", "bq-results-20230125-123456.csv", "notes.csv"]:
        (tmp_path / name).write_text("x\n")
    found = find_files(tmp_path)
    assert [p.name for p in found["status"]] == ["store status.csv"]
    assert [p.name for p in found["hours"]] == ["Menu hours.csv"]
    assert [p.name for p in found["timezones"]] == ["bq-results-20230125-123456.csv"]


def test_cli_ingests_a_folder_and_prints_rates(runner, engine, tmp_path):
    write_csv(tmp_path / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n")
    write_csv(tmp_path / "business_hours.csv", "store_id,day,start_time_local,end_time_local\n1,0,09:00,17:00\n")
    write_csv(tmp_path / "store_timezone.csv", "store_id,timezone_str\n1,America/Denver\n")
    result = runner.invoke(args=["ingest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "status    store_status.csv: 1 rows read, 1 stored (1 new or changed)" in result.output
    assert "rows/s" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(args=["ingest", str(empty)])
    assert result.exit_code != 0 and "no recognised CSV files" in result.output


def test_health_counts(client, engine, tmp_path):
    write_csv(
        tmp_path / "store_status.csv",
        "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n1,active,2023-01-25 13:00:00 UTC\n",
    )
    write_csv(
        tmp_path / "menu_hours.csv",
        "store_id,day,start_time_local,end_time_local\n1,0,09:00,12:00\n2,1,09:00,12:00\n2,2,09:00,12:00\n",
    )
    write_csv(tmp_path / "timezones.csv", "store_id,timezone_str\n2,UTC\n3,UTC\n4,Asia/Tokyo\n")
    ingest_files(engine, tmp_path)
    body = client.get("/health").get_json()
    assert body == {
        "status": "ok",
        "database": "reachable",
        "stores_with_polls": 1,
        "stores_with_hours": 2,
        "stores_with_timezone": 3,
        "polls": 2,
        "reports": 0,
    }


def test_health_counts_of_the_real_sample(client, engine):
    ingest_files(engine, REAL_SAMPLE)
    body = client.get("/health").get_json()
    assert (body["stores_with_polls"], body["stores_with_timezone"], body["polls"]) == (3_966, 13_559, 5_032)
    assert body["stores_with_hours"] == table(engine, "SELECT count(DISTINCT store_id) FROM business_hours")[0][0]


@pytest.mark.parametrize("day", ["03", " 3 ", "003", "3"])
def test_a_zero_padded_or_spaced_day_is_that_day(engine, tmp_path, day):
    path = write_csv(tmp_path / "h.csv", f"store_id,day,start_time_local,end_time_local\n1,{day},09:00,17:00\n")
    summary = ingest_file(engine, "hours", path)
    assert (summary.rows_stored, summary.skipped) == (1, {})
    assert table(engine, "SELECT day, start_s, end_s FROM business_hours") == [(3, 9 * 3600, 17 * 3600)]


@pytest.mark.parametrize("day", ["7", "07", "-1", "3.0", "3a", "", "0x3"])
def test_other_days_are_still_bad_days(engine, tmp_path, day):
    path = write_csv(tmp_path / "h.csv", f"store_id,day,start_time_local,end_time_local\n1,{day},09:00,17:00\n")
    assert ingest_file(engine, "hours", path).skipped == {"bad day": 1}


def test_unknown_zone_names_are_listed_with_the_default_they_get(engine, tmp_path):
    from storemon.demo import UNKNOWN_ZONE

    path = write_csv(tmp_path / "tz.csv", f"store_id,timezone_str\n1,{UNKNOWN_ZONE}\n2,Nowhere/Land\n")
    warnings = ingest_file(engine, "timezones", path).warnings
    assert warnings == ["2 unknown time zone name(s), reported as America/Chicago: Mars/Olympus_Mons, Nowhere/Land"]


def test_sentinel_and_out_of_range_timestamps_are_bad_rows(engine, tmp_path):
    path = write_csv(
        tmp_path / "s.csv",
        "store_id,status,timestamp_utc\n"
        "1,active,0001-01-01 00:00:00 UTC\n"
        "2,active,9999-12-31 23:59:59 UTC\n"
        "3,active,1970-01-01 00:00:00 UTC\n"
        "4,active,2023-01-01 00:00:00.123456789 UTC\n"
        "5,active,2023-01-01 00:00:00 utc\n",
    )
    s = ingest_file(engine, "status", path)
    assert s.skipped == {"bad timestamp": 3}
    assert [r[:2] for r in polls(engine)] == [("4", 1672531200123456), ("5", 1672531200000000)]


# --- rows that are skipped, with their lines ------------------------------------------------------


def test_now_and_today_are_bad_timestamps_not_the_wall_clock(engine, tmp_path):
    path = write_csv(
        tmp_path / "s.csv",
        STATUS_HEADER + "a,active,now\nb,active,today\nc,active, NOW \nd,active,2023-01-25 12:00:00 UTC\n",
    )
    summary = ingest_file(engine, "status", path)
    assert summary.skipped == {"bad timestamp": 3}
    assert [r.store_id for r in polls(engine)] == ["d"]
    again = ingest_file(engine, "status", path, force=True)  # no new poll on a second pass
    assert again.rows_changed == 0 and len(polls(engine)) == 1


def test_rows_with_too_many_fields_are_counted_with_their_lines(engine, tmp_path, client):
    text = (
        STATUS_HEADER
        + "a,active,2023-01-25 12:00:00 UTC\nb,active,2023-01-25 12:00:00 UTC,extra\nc,bogus,2023-01-25 12:00:00 UTC\nd,active,2023-01-25 13:00:00 UTC,x,y\n"
    )
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text))
    assert summary.skipped == {"too many fields": 2, "unknown status": 1}
    assert summary.rows_read == 4 and summary.rows_stored == 1
    lines = sorted((b.line, b.reason) for b in summary.examples)
    assert lines == [(3, "too many fields"), (4, "unknown status"), (5, "too many fields")]
    # The first data row too, and over HTTP: a summary, never a 500.
    response = client.post(
        "/ingest/status", data=STATUS_HEADER + "x,active,2023-01-25 12:00:00 UTC,1\n", content_type="text/csv"
    )
    assert response.status_code == 200 and response.get_json()["skipped"] == {"too many fields": 1}


def test_a_row_that_is_not_utf8_is_skipped_with_its_line(engine, tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(
        STATUS_HEADER.encode() + b"a,active,2023-01-25 12:00:00 UTC\nb\xff\xfe,active,2023-01-25 12:00:00 UTC\n"
        b"c,active,2023-01-25 12:00:00 UTC\n"
    )
    summary = ingest_file(engine, "status", path)
    assert summary.skipped == {"not UTF-8": 1}
    assert [(b.line, b.reason) for b in summary.examples] == [(3, "not UTF-8")]
    assert "\\xff" in summary.examples[0].text  # shown, not crashing the JSON or the terminal
    assert [r.store_id for r in polls(engine)] == ["a", "c"]


def test_wide_rows_at_the_start_and_later_keep_true_line_numbers(engine, tmp_path):
    text = (
        STATUS_HEADER + "w1,active,2023-01-25 12:00:00 UTC,x\nw2,active,2023-01-25 12:00:00 UTC,x,y\n"
        "a,active,2023-01-25 12:00:00 UTC\nw3,active,2023-01-25 12:00:00 UTC,x\nb,bogus,2023-01-25 12:00:00 UTC\n"
    )
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text), chunk_rows=2)
    assert summary.skipped == {"too many fields": 3, "unknown status": 1}
    assert sorted((b.line, b.reason) for b in summary.examples) == [
        (2, "too many fields"),
        (3, "too many fields"),
        (5, "too many fields"),
        (6, "unknown status"),
    ]
    assert [r.store_id for r in polls(engine)] == ["a"]


def test_long_store_ids_and_long_lines(app, engine, tmp_path, client):
    long_id = "x" * 256
    text = STATUS_HEADER + f"{long_id},active,2023-01-23 12:00:00 UTC\n{'y' * 255},active,2023-01-23 12:00:00 UTC\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text))
    assert summary.skipped == {"store_id too long": 1} and summary.rows_stored == 1
    assert len(summary.examples[0].text) < 260  # quoted, cut: at most ~200 characters of a row
    app.config["MAX_LINE_BYTES"] = 2048
    huge = STATUS_HEADER + "a," + "z" * 5000 + ",2023-01-23 12:00:00 UTC\n"
    response = client.post("/ingest/status", data=huge, content_type="text/csv")
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "line 2 is longer than 2,048 bytes" in message and len(message) < 400


def test_a_refused_header_is_quoted_short(client):
    response = client.post("/ingest/status", data="h" * 100_000 + "\n1\n", content_type="text/csv")
    assert response.status_code == 400 and len(response.get_json()["message"]) < 600


def test_unsafe_store_ids_are_refused_at_ingest(engine, tmp_path):
    bad = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "tab\tin", "nul\x00", "bell\x07"]
    rows = "".join(f'"{b.replace(chr(34), chr(34) * 2)}",active,2023-01-23 12:00:00 UTC\n' for b in bad)
    summary = ingest_file(
        engine, "status", write_csv(tmp_path / "s.csv", STATUS_HEADER + rows + "ok=1,active,2023-01-23 12:00:00 UTC\n")
    )
    assert summary.skipped == {"unsafe store_id": len(bad)}
    assert [r.store_id for r in polls(engine)] == ["ok=1"]  # '=' inside an id is fine
    hours_file = write_csv(tmp_path / "h.csv", "store_id,day,start_time_local,end_time_local\n=cmd,0,09:00,10:00\n")
    assert ingest_file(engine, "hours", hours_file).skipped == {"unsafe store_id": 1}


def test_rows_stored_counts_distinct_keys(app, engine, tmp_path):
    text = (
        STATUS_HEADER
        + "a,active,2023-01-23 12:00:00 UTC\n" * 7
        + "a,inactive,2023-01-23 12:00:00 UTC\nb,active,2023-01-23 12:00:00 UTC\n"
    )
    summary = ingest_file(engine, "status", write_csv(tmp_path / "s.csv", text), chunk_rows=3)
    assert (summary.rows_read, summary.rows_stored) == (9, 2)
    assert polls(engine)[0][2] in (False, 0)  # the later row for the key won


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
    reasons = [
        "too many fields",
        "not UTF-8",
        "empty line",
        "empty store_id",
        "store_id too long",
        "unsafe store_id",
        "bad timestamp",
        "unknown status",
    ]
    assert summary["skipped"] == {reason: 1 for reason in reasons}
    assert (summary["rows_read"], summary["rows_skipped"], summary["rows_stored"]) == (9, 8, 1)
    assert [(e["line"], e["reason"]) for e in summary["examples"]] == list(zip(range(2, 7), reasons))

    hours = upload(
        client,
        "hours",
        """store_id,day,start_time_local,end_time_local
=1,7,25:00,xx
1,7,25:00,xx
1,3,25:00,xx
1,3,09:00,xx
1,3,09:00,17:00
""",
    )
    assert hours["skipped"] == {"unsafe store_id": 1, "bad day": 1, "bad start time": 1, "bad end time": 1}
    assert [(e["line"], e["reason"]) for e in hours["examples"]] == [
        (2, "unsafe store_id"),
        (3, "bad day"),
        (4, "bad start time"),
        (5, "bad end time"),
    ]
    zones = upload(client, "timezones", "store_id,timezone_str\n@1,\n1,\n2,UTC\n")
    assert zones["skipped"] == {"unsafe store_id": 1, "empty timezone": 1}
    assert [(e["line"], e["reason"]) for e in zones["examples"]] == [(2, "unsafe store_id"), (3, "empty timezone")]


def test_a_line_with_no_value_at_all_is_an_empty_line(client):
    summary = upload(client, "status", 'store_id,status,timestamp_utc\n1,active,2023-01-23 10:00:00 UTC\n,,\n"",,""\n')
    assert (summary["skipped"], summary["rows_stored"]) == ({"empty line": 2}, 1)
    assert [(e["line"], e["reason"], e["text"]) for e in summary["examples"]] == [
        (3, "empty line", ",,"),
        (4, "empty line", ",,"),
    ]


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


def test_within_one_time_zone_file_the_later_row_for_a_store_wins(client):
    upload(client, "timezones", "store_id,timezone_str\ns,America/New_York\ns,Asia/Kolkata\n")
    upload(client, "hours", "store_id,day,start_time_local,end_time_local\ns,0,09:00,10:00\n")
    upload(
        client,
        "status",
        "store_id,status,timestamp_utc\ns,active,2023-01-23 04:00:00 UTC\nclock,active,2023-01-23 12:00:00 UTC\n",
    )
    # Monday 09:00-10:00 in Kolkata (UTC+5:30) is 03:30-04:30 UTC: the poll at 04:00 counts, and
    # the store is up that hour, inside the day and week before now (Monday 12:00 UTC). In New
    # York it would be 14:00-15:00 UTC, and the poll (Sunday 23:00 there) would not count: zeros.
    assert fetch_report(client).splitlines()[1:] == [
        "clock,60.00,24.00,168.00,0.00,0.00,0.00",
        "s,0.00,1.00,1.00,0.00,0.00,0.00",
    ]
    assert client.get("/stores/s/timeline").get_json()["timezone"] == "Asia/Kolkata"


# --- chunks ---------------------------------------------------------------------------------------


# Store 1's key comes again, with another status, in the second chunk of two rows.
KEY_REPEATED_IN_A_LATER_CHUNK = (
    "store_id,status,timestamp_utc\n"
    "1,active,2023-01-25 12:00:00 UTC\n"
    "2,active,2023-01-25 12:00:00 UTC\n"
    "3,active,2023-01-25 12:00:00 UTC\n"
    "1,inactive,2023-01-25 12:00:00 UTC\n"
    "4,active,2023-01-25 12:00:00 UTC\n"
)


def test_a_key_repeated_across_chunks_of_a_first_load(engine, tmp_path, monkeypatch):
    """On PostgreSQL a first load COPYs straight into the empty table; a key that comes back in a
    later write must still end with the later row (the fallback to the upsert path). Each chunk
    is written on its own here (storage.writers.FLUSH_ROWS), as a file of millions of rows would be."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 2)
    path = write_csv(tmp_path / "s.csv", KEY_REPEATED_IN_A_LATER_CHUNK)
    s = ingest_file(engine, "status", path, chunk_rows=2)
    assert [(sid, active) for sid, _, active in polls(engine)] == [("1", False), ("2", True), ("3", True), ("4", True)]
    assert s.rows_changed == 5  # 1, 2 | 3, then 1 changed | 4


def test_chunks_are_written_together_in_key_order(engine, tmp_path):
    """Chunks are held and written at once (up to storage.writers.FLUSH_ROWS rows): a key repeated in a
    later chunk is written once, with its later row, and counted once."""
    path = write_csv(
        tmp_path / "s.csv", KEY_REPEATED_IN_A_LATER_CHUNK.replace("4,active,2023-01-25 12", "4,active,2023-01-25 11")
    )
    s = ingest_file(engine, "status", path, chunk_rows=2)
    assert [(sid, active) for sid, _, active in polls(engine)] == [("1", False), ("2", True), ("3", True), ("4", True)]
    assert (s.rows_read, s.rows_stored, s.rows_changed, s.stores) == (5, 4, 4, 4)


def test_postgresql_copies_a_first_load_beside_polls_and_upserts_later_files(engine, tmp_path, monkeypatch):
    """The fast path is taken when it may be: a first load is copied into a table built beside the
    empty `polls`, keyed before a write that may repeat a key, and takes the place of `polls`
    with its primary key and time index; once `polls` holds rows, writes are upserts. SQLite
    never uses COPY."""
    paths_taken = []
    for name in ("copy_first_load", "key_first_load", "end_first_load", "copy_upsert_polls"):
        real = getattr(storage.writers, name)

        def spy(*args, real=real, name=name):
            paths_taken.append(name)
            return real(*args)

        monkeypatch.setattr(storage.writers, name, spy)
    header = "store_id,status,timestamp_utc\n"
    first = write_csv(
        tmp_path / "a.csv",
        header
        + "".join(f"{i},active,2023-01-25 12:00:0{i} UTC\n" for i in range(6))
        + "0,inactive,2023-01-25 12:00:00 UTC\n",  # the first row's key again, in the last write
    )
    later = write_csv(tmp_path / "b.csv", header + "".join(f"{i},inactive,2023-01-25 13:00:00 UTC\n" for i in range(4)))
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 2)  # each chunk written on its own
    summary = ingest_file(engine, "status", first, chunk_rows=2)
    assert summary.rows_stored == 6
    if engine.dialect.name == "postgresql":
        copies = ["copy_first_load"] * 3
        assert paths_taken == [*copies, "key_first_load", "copy_upsert_polls", "end_first_load"]
        with engine.connect() as conn:
            indexes = conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'polls'").scalars().all()
            assert sorted(indexes) == ["polls_pkey", "polls_ts_brin"]
            assert not conn.exec_driver_sql("SELECT to_regclass('polls_load') IS NOT NULL").scalar()
    paths_taken.clear()
    ingest_file(engine, "status", later, chunk_rows=2)
    assert paths_taken == (["copy_upsert_polls"] * 2 if engine.dialect.name == "postgresql" else [])
    assert len(polls(engine)) == 10
    assert ("0", 1674648000000000, False) in polls(engine)  # the later row for the key won


@pytest.mark.parametrize("loaded_before", [False, True])
def test_hours_rows_repeated_across_chunks_are_kept_once(engine, tmp_path, loaded_before):
    """Two rows at a time: store 7's rows arrive in three chunks, one of them twice; store 9's
    once. On an empty table (a first load, which deletes nothing) and on one that held rows."""
    if loaded_before:
        old = write_csv(
            tmp_path / "old.csv",
            "store_id,day,start_time_local,end_time_local\n7,0,01:00,02:00\n9,1,01:00,02:00\n8,2,03:00,04:00\n",
        )
        ingest_file(engine, "hours", old)
    path = write_csv(
        tmp_path / "hours.csv",
        """
store_id,day,start_time_local,end_time_local
7,0,09:00,17:00
7,1,09:00,17:00
9,0,10:00,11:00
7,0,09:00,17:00
7,2,09:00,12:00
7,0,09:00,17:00
""",
    )
    summary = ingest_file(engine, "hours", path, chunk_rows=2)
    assert summary.rows_stored == 4
    rows = table(engine, "SELECT store_id, day, start_s, end_s FROM business_hours ORDER BY 1, 2")
    expected = [("7", 0, 32400, 61200), ("7", 1, 32400, 61200), ("7", 2, 32400, 43200), ("9", 0, 36000, 39600)]
    assert rows == (expected[:3] + [("8", 2, 10800, 14400)] + expected[3:] if loaded_before else expected)


def test_a_refusal_found_in_a_later_chunk_stores_nothing(engine, tmp_path):
    """The file is parsed in a thread a chunk ahead of the writes: a strict refusal, or a CSV
    that turns unreadable, found after earlier chunks were written still leaves nothing."""
    good = "".join(f"{i},active,2023-01-25 1{i}:00:00 UTC\n" for i in range(6))
    strict = write_csv(
        tmp_path / "strict.csv", "store_id,status,timestamp_utc\n" + good + "9,maybe,2023-01-25 12:00:00 UTC\n"
    )
    with pytest.raises(IngestError, match="line 8: unknown status"):
        ingest_file(engine, "status", strict, strict=True, chunk_rows=2)
    torn = write_csv(
        tmp_path / "torn.csv", "store_id,status,timestamp_utc\n" + good + '9,"active,2023-01-25 12:00:00 UTC\n'
    )
    with pytest.raises(IngestError, match="unreadable CSV"):
        ingest_file(engine, "status", torn, chunk_rows=2)
    assert polls(engine) == []
    assert table(engine, "SELECT count(*) FROM stores") == [(0,)]


# --- limits: wide files, long rows, big fields ----------------------------------------------------


def test_a_header_wider_than_64_columns_is_refused_at_once(client, runner, engine, tmp_path):
    ingest_file(engine, "status", write_csv(tmp_path / "good.csv", STATUS_HEADER + f"a,active,{TS}\n"))
    before = snapshot(engine)
    extra = ",".join(f"c{i}" for i in range(100_000))
    wide = (
        STATUS_HEADER.strip()
        + ","
        + extra
        + "\n"
        + "".join(f"w{r},active,{TS}," + "v," * 99_999 + "v\n" for r in range(3))
    )
    response = post(client, "status", wide)
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "refused, its header has 100,003 columns, more than the 64" in message and len(message) < 600
    path = write_csv(tmp_path / "wide.csv", wide)
    result = runner.invoke(args=["ingest", "--status", str(path)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"Error: {message.replace('upload.csv', 'wide.csv')}"]
    assert snapshot(engine) == before
    assert [outcome for outcome, _ in ledger_outcomes(engine)] == ["stored", "refused", "refused"]


@pytest.mark.parametrize(
    "columns, refused", [(MAX_COLUMNS, False), (MAX_COLUMNS + 1, True)], ids=["64: read", "65: refused"]
)
def test_a_header_of_64_columns_is_a_feed_file_of_many_ignored_columns_65_are_not(client, columns, refused):
    names = STATUS_HEADER.strip() + "".join(f",x{i}" for i in range(columns - 3))
    text = names + "\n" + f"b,active,{TS}" + ",y" * (columns - 3) + "\n"
    assert (post(client, "status", text).status_code == 400) is refused


def test_a_row_with_more_than_64_fields_is_refused_one_wider_than_the_header_skipped(engine, tmp_path):
    text = STATUS_HEADER + f"a,active,{TS}\n" + f"b,active,{TS}" + ",x" * (MAX_COLUMNS - 3) + "\n" + f"c,active,{TS}\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "ok.csv", text))
    assert summary.skipped == {"too many fields": 1} and summary.rows_stored == 2
    assert (summary.examples[0].line, summary.examples[0].text) == (3, "64 fields where the header has 3")
    before = snapshot(engine)
    text = STATUS_HEADER + f"d,active,{TS}\n" + f"e,active,{TS}\n" + f"f,active,{TS}" + ",x" * (MAX_COLUMNS - 2) + "\n"
    with pytest.raises(IngestError, match="line 4 has more than 64 fields"):
        ingest_file(engine, "status", write_csv(tmp_path / "no.csv", text))
    assert snapshot(engine) == before


def test_the_line_limit_counts_a_quoted_field_spanning_lines_as_one_row(app, client, engine):
    app.config["MAX_LINE_BYTES"] = 2048
    header = STATUS_HEADER.strip() + ",note\n"
    note = '"' + ("x" * 99 + "\n") * 100 + '"'  # 10,000 bytes in lines of 100
    response = post(client, "status", header + f"a,active,{TS},ok\nb,active,{TS},{note}\nc,active,{TS},ok\n")
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "the row starting on line 3 is longer than 2,048 bytes: a quoted field runs on" in message
    open_quote = header + f'a,active,{TS},"oops\n' + f"b,active,{TS},fine\n" * 100
    message = post(client, "status", open_quote).get_json()["message"]
    assert "row starting on line 2 is longer than 2,048 bytes" in message and "is a quote left open?" in message
    assert polls(engine) == []
    # Under the limit a quoted field may span lines; later rows keep the lines they start on.
    short = '"first line, with a comma\nsecond ""quoted"" line\r\nthird"'
    summary = post(client, "status", header + f"a,active,{TS},{short}\nb,asleep,{TS},ok\n").get_json()
    assert summary["rows_read"] == 2 and summary["skipped"] == {"unknown status": 1}
    assert [e["line"] for e in summary["examples"]] == [5]
    assert [r.store_id for r in polls(engine)] == ["a"]


def test_a_field_larger_than_pythons_csv_limit_is_a_bad_row_not_a_500(client, engine):
    big = "x" * 200_000  # Python's csv module reads fields of at most 131,072 characters
    response = post(client, "status", STATUS_HEADER + f"a,active,{TS},{big}\nb,active,{TS}\n")
    assert response.status_code == 200 and response.get_json()["skipped"] == {"too many fields": 1}
    response = post(client, "status", STATUS_HEADER + f"{big},active,{TS}\nc,active,{TS}\n")
    body = response.get_json()
    assert response.status_code == 200 and body["skipped"] == {"store_id too long": 1}
    assert len(body["examples"][0]["text"]) < 260
    response = post(client, "timezones", ZONES + f"z,{big}\nok,America/Denver\n")
    assert response.status_code == 200 and response.get_json()["skipped"] == {"bad timezone": 1}
    response = post(client, "status", big + "," + STATUS_HEADER + f"d,active,{TS}\n")
    assert response.status_code == 400 and "its header is not readable CSV" in response.get_json()["message"]
    assert sorted(r.store_id for r in polls(engine)) == ["b", "c"]


def test_a_stray_quote_is_refused_with_its_line_a_quoted_one_is_read(engine, tmp_path):
    header = STATUS_HEADER.strip() + ",note\n"
    stray = header + f'a,active,{TS},ok\nb,active,{TS},12" pizza\n'
    with pytest.raises(IngestError, match=r"line 3 has a quote inside a field that does not start with one"):
        ingest_file(engine, "status", write_csv(tmp_path / "stray.csv", stray))
    quoted = header + f'a,active,{TS},ok\nb,active,{TS},"12"" pizza, large"\n'
    assert ingest_file(engine, "status", write_csv(tmp_path / "quoted.csv", quoted)).rows_stored == 2


def test_rows_are_parsed_in_chunks_of_bounded_size(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_PIECE", 16 << 10)
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 64 << 10)
    sizes = []
    real = parse.PARSERS["status"]

    def spy(raw, known=None):
        sizes.append((len(raw), int(raw["store_id"].str.len().sum())))
        return real(raw, known)

    monkeypatch.setitem(parse.PARSERS, "status", spy)
    normal = "".join(f"s{i},active,{TS}\n" for i in range(1_000))  # 36 KB
    long = "".join(f"{'L' * 10_000}{i},active,{TS}\n" for i in range(30))
    path = write_csv(tmp_path / "s.csv", STATUS_HEADER + normal + long + normal)
    summary = ingest_file(engine, "status", path)
    assert summary.rows_read == 2_030 and summary.skipped == {"store_id too long": 30}
    assert max(text for _, text in sizes) <= 64 << 10  # no chunk holds more than CHUNK_BYTES of ids
    assert len(sizes) < 15  # the short rows around the long ones are not cut small
    monkeypatch.setattr(ingest, "CHUNK_CELLS", 3_000)
    sizes.clear()
    ingest_file(engine, "status", path, force=True)
    assert max(rows for rows, _ in sizes) <= 1_000  # 3 columns: 1,000 rows of 3 fields


_CHILD = textwrap.dedent("""
    import json, sys, tempfile
    from storemon import create_app, ingest
    from storemon.extensions import db
    from storemon.parse import IngestError

    kind, path = sys.argv[1:3]
    for name, value in json.loads(sys.argv[3]).items():
        setattr(ingest, name, value)
    folder = tempfile.mkdtemp()
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder}/m.db", "REPORTS_DIR": folder + "/r",
                      "UPLOAD_DIR": folder + "/u"})

    def status(key):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith(key))

    # This process's own peak: ru_maxrss would start from the parent's (fork/exec inherits it),
    # which is whatever pytest has grown to by then.
    set_up = status("VmHWM:")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # the peak (VmHWM) starts again from here
    start = status("VmRSS:")
    try:
        with app.app_context():
            summary = ingest.ingest_file(db.engine, kind, path)
        answer = {"outcome": summary.outcome, "skipped": summary.skipped, "rows_read": summary.rows_read}
    except IngestError as exc:
        answer = {"outcome": "refused", "message": str(exc)}
    answer["grew_mb"] = (status("VmHWM:") - start) / 1024
    answer["peak_mb"] = max(set_up, status("VmHWM:")) / 1024
    print(json.dumps(answer))
""")


def _ingest_in_child(kind, path, **settings) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(path), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_a_wide_file_or_long_rows_take_little_memory(tmp_path):
    # 50,000 extra columns and 100 rows (10 MB): refused at the header.
    wide = tmp_path / "wide.csv"
    with wide.open("w") as handle:
        handle.write(STATUS_HEADER.strip() + "".join(f",c{i}" for i in range(50_000)) + "\n")
        handle.writelines(f"s{r},active,{TS}" + ",v" * 50_000 + "\n" for r in range(100))
    answer = _ingest_in_child("status", wide)
    assert answer["grew_mb"] < 40 and answer["peak_mb"] < 400, answer
    assert answer["outcome"] == "refused" and "50,003 columns" in answer["message"]
    # Rows of 1 MB: parsed 4 MiB at a time, not all 40 in one chunk.
    long = tmp_path / "long.csv"
    with long.open("w") as handle:
        handle.write(STATUS_HEADER + f"ok,active,{TS}\n")
        handle.writelines(f"{'x' * 1_000_000}{r},active,{TS}\n" for r in range(40))
    answer = _ingest_in_child("status", long, CHUNK_BYTES=4 << 20)
    assert answer["grew_mb"] < 50 and answer["peak_mb"] < 400, answer
    assert answer["skipped"] == {"store_id too long": 40}


# --- limits: hours per store, zone names, quoting -------------------------------------------------


def test_hours_beyond_50_distinct_rows_per_store_and_weekday_are_skipped(engine, tmp_path):
    def clock(minute):
        return f"{minute // 60:02d}:{minute % 60:02d}"

    rows = [f"A,0,{clock(m)},23:59" for m in range(60)]  # 60 distinct rows on Monday ...
    rows += rows[:10]  # ... the first ten again: kept once, not counted again
    rows += [f"A,1,{clock(m)},23:59" for m in range(50)]  # 50 on Tuesday: all kept
    rows.insert(30, "B,0,09:00,17:00")
    path = write_csv(tmp_path / "h.csv", HOURS + "\n".join(rows) + "\n")
    summary = ingest_file(engine, "hours", path, chunk_rows=7)  # the rows of a store over many chunks
    assert summary.skipped == {"too many hours rows for the store": 10}
    assert summary.rows_stored == 101 and summary.rows_read == 121
    assert [b.line for b in summary.examples] == [53, 54, 55, 56, 57]  # A's 51st Monday row is line 53
    assert summary.examples[0].text == "A,0,00:50,23:59"
    assert table(engine, "SELECT store_id, day, count(*) FROM business_hours GROUP BY 1, 2 ORDER BY 1, 2") == [
        ("A", 0, 50),
        ("A", 1, 50),
        ("B", 0, 1),
    ]
    # The limit is per file: a later file gives A its hours again.
    again = write_csv(tmp_path / "h2.csv", HOURS + "".join(f"A,0,{clock(m)},23:59\n" for m in range(100, 150)))
    assert ingest_file(engine, "hours", again).skipped == {}
    assert table(engine, "SELECT count(*) FROM business_hours WHERE store_id = 'A'") == [(50,)]


def test_twenty_thousand_hours_rows_for_one_store_keep_50_per_weekday(engine, tmp_path):
    rows = "".join(f"big,{i % 7},{i // 7 // 60:02d}:{i // 7 % 60:02d},23:59:59\n" for i in range(10_080))
    summary = ingest_file(engine, "hours", write_csv(tmp_path / "h.csv", HOURS + rows))
    assert (summary.rows_stored, summary.skipped) == (350, {"too many hours rows for the store": 10_080 - 350})
    per_day = table(engine, "SELECT day, count(*) FROM business_hours GROUP BY day ORDER BY day")
    assert per_day == [(day, 50) for day in range(7)]


def test_a_zone_name_over_64_characters_or_with_a_control_character_is_a_bad_row(engine, tmp_path):
    text = ZONES + f'a,{"Z" * 65}\nb,{"Y" * 64}\nc,"Bad\x01Zone"\nd,America/Denver\n'
    summary = ingest_file(engine, "timezones", write_csv(tmp_path / "z.csv", text))
    assert summary.skipped == {"bad timezone": 2}
    assert [(b.line, b.reason) for b in summary.examples] == [(2, "bad timezone"), (4, "bad timezone")]
    assert table(engine, "SELECT store_id FROM store_timezones ORDER BY 1") == [("b",), ("d",)]
    assert summary.warnings == [f"1 unknown time zone name(s), reported as America/Chicago: {'Y' * 64}"]


def test_summaries_and_errors_quote_at_most_about_200_characters_of_a_value(client, engine, tmp_path):
    huge = "".join(f"z{i},{chr(65 + i) * 100_000}\n" for i in range(10))
    response = post(client, "timezones", ZONES + huge + "ok,America/Denver\n")
    assert response.status_code == 200 and len(response.data) < 5_000
    many = "".join(f"u{i},Nowhere/{chr(65 + i) * 50}\n" for i in range(12))
    warning = post(client, "timezones", ZONES + many).get_json()["warnings"][0]
    assert warning.startswith("12 unknown time zone name(s)") and warning.endswith(", ...") and len(warning) < 800
    name = "n" * 1_000 + ".csv"
    with pytest.raises(IngestError) as refused:
        ingest_file(engine, "status", write_csv(tmp_path / "x.csv", "store_id\n1\n"), name=name)
    assert len(str(refused.value)) < 600
    summary = ingest_file(
        engine, "status", write_csv(tmp_path / "y.csv", STATUS_HEADER + f"a,active,{TS}\n"), name=name
    )
    assert len(summary.to_dict()["file"]) < 230 and len(summary.describe().splitlines()[0]) < 400
    long_row = STATUS_HEADER + f"a,active,{TS}\n" + f"b,{'s' * 100_000},{TS}\n"
    with pytest.raises(IngestError) as strict:
        ingest_file(engine, "status", write_csv(tmp_path / "s.csv", long_row), strict=True)
    assert "line 3: unknown status" in str(strict.value) and len(str(strict.value)) < 600
    header = ",".join("h" * 10_000 for _ in range(3)) + "\n1,2,3\n"
    response = post(client, "hours", header, name="q" * 500 + ".csv")
    assert response.status_code == 400 and len(response.get_json()["message"]) < 600


# --- the ledger of ingests ------------------------------------------------------------------------


def test_a_restart_does_not_revert_an_upload(app, client, runner, tmp_path, engine):
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,17:00\n")
    write_csv(data / "store_status.csv", STATUS)
    assert runner.invoke(args=["ingest", str(data)]).exit_code == 0
    changed = "store_id,day,start_time_local,end_time_local\n007,1,10:00,11:00\n"
    response = client.post(
        "/ingest/hours",
        data={"file": (io.BytesIO(changed.encode()), "new_hours.csv")},
        content_type="multipart/form-data",
    )
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


# --- a long ingest holds the database: reports, triggers and polls go on --------------------------


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
    special = write_csv(tmp_path / "holidays.csv", "store_id,date,start_time_local,end_time_local\n007,2023-01-23,,\n")
    ingest_file(loaded, "special_hours", special)
    with HeldWriteLock(loaded):
        started = time.monotonic()
        response = client.post("/trigger_report")
        assert response.status_code == 200 and time.monotonic() - started < 5  # at once
        report = wait_for(client, response.get_json()["report_id"])
        assert report.headers["X-Report-Status"] == "Complete"  # a report reads its snapshot
        busy = client.post(
            "/ingest/status", data=STATUS_HEADER + "z,active,2023-01-23 12:00:00 UTC\n", content_type="text/csv"
        )
        assert busy.status_code == 503 and busy.headers["Retry-After"] == str(IngestBusy.retry_after)
        assert "try again later" in busy.get_json()["message"]
        path = write_csv(tmp_path / "more.csv", STATUS_HEADER + "z,active,2023-01-23 12:00:00 UTC\n")
        result = runner.invoke(args=["ingest", "--status", str(path)])
        assert result.exit_code == 75
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
        busy = client.delete("/special_hours?store_id=007&date=2023-01-23")  # a removal waits as an ingest
        assert busy.status_code == 503 and busy.headers["Retry-After"] == str(IngestBusy.retry_after)
        assert "try again later" in busy.get_json()["message"]
        result = runner.invoke(args=["special-hours", "--remove", "007", "2023-01-23"])
        assert result.exit_code == 75 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert client.delete("/special_hours?store_id=007&date=2023-01-23").status_code == 200
    ok = client.post(
        "/ingest/status", data=STATUS_HEADER + "z,active,2023-01-23 12:00:00 UTC\n", content_type="text/csv"
    )
    assert ok.status_code == 200  # its turn came


# --- flask ingest ---------------------------------------------------------------------------------


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


def test_a_date_alone_is_its_midnight_utc(engine, tmp_path):
    path = write_csv(tmp_path / "s.csv", STATUS_HEADER + "d,active,2023-01-25\nt,active,2023-01-25T00:00:00Z\n")
    assert ingest_file(engine, "status", path).rows_stored == 2
    assert [ts for _, ts, _ in polls(engine)] == [to_us("2023-01-25 00:00")] * 2


# --- special hours ----------------------------------------------------------------------------------


def test_special_hours_files_are_recognised_by_name_and_loaded_after_hours_before_polls(engine, tmp_path):
    for day, name in enumerate(["special_hours.csv", "Special Hours 2023.csv", "closures-jan.csv", "HOLIDAYS.csv"]):
        write_csv(tmp_path / name, SPECIAL_HEADER + f"s,2023-01-2{day},,\n")
    write_csv(tmp_path / "store_status.csv", STATUS_HEADER + "s,active,2023-01-25 12:00:00 UTC\n")
    write_csv(tmp_path / "menu_hours.csv", HOURS + "s,0,09:00,17:00\n")
    write_csv(tmp_path / "timezones.csv", ZONES + "s,UTC\n")
    found = find_files(tmp_path)
    assert [p.name for p in found["special_hours"]] == [
        "HOLIDAYS.csv",
        "Special Hours 2023.csv",
        "closures-jan.csv",
        "special_hours.csv",
    ]
    summary = ingest_files(engine, tmp_path)
    assert [f.kind for f in summary.files] == ["timezones", "hours"] + ["special_hours"] * 4 + ["status"]
    assert {row[4] for row in special(engine)} == {p.name for p in found["special_hours"]}


def test_a_file_naming_a_date_twice_gives_it_both_rows_and_a_repeated_row_once(engine, tmp_path):
    ingest_file(engine, "special_hours", write_csv(tmp_path / "old.csv", SPECIAL_HEADER + "s,2023-01-23,08:00,20:00\n"))
    rows = [
        "s,2023-01-23,09:00,12:00",
        "t,2023-01-23,,",
        "s,2023-01-23,14:00,18:00",  # the same date again, further down the file (another chunk)
        "s,2023-01-23,09:00,12:00",  # a row given twice: kept once
        "t,2023-01-23,,",
    ]
    path = write_csv(tmp_path / "new.csv", SPECIAL_HEADER + "\n".join(rows) + "\n")
    summary = ingest_file(engine, "special_hours", path, chunk_rows=2)
    assert (summary.rows_read, summary.rows_stored, summary.skipped) == (5, 3, {})
    assert special(engine) == [  # the earlier file's 08:00-20:00 replaced by both of the new rows
        ("s", "2023-01-23", 32400, 43200, "new.csv"),
        ("s", "2023-01-23", 50400, 64800, "new.csv"),
        ("t", "2023-01-23", None, None, "new.csv"),
    ]


def test_special_rows_keep_24_hour_and_end_of_day_forms_as_written(engine, tmp_path):
    rows = (
        "s,2023-01-23,09:00,09:00\ns,2023-01-24,18:00,23:59:59\ns,2023-01-25,00:00,24:00:00\ns,2023-01-26,22:00,02:00\n"
    )
    assert ingest_file(engine, "special_hours", write_csv(tmp_path / "s.csv", SPECIAL_HEADER + rows)).skipped == {}
    assert [(date, a, b) for _, date, a, b, _ in special(engine)] == [
        ("2023-01-23", 32400, 32400),  # end equal to start: the 24 hours from 09:00
        ("2023-01-24", 64800, 86399),
        ("2023-01-25", 0, 86400),
        ("2023-01-26", 79200, 7200),  # past midnight
    ]


def test_bad_special_rows_are_skipped_counted_and_located(engine, tmp_path):
    rows = [
        "ok,2023-01-23,,",
        "a,2023-02-30,,",
        "a,1999-12-31,09:00,10:00",
        "a,2023-01-23,,10:00",
        "a,2023-01-23,10:00,",
        "=cmd,2023-01-23,,",
        "a,2023-01-23,24:00,10:00",
    ]
    text = SPECIAL_HEADER + "\n".join(rows) + "\n"
    summary = ingest_file(engine, "special_hours", write_csv(tmp_path / "s.csv", text))
    assert summary.skipped == {"bad date": 2, "bad start time": 2, "bad end time": 1, "unsafe store_id": 1}
    assert [(b.line, b.reason) for b in summary.examples] == [
        (3, "bad date"),
        (4, "bad date"),
        (5, "bad start time"),
        (6, "bad end time"),
        (7, "unsafe store_id"),
    ]
    assert [row[0] for row in special(engine)] == ["ok"]
    with pytest.raises(IngestError, match="line 3: bad date"):
        ingest_file(engine, "special_hours", write_csv(tmp_path / "t.csv", text), strict=True, force=True)


def test_a_special_hours_file_missing_the_date_column_is_refused_naming_it(engine, tmp_path):
    path = write_csv(tmp_path / "holidays.csv", "store_id,day,start_time_local,end_time_local\ns,0,,\n")
    with pytest.raises(IngestError, match=r"missing required column\(s\) date for a special_hours file"):
        ingest_file(engine, "special_hours", path)
    assert special(engine) == []


def test_a_huge_special_file_for_one_store_keeps_50_rows_per_date(engine, tmp_path):
    def clock(second):
        return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"

    rows = "".join(f"big,2023-01-{23 + i % 3},{clock(i // 3)},23:59:59\n" for i in range(30_000))  # all distinct
    path = write_csv(tmp_path / "special_hours.csv", SPECIAL_HEADER + rows)
    summary = ingest_file(engine, "special_hours", path, chunk_rows=4_000)
    assert (summary.rows_stored, summary.skipped) == (150, {"too many hours rows for the store": 30_000 - 150})
    assert summary.examples[0].line == 2 + 150  # the 151st row is the first beyond: the 51st of its date
    per_date = table(engine, "SELECT local_date, count(*) FROM special_hours GROUP BY local_date ORDER BY 1")
    assert per_date == [(19380, 50), (19381, 50), (19382, 50)]


def test_removing_a_special_date_is_a_stored_change_in_the_ledger_that_moves_the_data_version(engine, tmp_path):
    rows = "007,2023-01-23,,\n007,2023-01-24,10:00,14:00\n007,2023-01-24,17:00,22:00\n"
    ingest_file(engine, "special_hours", write_csv(tmp_path / "holidays.csv", SPECIAL_HEADER + rows))
    with engine.connect() as conn:
        before = storage.data_version(conn)
    done = remove_special_date(engine, "007", " 2023-01-24 ", source="http")
    assert (done.store_id, done.date, done.rows_removed) == ("007", "2023-01-24", 2)
    assert done.removed.values.tolist() == [
        [19381, 36000, 50400, "holidays.csv"],
        [19381, 61200, 79200, "holidays.csv"],
    ]
    with engine.connect() as conn:
        assert storage.data_version(conn) == done.ledger_id > before
        row = storage.ledger_list(conn, limit=1)[0]
    assert {k: row[k] for k in ("kind", "file_name", "outcome", "rows_stored", "rows_read", "size", "source")} == {
        "kind": "special_hours",
        "file_name": "remove 007 2023-01-24",
        "outcome": "stored",
        "rows_stored": 2,
        "rows_read": 0,
        "size": 0,
        "source": "http",
    }
    assert [(r[0], r[1]) for r in special(engine)] == [("007", "2023-01-23")]


def test_removing_a_date_without_special_hours_or_a_date_that_is_none_records_nothing(engine, tmp_path):
    ingest_file(engine, "special_hours", write_csv(tmp_path / "h.csv", SPECIAL_HEADER + "007,2023-01-23,,\n"))
    ledger = table(engine, "SELECT count(*) FROM ingests")
    with pytest.raises(NoSpecialDate, match="store '007' has no special hours on 2023-01-24: nothing to remove"):
        remove_special_date(engine, "007", "2023-01-24")
    for store_id in ("7", "=cmd", "a\x00b", ""):
        with pytest.raises(NoSpecialDate):
            remove_special_date(engine, store_id, "2023-01-23")
    for date in ("2023-02-30", "1999-12-31", "yesterday"):
        with pytest.raises(ValueError):
            remove_special_date(engine, "007", date)
    assert table(engine, "SELECT count(*) FROM ingests") == ledger
    assert len(special(engine)) == 1


def test_a_removed_date_stays_removed_when_its_file_is_ingested_again_unless_forced(engine, tmp_path):
    path = write_csv(tmp_path / "holidays.csv", SPECIAL_HEADER + "007,2023-01-23,,\n")
    ingest_file(engine, "special_hours", path)
    remove_special_date(engine, "007", "2023-01-23")
    again = ingest_file(engine, "special_hours", path)
    assert (again.outcome, again.rows_changed) == ("unchanged", None)
    assert special(engine) == []
    ingest_file(engine, "special_hours", path, force=True)
    assert special(engine) == [("007", "2023-01-23", None, None, "holidays.csv")]
