"""A report's formats (storemon/formats.py): each read back with its reference reader equals the
CSV row for row -- ids with leading zeros, 19 digits, spaces, commas, quotes, non-ASCII included."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import wait_for

from storemon import jobs
from storemon.formats import CSV, FORMATS, JSON, PARQUET, XLSX, About, FormatError, choose, convert, from_extension
from storemon.reports import write_csv

HOSTILE_IDS = [
    "007",
    "8419537941919820732",
    "0000000000000000001",
    " leading space",
    "trailing space ",
    "a,b",
    'say "hi"',
    "ünïcødé-店",
    "1e5",
    "=1+1",
    "-3",
    "TRUE",
    "2023-01-25",
    "12.50",
]
ABOUT = About(
    report_id="ab" * 16,
    now="2023-01-25T18:13:22.479220Z",
    data_version=3,
    rows=None,
    generated_at="2026-11-30T12:00:00Z",
)


def report(ids: list[str], seed: int = 1) -> pd.DataFrame:
    """A report frame as the engine makes it: figures rounded to 2 decimals, sorted by store_id."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"store_id": pd.Series(ids, dtype=object)})
    for name, top in (
        ("uptime_last_hour", 60),
        ("uptime_last_day", 24),
        ("uptime_last_week", 168),
        ("downtime_last_hour", 60),
        ("downtime_last_day", 24),
        ("downtime_last_week", 168),
    ):
        frame[name] = np.round(rng.uniform(0, top, len(ids)), 2)
    return frame.sort_values("store_id", kind="stable").reset_index(drop=True)


def csv_rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture(params=[HOSTILE_IDS, [f"{i:07d}" for i in range(60_000)]], ids=["hostile ids", "60,000 rows"])
def stored(request, tmp_path):
    path = write_csv(report(request.param), tmp_path / "report.csv")
    return path, csv_rows(path)


def as_text(value: float) -> str:
    return f"{value:.2f}"


def test_the_workbook_keeps_every_id_as_text_and_every_figure_as_a_number(stored, tmp_path):
    import openpyxl

    path, rows = stored
    out = convert(path, XLSX, tmp_path / "r.xlsx", ABOUT)
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames == ["report", "about"]
    sheet = book["report"]
    read = list(sheet.iter_rows())
    assert [c.value for c in read[0]] == rows[0]
    assert len(read) == len(rows)
    for cells, expected in zip(read[1:], rows[1:]):
        assert cells[0].data_type == "s" and cells[0].value == expected[0]
        assert all(c.data_type == "n" and c.number_format == "0.00" for c in cells[1:])
        assert [as_text(c.value) for c in cells[1:]] == expected[1:]
    about = {row[0].value: row[1].value for row in book["about"].iter_rows()}
    assert about["now"] == ABOUT.now and about["report_id"] == ABOUT.report_id
    assert about["data version (ingest ledger id)"] == 3 and "docs/report-rules.md" in about["rules"]
    book.close()


