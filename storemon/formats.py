"""A finished report in the formats people open: CSV, an Excel workbook, JSON and Parquet.

The report is computed once and stored as CSV (:func:`storemon.reports.write_csv`); every other
format is made from that CSV, read :data:`CHUNK_ROWS` rows at a time, so the memory a
conversion takes does not grow with the number of stores. Nothing here knows Flask or SQL: a
path and a :class:`About` in, a file out (written to a temporary name, then renamed).

* ``xlsx`` -- sheet ``report``: ``store_id`` as text cells (every id exactly as stored: ``007``
  and 19-digit ids are not turned into numbers), the figures as numbers shown with 2 decimals,
  the header row frozen and filtered, columns sized to fit; sheet ``about``: what the report is.
  Written by XlsxWriter in constant-memory mode (rows go to disk as they are written).
* ``json`` -- ``{"report_id", "now", "columns", "rows": [{column: value}, ...]}``, figures as
  numbers, written a chunk of rows at a time.
* ``parquet`` -- ``store_id`` string, figures float64; ``now`` and ``report_id`` in the file's
  key-value metadata; a row group per chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CHUNK_ROWS = 50_000  # report rows read from the CSV at a time
ID_WIDTH_MAX = 40  # widest store_id column in the workbook, in characters
RULES = (
    "Uptime and downtime of each store inside its business hours, the time between polls "
    "filled by the nearest poll: last hour in minutes, last day and last week in hours, "
    "2 decimals (docs/report-rules.md)."
)


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str

    @property
    def extension(self) -> str:
        return self.name


CSV = Format("csv", "text/csv")
XLSX = Format("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
JSON = Format("json", "application/json")
PARQUET = Format("parquet", "application/vnd.apache.parquet")
FORMATS = {f.name: f for f in (CSV, XLSX, JSON, PARQUET)}  # the first is the default


class FormatError(ValueError):
    """No format can answer the request; ``code`` is the HTTP status (400 or 406)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def choose(asked: str | None, accept) -> Format:
    """The format named by ``?format=`` (``asked``), else the best one the ``Accept`` header
    takes (``accept``: werkzeug's :class:`~werkzeug.datastructures.MIMEAccept`), else CSV.

    Raises :class:`FormatError`: 400 for an unknown ``?format=``, 406 for an ``Accept`` header
    that takes none of the four.
    """
    if asked is not None:
        if asked.lower() not in FORMATS:
            raise FormatError(400, f"unknown format {asked[:40]!r}: use one of {', '.join(FORMATS)}")
        return FORMATS[asked.lower()]
    if not accept:
        return CSV
    best = accept.best_match([f.media_type for f in FORMATS.values()])
    if best is None:
        raise FormatError(
            406,
            "the Accept header takes none of the report's formats: "
            + ", ".join(f.media_type for f in FORMATS.values()),
        )
    return next(f for f in FORMATS.values() if f.media_type == best)


def from_extension(path: str | Path) -> Format:
    """The format a file name asks for (``r.xlsx``); CSV for any other extension."""
    return FORMATS.get(Path(path).suffix.lower().lstrip("."), CSV)


@dataclass
class About:
    """What a report is, written beside its rows (the workbook's ``about`` sheet, metadata)."""

    report_id: str | None  # None: not a report job's (the command line's)
    now: str  # ISO 8601 UTC
    as_of: str | None = None  # the as_of asked for, if any
    periods: str = "hour, day, week"
    data_version: int | None = None  # the ingest ledger's last stored id the report saw
    rows: int | None = None
    generated_at: str | None = None  # ISO 8601 UTC

    def items(self) -> list[tuple[str, object]]:
        return [
            ("report_id", self.report_id or ""),
            ("now", self.now),
            ("as_of", self.as_of or ""),
            ("periods", self.periods),
            ("data version (ingest ledger id)", self.data_version),
            ("rows", self.rows),
            ("generated at", self.generated_at or ""),
            ("rules", RULES),
        ]


