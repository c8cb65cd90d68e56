"""Limits of the ingest (issue 22, item 8): too many hours rows for one store, zone names that
are no names, and how much of any value a summary or an error quotes."""

from __future__ import annotations

import io

import pytest
from conftest import write_csv
from test_ingest import table

from storemon.ingest import IngestError, ingest_file

HEADER = "store_id,status,timestamp_utc\n"
TS = "2023-01-25 12:00:00 UTC"
ZONES = "store_id,timezone_str\n"
HOURS = "store_id,day,start_time_local,end_time_local\n"


def post(client, kind, text, name=None):
    data = text.encode() if isinstance(text, str) else text
    if name is None:
        return client.post(f"/ingest/{kind}", data=data, content_type="text/csv")
    return client.post(f"/ingest/{kind}", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


# --- 8. hours per store, zone names, quoting -------------------------------------------------------


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
        ("A", 0, 50), ("A", 1, 50), ("B", 0, 1)]
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
    text = ZONES + f"a,{'Z' * 65}\nb,{'Y' * 64}\nc,\"Bad\x01Zone\"\nd,America/Denver\n"
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
    summary = ingest_file(engine, "status", write_csv(tmp_path / "y.csv", HEADER + f"a,active,{TS}\n"), name=name)
    assert len(summary.to_dict()["file"]) < 230 and len(summary.describe().splitlines()[0]) < 400
    long_row = HEADER + f"a,active,{TS}\n" + f"b,{'s' * 100_000},{TS}\n"
    with pytest.raises(IngestError) as strict:
        ingest_file(engine, "status", write_csv(tmp_path / "s.csv", long_row), strict=True)
    assert "line 3: unknown status" in str(strict.value) and len(str(strict.value)) < 600
    header = ",".join("h" * 10_000 for _ in range(3)) + "\n1,2,3\n"
    response = post(client, "hours", header, name="q" * 500 + ".csv")
    assert response.status_code == 400 and len(response.get_json()["message"]) < 600