def test_the_workbook_header_is_frozen_filtered_and_sized_to_fit(tmp_path):
    import openpyxl

    path = write_csv(report(HOSTILE_IDS), tmp_path / "report.csv")
    sheet = openpyxl.load_workbook(convert(path, XLSX, tmp_path / "r.xlsx", ABOUT))["report"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:G{len(HOSTILE_IDS) + 1}"
    assert sheet.column_dimensions["A"].width >= max(len(i) for i in HOSTILE_IDS)
    assert all(sheet.column_dimensions[c].width >= len(sheet[f"{c}1"].value) for c in "BCDEFG")


SOFFICE = os.environ.get("STOREMON_SOFFICE") or shutil.which("soffice")


def test_libreoffice_opens_the_workbook_and_saves_every_id_back_exactly(tmp_path):
    """A real spreadsheet program: the workbook opened in LibreOffice Calc and saved as CSV."""
    if not SOFFICE:
        if os.environ.get("STOREMON_REQUIRE_LIBREOFFICE") == "1" or os.environ.get("CI"):
            pytest.fail("LibreOffice is required here but soffice was not found (scripts/with-libreoffice.sh)")
        pytest.skip("no LibreOffice (run scripts/with-libreoffice.sh make test to include this test)")
    path = write_csv(report(HOSTILE_IDS), tmp_path / "report.csv")
    convert(path, XLSX, tmp_path / "report.xlsx", ABOUT)
    subprocess.run(
        [
            SOFFICE,
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1",
            "--outdir",
            str(tmp_path / "out"),
            str(tmp_path / "report.xlsx"),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert csv_rows(tmp_path / "out" / "report.csv") == csv_rows(path)


def test_json_is_the_rows_as_objects_with_numbers(stored, tmp_path):
    path, rows = stored
    document = json.loads(convert(path, JSON, tmp_path / "r.json", ABOUT).read_text(encoding="utf-8"))
    assert (document["report_id"], document["now"], document["columns"]) == (ABOUT.report_id, ABOUT.now, rows[0])
    assert len(document["rows"]) == len(rows) - 1
    for got, expected in zip(document["rows"], rows[1:]):
        assert list(got) == rows[0] and got["store_id"] == expected[0]
        assert all(isinstance(got[name], float) for name in rows[0][1:])
        assert [as_text(got[name]) for name in rows[0][1:]] == expected[1:]


def test_parquet_has_string_ids_float_figures_and_now_in_its_metadata(stored, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, rows = stored
    table = pq.read_table(convert(path, PARQUET, tmp_path / "r.parquet", ABOUT))
    assert table.schema.field("store_id").type == pa.string()
    assert all(table.schema.field(name).type == pa.float64() for name in rows[0][1:])
    assert table.schema.metadata[b"now"] == ABOUT.now.encode()
    assert table.column_names == rows[0]
    ids = table.column("store_id").to_pylist()
    figures = [table.column(name).to_pylist() for name in rows[0][1:]]
    assert ids == [r[0] for r in rows[1:]]
    assert [[as_text(v) for v in row] for row in zip(*figures)] == [r[1:] for r in rows[1:]]


def test_csv_is_the_stored_file_byte_for_byte(stored, tmp_path):
    path, _ = stored
    assert convert(path, CSV, tmp_path / "copy.csv", ABOUT).read_bytes() == path.read_bytes()


def test_an_empty_report_converts_to_every_format(tmp_path):
    path = write_csv(report([]), tmp_path / "empty.csv")
    for fmt in FORMATS.values():
        assert convert(path, fmt, tmp_path / f"e.{fmt.extension}", ABOUT).stat().st_size > 0
    assert json.loads((tmp_path / "e.json").read_text())["rows"] == []


class Accept:
    """The part of werkzeug's MIMEAccept that :func:`choose` uses."""

    def __init__(self, header: str):
        from werkzeug.datastructures import MIMEAccept
        from werkzeug.http import parse_accept_header

        self.parsed = parse_accept_header(header, MIMEAccept)

    def __bool__(self):
        return bool(self.parsed)

    def best_match(self, offered):
        return self.parsed.best_match(offered)


@pytest.mark.parametrize(
    ("asked", "accept", "expected"),
    [
        (None, "", "csv"),
        (None, "*/*", "csv"),
        (None, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "csv"),  # a browser
        (None, "application/json", "json"),
        (None, "application/vnd.apache.parquet", "parquet"),
        (None, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        (None, "text/csv;q=0.5, application/json", "json"),
        ("xlsx", "application/json", "xlsx"),  # ?format= wins
        ("JSON", "", "json"),
    ],
)
def test_the_format_comes_from_the_query_then_the_accept_header(asked, accept, expected):
    assert choose(asked, Accept(accept)).name == expected


@pytest.mark.parametrize(("asked", "accept", "code"), [("pdf", "", 400), ("", "", 400), (None, "image/png", 406)])
def test_a_format_nobody_offers_is_400_or_406(asked, accept, code):
    with pytest.raises(FormatError) as caught:
        choose(asked, Accept(accept))
    assert caught.value.code == code


def test_the_file_name_picks_the_format():
    assert [
        from_extension(name).name for name in ("r.xlsx", "R.XLSX", "r.json", "r.parquet", "r.csv", "r.txt", "r")
    ] == ["xlsx", "xlsx", "json", "parquet", "csv", "csv", "csv"]


# --- over HTTP (GET /get_report), both databases -------------------------------------------------


@pytest.fixture
def complete(app, client, loaded):
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).mimetype == "text/csv"
    return report_id


def fetch(client, report_id: str, fmt: str | None = None, accept: str | None = None):
    query = f"?format={fmt}" if fmt else ""
    return client.get(f"/get_report/{report_id}{query}", headers={"Accept": accept} if accept else {}, buffered=True)


def rows_of(fmt: str, data: bytes) -> list[list[str]]:
    """The rows of a report in ``fmt`` as CSV text, read with the reference reader."""
    if fmt == "csv":
        return list(csv.reader(io.StringIO(data.decode())))
    if fmt == "json":
        document = json.loads(data)
        return [document["columns"]] + [[r["store_id"], *map(as_text, list(r.values())[1:])] for r in document["rows"]]
    if fmt == "xlsx":
        import openpyxl

        sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True)["report"]
        cells = [[c.value for c in row] for row in sheet.iter_rows()]
        return [cells[0]] + [[r[0], *map(as_text, r[1:])] for r in cells[1:]]
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    return [table.column_names] + [[r[0], *map(as_text, r[1:])] for r in zip(*table.to_pydict().values())]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_of_a_report_equals_its_csv(app, client, complete, fmt):
    expected = rows_of("csv", fetch(client, complete).data)
    response = fetch(client, complete, fmt)
    assert response.status_code == 200 and response.mimetype == FORMATS[fmt].media_type
    assert response.headers["Content-Disposition"] == f"attachment; filename=report_{complete}.{fmt}"
    assert response.headers["X-Report-Status"] == "Complete" and response.headers["X-Report-Now"]
    assert rows_of(fmt, response.data) == expected
    kept = jobs.report_path(app, complete, FORMATS[fmt])
    assert kept.is_file()  # made once, kept beside the CSV: the next request reads it
    stamp = kept.stat().st_mtime_ns
    assert fetch(client, complete, fmt).data == response.data and kept.stat().st_mtime_ns == stamp


def test_the_accept_header_chooses_when_the_query_does_not(client, complete):
    assert fetch(client, complete, accept="application/json").mimetype == "application/json"
    assert fetch(client, complete, accept=XLSX.media_type).mimetype == XLSX.media_type
    assert fetch(client, complete, "parquet", accept="application/json").mimetype == PARQUET.media_type
    assert fetch(client, complete, accept="*/*").mimetype == "text/csv"
    assert fetch(client, complete).mimetype == "text/csv"


def test_an_unknown_format_is_400_and_an_unacceptable_accept_is_406(client, complete):
    response = fetch(client, complete, "pdf")
    assert response.status_code == 400 and "unknown format 'pdf'" in response.get_json()["message"]
    response = fetch(client, complete, accept="image/png")
    assert response.status_code == 406 and response.is_json


def test_a_reused_report_and_a_csv_kept_only_in_the_database_give_every_format(app, client, complete):
    reused = client.post("/trigger_report").get_json()["report_id"]
    expected = rows_of("csv", fetch(client, complete).data)
    jobs.report_path(app, complete).unlink()  # as on a host that did not compute it
    for fmt in ("xlsx", "json", "parquet", "csv"):
        response = fetch(client, reused, fmt)
        assert response.status_code == 200, response.data[:200]
        assert response.headers["Content-Disposition"] == f"attachment; filename=report_{reused}.{fmt}"
        assert rows_of(fmt, response.data) == expected


def test_an_expired_report_takes_every_format_with_it(app, client, complete):
    for fmt in FORMATS:
        fetch(client, complete, fmt)
    app.config["REPORT_RETENTION_DAYS"] = 0
    with app.app_context():
        jobs.expire_reports(app)
    assert list(jobs.report_path(app, complete).parent.glob(f"report_{complete}.*")) == []
    assert fetch(client, complete, "xlsx").status_code == 410


def test_report_files_of_reports_expired_elsewhere_are_removed_here(app, client, complete, tmp_path):
    stray = jobs.report_path(app, "f" * 32, XLSX)  # a report this host converted, since deleted
    stray.write_bytes(b"x")
    with app.app_context():
        jobs.expire_reports(app)
    assert not stray.exists() and jobs.report_path(app, complete).is_file()


def test_the_command_line_writes_the_format_of_the_file_name_or_of_format(runner, loaded, tmp_path):
    result = runner.invoke(args=["report", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    expected = rows_of("csv", (tmp_path / "r.csv").read_bytes())
    for name, options, fmt in (
        ("r.xlsx", [], "xlsx"),
        ("r.parquet", [], "parquet"),
        ("r.out", ["--format", "json"], "json"),
        ("r.xlsx", ["--format", "csv"], "csv"),
    ):
        (tmp_path / name).unlink(missing_ok=True)
        result = runner.invoke(args=["report", "--out", str(tmp_path / name), *options])
        assert result.exit_code == 0, result.output
        assert (f" as {fmt} " in result.output) == (fmt != "csv")
        assert rows_of(fmt, (tmp_path / name).read_bytes()) == expected
    assert json.loads((tmp_path / "r.out").read_text())["report_id"] is None  # not a report job's
    assert (tmp_path / "r.xlsx").read_bytes() == (tmp_path / "r.csv").read_bytes()  # --format csv wins
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_the_dashboard_offers_every_format_on_the_report_page_and_the_recent_reports(client, complete):
    for page, where in ((f"/reports/{complete}", 'id="report-downloads"'), ("/", 'id="recent-reports"')):
        html = client.get(page).get_data(as_text=True)
        section = html[html.index(where) :]
        links = dict(re.findall(r'href="([^"]+)" download data-format="(\w+)"', section)[:4])
        assert sorted(links.values()) == sorted(FORMATS)
        for href, fmt in links.items():
            response = client.get(href.replace("&amp;", "&"), buffered=True)
            assert response.status_code == 200 and response.mimetype == FORMATS[fmt].media_type
            assert f"report_{complete}.{fmt}" in response.headers["Content-Disposition"]


def test_every_format_of_a_demo_report_equals_its_csv(engine, tmp_path):
    from storemon.demo import generate_demo_data
    from storemon.ingest import ingest_files
    from storemon.reports import build_report

    generate_demo_data(tmp_path / "feeds", stores=300, days=8, seed=5)
    ingest_files(engine, tmp_path / "feeds")
    path = write_csv(build_report(engine).frame, tmp_path / "report.csv")
    expected = csv_rows(path)
    assert len(expected) == 301
    for fmt in ("xlsx", "json", "parquet"):
        out = convert(path, FORMATS[fmt], tmp_path / f"report.{fmt}", ABOUT)
        assert rows_of(fmt, out.read_bytes()) == expected, fmt
