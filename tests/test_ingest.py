"""Ingestion of the three feeds (docs/data-formats.md) into SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from helpers import REAL_SAMPLE, polls, snapshot, table, write_csv

from storemon import storage
from storemon.ingest import find_files, ingest_file, ingest_files
from storemon.parse import IngestError


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
        tmp_path / "s.csv",
        "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n2,active,bad\n",
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
        write_csv(tmp_path / "h1.csv", "store_id,day,start_time_local,end_time_local\nA,0,09:00,17:00\nA,1,09:00,17:00\nB,0,10:00,11:00\n"),
    )
    ingest_file(
        engine,
        "hours",
        write_csv(tmp_path / "h2.csv", "store_id,day_of_week,start_time_local,end_time_local\nA,5,08:00,12:00\nA,5,08:00,12:00\n"),
    )
    assert table(engine, "SELECT store_id, day, start_s, end_s FROM business_hours ORDER BY 1, 2") == [
        ("A", 5, 8 * 3600, 12 * 3600),
        ("B", 0, 10 * 3600, 11 * 3600),
    ]
    ingest_file(engine, "timezones", write_csv(tmp_path / "z1.csv", "store_id,timezone_str\nA,America/Denver\nB,Asia/Kolkata\n"))
    z = ingest_file(engine, "timezones", write_csv(tmp_path / "z2.csv", "timezone_str,store_id\nAmerica/New_York,A\n"))
    assert z.rows_changed == 1
    assert table(engine, "SELECT * FROM store_timezones ORDER BY 1") == [("A", "America/New_York"), ("B", "Asia/Kolkata")]


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
    ingest_file(engine, "hours", write_csv(tmp_path / "h.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,10:00\n"))
    assert sorted(r[0] for r in polls(engine)) == sorted(ids)
    assert table(engine, "SELECT store_id FROM store_timezones") == [("007",)]
    assert table(engine, "SELECT store_id FROM business_hours") == [("007",)]


def test_header_and_timestamp_variants(engine, tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(
        "\ufeffTimestamp_UTC, Status ,extra,STORE_ID\n".encode()
        + b"2023-01-25 12:09:39.388884 UTC,active,x,1\n"
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
        engine, "timezones", write_csv(tmp_path / "z.csv", "store_id,timezone_str\n1,Venus/Maxwell_Montes\n2,America/Chicago\n")
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
    write_csv(tmp_path / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n1,0,09:00,12:00\n2,1,09:00,12:00\n2,2,09:00,12:00\n")
    write_csv(tmp_path / "timezones.csv", "store_id,timezone_str\n2,UTC\n3,UTC\n4,Asia/Tokyo\n")
    ingest_files(engine, tmp_path)
    body = client.get("/health").get_json()
    assert body == {
        "status": "ok", "database": "reachable", "stores_with_polls": 1, "stores_with_hours": 2,
        "stores_with_timezone": 3, "polls": 2, "reports": 0,
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
    assert warnings == [
        "2 unknown time zone name(s), reported as America/Chicago: Mars/Olympus_Mons, Nowhere/Land"
    ]


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
    path = write_csv(tmp_path / "s.csv", KEY_REPEATED_IN_A_LATER_CHUNK.replace("4,active,2023-01-25 12", "4,active,2023-01-25 11"))
    s = ingest_file(engine, "status", path, chunk_rows=2)
    assert [(sid, active) for sid, _, active in polls(engine)] == [("1", False), ("2", True), ("3", True), ("4", True)]
    assert (s.rows_read, s.rows_stored, s.rows_changed, s.stores) == (5, 4, 4, 4)


def test_postgresql_copies_a_first_load_straight_in_and_upserts_later_files(engine, tmp_path, monkeypatch):
    """The fast path is taken when it may be: every chunk of a first load goes straight into
    `polls`; once the table holds rows, chunks go through the upsert. SQLite never uses COPY."""
    paths_taken = []
    real = storage.writers.copy_upsert_polls

    def spy(conn, frame, direct):
        changed, still_direct = real(conn, frame, direct)
        paths_taken.append(still_direct)
        return changed, still_direct

    monkeypatch.setattr(storage.writers, "copy_upsert_polls", spy)
    header = "store_id,status,timestamp_utc\n"
    first = write_csv(tmp_path / "a.csv", header + "".join(
        f"{i},active,2023-01-25 12:00:00 UTC\n" for i in range(6)))
    later = write_csv(tmp_path / "b.csv", header + "".join(
        f"{i},inactive,2023-01-25 13:00:00 UTC\n" for i in range(4)))
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 2)  # each chunk written on its own
    ingest_file(engine, "status", first, chunk_rows=2)
    ingest_file(engine, "status", later, chunk_rows=2)
    if engine.dialect.name == "postgresql":
        assert paths_taken == [True, True, True, False, False]
    else:
        assert paths_taken == []
    assert len(polls(engine)) == 10


@pytest.mark.parametrize("loaded_before", [False, True])
def test_hours_rows_repeated_across_chunks_are_kept_once(engine, tmp_path, loaded_before):
    """Two rows at a time: store 7's rows arrive in three chunks, one of them twice; store 9's
    once. On an empty table (a first load, which deletes nothing) and on one that held rows."""
    if loaded_before:
        old = write_csv(tmp_path / "old.csv", "store_id,day,start_time_local,end_time_local\n"
                        "7,0,01:00,02:00\n9,1,01:00,02:00\n8,2,03:00,04:00\n")
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
    strict = write_csv(tmp_path / "strict.csv", "store_id,status,timestamp_utc\n" + good + "9,maybe,2023-01-25 12:00:00 UTC\n")
    with pytest.raises(IngestError, match="line 8: unknown status"):
        ingest_file(engine, "status", strict, strict=True, chunk_rows=2)
    torn = write_csv(tmp_path / "torn.csv", "store_id,status,timestamp_utc\n" + good + '9,"active,2023-01-25 12:00:00 UTC\n')
    with pytest.raises(IngestError, match="unreadable CSV"):
        ingest_file(engine, "status", torn, chunk_rows=2)
    assert polls(engine) == []
    assert table(engine, "SELECT count(*) FROM stores") == [(0,)]
