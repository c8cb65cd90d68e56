"""Limits of the ingest (issue 22, items 7 and 8): files too wide, rows too long (a row is a CSV
record, the line breaks of its quoted fields included), fields too big for Python's csv module,
too many hours rows for one store, zone names that are no names, and how much of any value a
summary or an error quotes. The memory an ingest takes is measured in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import polls, snapshot, table, write_csv

from storemon import ingest, parse
from storemon import scan as scan_module
from storemon.ingest import ingest_file
from storemon.parse import IngestError
from storemon.scan import FileScan, Scanner

HEADER = "store_id,status,timestamp_utc\n"
TS = "2023-01-25 12:00:00 UTC"
ZONES = "store_id,timezone_str\n"
MAX_COLUMNS = 64  # of a header or a row (docs/data-formats.md)
HOURS = "store_id,day,start_time_local,end_time_local\n"


def post(client, kind, text, name=None):
    data = text.encode() if isinstance(text, str) else text
    if name is None:
        return client.post(f"/ingest/{kind}", data=data, content_type="text/csv")
    return client.post(f"/ingest/{kind}", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def ledger(engine):
    return table(engine, "SELECT outcome, message FROM ingests ORDER BY id")


# --- 7. wide files, long rows, big fields ---------------------------------------------------------


def test_a_header_wider_than_64_columns_is_refused_at_once(client, runner, engine, tmp_path):
    ingest_file(engine, "status", write_csv(tmp_path / "good.csv", HEADER + f"a,active,{TS}\n"))
    before = snapshot(engine)
    extra = ",".join(f"c{i}" for i in range(100_000))
    wide = HEADER.strip() + "," + extra + "\n" + "".join(f"w{r},active,{TS}," + "v," * 99_999 + "v\n" for r in range(3))
    response = post(client, "status", wide)
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "refused, its header has 100,003 columns, more than the 64" in message and len(message) < 600
    path = write_csv(tmp_path / "wide.csv", wide)
    result = runner.invoke(args=["ingest", "--status", str(path)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"Error: {message.replace('upload.csv', 'wide.csv')}"]
    assert snapshot(engine) == before
    assert [outcome for outcome, _ in ledger(engine)] == ["stored", "refused", "refused"]
    # 64 columns are a feed file (of many ignored columns); 65 are not.
    for columns, refused in ((MAX_COLUMNS, False), (MAX_COLUMNS + 1, True)):
        names = HEADER.strip() + "".join(f",x{i}" for i in range(columns - 3))
        text = names + "\n" + f"b,active,{TS}" + ",y" * (columns - 3) + "\n"
        assert (post(client, "status", text).status_code == 400) is refused


def test_a_row_with_more_than_64_fields_is_refused_one_wider_than_the_header_skipped(engine, tmp_path):
    text = HEADER + f"a,active,{TS}\n" + f"b,active,{TS}" + ",x" * (MAX_COLUMNS - 3) + "\n" + f"c,active,{TS}\n"
    summary = ingest_file(engine, "status", write_csv(tmp_path / "ok.csv", text))
    assert summary.skipped == {"too many fields": 1} and summary.rows_stored == 2
    assert (summary.examples[0].line, summary.examples[0].text) == (3, "64 fields where the header has 3")
    before = snapshot(engine)
    text = HEADER + f"d,active,{TS}\n" + f"e,active,{TS}\n" + f"f,active,{TS}" + ",x" * (MAX_COLUMNS - 2) + "\n"
    with pytest.raises(IngestError, match="line 4 has more than 64 fields"):
        ingest_file(engine, "status", write_csv(tmp_path / "no.csv", text))
    assert snapshot(engine) == before


def test_the_line_limit_counts_a_quoted_field_spanning_lines_as_one_row(app, client, engine):
    app.config["MAX_LINE_BYTES"] = 2048
    header = HEADER.strip() + ",note\n"
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
    response = post(client, "status", HEADER + f"a,active,{TS},{big}\nb,active,{TS}\n")
    assert response.status_code == 200 and response.get_json()["skipped"] == {"too many fields": 1}
    response = post(client, "status", HEADER + f"{big},active,{TS}\nc,active,{TS}\n")
    body = response.get_json()
    assert response.status_code == 200 and body["skipped"] == {"store_id too long": 1}
    assert len(body["examples"][0]["text"]) < 260
    response = post(client, "timezones", ZONES + f"z,{big}\nok,America/Denver\n")
    assert response.status_code == 200 and response.get_json()["skipped"] == {"bad timezone": 1}
    response = post(client, "status", big + "," + HEADER + f"d,active,{TS}\n")
    assert response.status_code == 400 and "its header is not readable CSV" in response.get_json()["message"]
    assert sorted(r.store_id for r in polls(engine)) == ["b", "c"]


def test_a_stray_quote_is_refused_with_its_line_a_quoted_one_is_read(engine, tmp_path):
    header = HEADER.strip() + ",note\n"
    stray = header + f"a,active,{TS},ok\nb,active,{TS},12\" pizza\n"
    with pytest.raises(IngestError, match=r"line 3 has a quote inside a field that does not start with one"):
        ingest_file(engine, "status", write_csv(tmp_path / "stray.csv", stray))
    quoted = header + f'a,active,{TS},ok\nb,active,{TS},"12"" pizza, large"\n'
    assert ingest_file(engine, "status", write_csv(tmp_path / "quoted.csv", quoted)).rows_stored == 2


def _csv_records(text: str) -> list[tuple[int, int]]:
    """(fields, line it starts on) of each record, as Python's csv module reads them."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records, line = [], 1
    for row in reader:
        records.append((max(len(row), 1), line))  # an empty line is a row of one empty field
        line = reader.line_num + 1
    return records