def read_chunks(csv_path: str | Path) -> Iterator[pd.DataFrame]:
    """The report CSV, :data:`CHUNK_ROWS` rows at a time: ``store_id`` text exactly as written,
    figures float64."""
    with pd.read_csv(
        csv_path, dtype={"store_id": str}, keep_default_na=False, na_filter=False, chunksize=CHUNK_ROWS
    ) as reader:
        for chunk in reader:
            figures = chunk.columns[1:]
            chunk[figures] = chunk[figures].astype("float64")
            yield chunk


def columns_of(csv_path: str | Path) -> list[str]:
    with open(csv_path, encoding="utf-8") as handle:
        return handle.readline().rstrip("\n").split(",")


def convert(csv_path: str | Path, fmt: Format, out: str | Path, about: About) -> Path:
    """Write the report at ``csv_path`` as ``fmt`` to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        WRITERS[fmt.name](Path(csv_path), Path(tmp), about)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _copy(csv_path: Path, out: Path, about: About) -> None:
    shutil.copyfile(csv_path, out)


def _xlsx(csv_path: Path, out: Path, about: About) -> None:
    import xlsxwriter

    columns = columns_of(csv_path)
    id_width = max([len(columns[0])] + [int(c["store_id"].str.len().max()) for c in read_chunks(csv_path) if len(c)])
    with xlsxwriter.Workbook(
        str(out),
        {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    ) as book:
        sheet = book.add_worksheet("report")
        bold, text, figure = (
            book.add_format({"bold": True}),
            book.add_format({"num_format": "@"}),
            book.add_format({"num_format": "0.00"}),
        )
        sheet.set_column(0, 0, min(id_width, ID_WIDTH_MAX) + 2, text)
        for col, name in enumerate(columns[1:], start=1):
            sheet.set_column(col, col, len(name) + 2, figure)
        sheet.write_row(0, 0, columns, bold)
        sheet.freeze_panes(1, 0)
        row = 0
        for chunk in read_chunks(csv_path):
            ids = chunk["store_id"].tolist()
            values = chunk[columns[1:]].to_numpy().tolist()
            for store_id, figures in zip(ids, values):
                row += 1
                sheet.write_string(row, 0, store_id, text)
                for col, value in enumerate(figures, start=1):
                    sheet.write_number(row, col, value, figure)
        sheet.autofilter(0, 0, row, len(columns) - 1)
        sheet.ignore_errors({"number_stored_as_text": f"A2:A{max(row, 1) + 1}"})
        info = book.add_worksheet("about")
        info.set_column(0, 0, 32)
        info.set_column(1, 1, 100)
        for line, (key, value) in enumerate(about.items()):
            info.write_string(line, 0, key, bold)
            if isinstance(value, (int, float)):
                info.write_number(line, 1, value)
            else:
                info.write_string(line, 1, "" if value is None else str(value))


def _json(csv_path: Path, out: Path, about: About) -> None:
    columns = columns_of(csv_path)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(
            f'{{"report_id": {json.dumps(about.report_id)}, "now": {json.dumps(about.now)}, '
            f'"columns": {json.dumps(columns)}, "rows": ['
        )
        first = True
        for chunk in read_chunks(csv_path):
            if len(chunk) == 0:
                continue
            rows = json.dumps(chunk.to_dict("records"), ensure_ascii=False)[1:-1]
            handle.write(rows if first else ", " + rows)
            first = False
        handle.write("]}\n")


def _parquet(csv_path: Path, out: Path, about: About) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = columns_of(csv_path)
    schema = pa.schema(
        [pa.field(columns[0], pa.string(), nullable=False)]
        + [pa.field(name, pa.float64(), nullable=False) for name in columns[1:]],
        metadata={"now": about.now, **({"report_id": about.report_id} if about.report_id else {})},
    )
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in read_chunks(csv_path):
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))


WRITERS = {"csv": _copy, "xlsx": _xlsx, "json": _json, "parquet": _parquet}