def _scan(data: bytes, writes: list[int] | None = None) -> FileScan:
    scanner = Scanner(1 << 20)
    at = 0
    for size in writes or [len(data)]:
        scanner.update(data[at:at + size])
        at += size
    scanner.update(data[at:])
    return scanner.finish()


def _random_csv(rng: random.Random) -> str:
    def field() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice("ab1 é") for _ in range(rng.randrange(4)))
        return '"' + "".join(rng.choice(["a", ",", "\n", "\r\n", "\r", '""']) for _ in range(rng.randrange(5))) + '"'

    width = rng.randrange(1, 5)
    rows = [",".join(f"h{i}" for i in range(width))]
    for _ in range(rng.randrange(12)):
        rows.append(",".join(field() for _ in range(max(1, width + rng.choice([0, 0, 1, 3, -1])))))
    end = rng.choice(["\n", "\r\n", "\r"])
    return end.join(rows) + (end if rng.random() < 0.7 else "")


def test_the_scanner_cuts_records_as_a_csv_reader_does_across_any_blocks(monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_PIECE", 5)  # steps of 5 bytes: every state crosses a boundary
    rng = random.Random(22)
    fixed = ['\ufeffa,b\r\n"x\ny",2\r\n"q,""r""",3,extra\r\n,\r\n', "a,b\rc,d\re,f,g\r", "a\n\n\n"]
    for text in fixed + [_random_csv(rng) for _ in range(300)]:
        data = text.encode()
        expected = _csv_records(text.lstrip("\ufeff"))
        writes = [rng.randrange(1, 8) for _ in range(len(data) // 3)]
        for scan in (_scan(data), _scan(data, writes)):
            assert not scan.stray_quote and not scan.long_line, text
            assert scan.records == len(expected), text
            assert [scan.line_of(r) for r in range(scan.records)] == [line for _, line in expected], text
            width = expected[0][0]
            assert (scan.width, scan.widest) == (width, max(f for f, _ in expected)), text
            wide = [r for r, (fields, _) in enumerate(expected) if r and fields > width]
            assert np.flatnonzero(scan.wide_mask(0, scan.records)).tolist() == wide, text
            assert scan.marks[0][-1] == scan.records and scan.marks[1][-1] == len(data), text


def test_the_scanner_finds_long_rows_and_stray_quotes_where_they_start(monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_PIECE", 7)
    scanner = Scanner(30)
    scanner.update(b'h,n\n1,short\n2,"a quoted\nfield over\nthree lines and long"\n3,x\n')
    scan = scanner.finish()
    assert (scan.long_line, scan.long_spans) == (3, True)
    scanner = Scanner(30)
    scanner.update(b"h,n\n1," + b"y" * 40 + b"\n")
    assert (scanner.finish().long_line, scanner.scan.long_spans) == (2, False)
    for text in (b'h,n\n1,"ok"\n2,a"b\n', b'h,n\n1,"a""b"\n2,"x"y"\n', b'"h",n\r\n1,2\r\n3,4 "\r\n'):
        assert _scan(text).stray_quote == 3, text
    assert _scan(b'\xef\xbb\xbf"h",n\n"1",""\n').stray_quote == 0  # a quote right after a byte-order mark


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
    path = write_csv(tmp_path / "s.csv", HEADER + normal + long + normal)
    summary = ingest_file(engine, "status", path)
    assert summary.rows_read == 2_030 and summary.skipped == {"store_id too long": 30}
    assert max(text for _, text in sizes) <= 64 << 10  # no chunk holds more than CHUNK_BYTES of ids
    assert len(sizes) < 15  # the short rows around the long ones are not cut small
    monkeypatch.setattr(ingest, "CHUNK_CELLS", 3_000)
    sizes.clear()
    ingest_file(engine, "status", path, force=True)
    assert max(rows for rows, _ in sizes) <= 1_000  # 3 columns: 1,000 rows of 3 fields


_CHILD = textwrap.dedent('''
    import json, resource, sys, tempfile
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
    answer["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(answer))
''')


def _ingest_in_child(kind, path, **settings) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), json.dumps(settings)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_a_wide_file_or_long_rows_take_little_memory(tmp_path):
    # 50,000 extra columns and 100 rows (10 MB; it took 190 MB and 8 s to store): refused at the header.
    wide = tmp_path / "wide.csv"
    with wide.open("w") as handle:
        handle.write(HEADER.strip() + "".join(f",c{i}" for i in range(50_000)) + "\n")
        handle.writelines(f"s{r},active,{TS}" + ",v" * 50_000 + "\n" for r in range(100))
    answer = _ingest_in_child("status", wide)
    assert answer["grew_mb"] < 40 and answer["peak_mb"] < 400, answer
    assert answer["outcome"] == "refused" and "50,003 columns" in answer["message"]
    # Rows of 1 MB: parsed 4 MiB at a time, not all 40 in one chunk.
    long = tmp_path / "long.csv"
    with long.open("w") as handle:
        handle.write(HEADER + f"ok,active,{TS}\n")
        handle.writelines(f"{'x' * 1_000_000}{r},active,{TS}\n" for r in range(40))
    answer = _ingest_in_child("status", long, CHUNK_BYTES=4 << 20)
    assert answer["grew_mb"] < 50 and answer["peak_mb"] < 400, answer
    assert answer["skipped"] == {"store_id too long": 40}


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
