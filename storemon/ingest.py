"""Ingestion: the four CSV feeds (docs/data-formats.md) -> rows in the database.

The pipeline of one file: recognise it, check the ledger, read it as text (every column a
string, nothing guessed) in chunks, have :mod:`storemon.parse` turn each chunk into typed columns
and bad rows, and have :mod:`storemon.storage` write them. A row that cannot be read is skipped
and counted by reason; a file that lacks a required column is refused before anything is
written. One file is one transaction: either all its valid rows are stored, or (error,
``strict`` refusal, crash) none are. The removal of a store's special date
(:func:`remove_special_date`) is recorded in the same ledger, as a change of that feed.

The module passes 600 lines with what a file's outcome needs -- its summary and its line in the
ledger, written beside the pipeline that fills them -- and the ledger's other change, a special
date removed.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import storage
from .config import default
from .parse import (
    FILE_PATTERNS,
    HOURS,
    KINDS,
    MAX_COLUMNS,
    MAX_EXAMPLES,
    MAX_ZONE,
    NOT_UTF8,
    PARSERS,
    SPECIAL,
    STATUS,
    TIMEZONES,
    TOO_MANY_HOURS,
    BadRow,
    HoursLimit,
    IngestError,
    KnownIds,
    quote,
    resolve_columns,
    store_id_reason,
)
from .scan import FileScan
from .times import DEFAULT_TIMEZONE, format_date, is_known_timezone, parse_date

log = logging.getLogger(__name__)

# The reader's chunks: at most this many bytes of rows and this many fields (rows x columns),
# whatever the rows' lengths, so that parsing takes memory in proportion to these, not the file.
CHUNK_BYTES = 32 << 20
CHUNK_CELLS = 1_000_000
SOURCES = ("cli", "http")


class IngestBusy(Exception):
    """Another ingest held the database longer than this one may wait: try again later."""

    retry_after = 30  # seconds suggested to the caller


class IngestReadOnly(Exception):
    """The database cannot be written."""


@dataclass
class FileSummary:
    """What ingesting one file did."""

    kind: str  # "status", "hours", "timezones" or "special_hours"
    path: str
    rows_read: int = 0  # data rows in the file (header excluded)
    rows_stored: int = 0  # distinct valid rows written (a key given twice in the file counts once)
    rows_changed: int | None = None  # polls/zones actually new or different; None for hours and special hours
    stores: int = 0  # distinct stores among the valid rows
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped
    examples: list[BadRow] = field(default_factory=list)  # the first few skipped rows
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time, reading to commit
    # The ingest ledger's view: content, what came of the file, and the ledger row.
    outcome: str = "stored"  # stored / unchanged (content already ingested) / refused / failed
    size: int = 0  # bytes
    sha256: str = ""
    source: str = "cli"
    ledger_id: int | None = None
    message: str | None = None  # for unchanged: when that content was stored before
    polls_span: tuple[int, int] | None = None  # status: earliest and latest poll written (UTC us)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "file": quote(Path(self.path).name),
            "rows_read": self.rows_read,
            "rows_stored": self.rows_stored,
            "rows_changed": self.rows_changed,
            "rows_skipped": self.rows_skipped,
            "stores": self.stores,
            "skipped": dict(self.skipped),
            "examples": [vars(b) for b in self.examples],
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "outcome": self.outcome,
            "message": self.message,
            "size": self.size,
            "sha256": self.sha256,
            "ledger_id": self.ledger_id,
        }

    def describe(self) -> str:
        """A few human-readable lines for the CLI."""
        if self.outcome == "unchanged":
            return f"{self.kind:9} {quote(Path(self.path).name)}: unchanged, not applied again ({self.message})"
        changed = "" if self.rows_changed is None else f" ({self.rows_changed:,} new or changed)"
        lines = [
            f"{self.kind:9} {quote(Path(self.path).name)}: {self.rows_read:,} rows read, "
            f"{self.rows_stored:,} stored{changed}, {self.rows_skipped:,} skipped, "
            f"{self.stores:,} stores, {self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s)"
        ]
        for reason, count in sorted(self.skipped.items()):
            where = [b.line for b in self.examples if b.reason == reason]
            at = f" (lines {', '.join(map(str, where))}{', ...' if count > len(where) else ''})"
            lines.append(f"  skipped {count:,} x {reason}{at if where else ''}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class IngestSummary:
    files: list[FileSummary] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"files": [f.to_dict() for f in self.files]}


ProgressCallback = Callable[[int, int], None]  # (bytes read so far, file size in bytes)


# ---------------------------------------------------------------------------------------------
# Finding files and columns


def find_files(folder: str | Path) -> dict[str, list[Path]]:
    """The recognised feed files in ``folder``, per kind, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"{folder}: not a folder")
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        name = path.name.lower()
        for kind, patterns in FILE_PATTERNS.items():
            if any(fnmatch.fnmatch(name, p.lower()) for p in patterns):
                found[kind].append(path)
                break
    return found


_PARSE_LOCK = threading.Lock()


def ingest_file(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    force: bool = False,
    chunk_rows: int = default("INGEST_CHUNK_ROWS"),
    progress: ProgressCallback | None = None,
    source: str = "cli",
    name: str | None = None,
    scan: FileScan | None = None,
    max_line_bytes: int = default("MAX_LINE_BYTES"),
    wait_seconds: float = default("INGEST_WAIT_SECONDS"),
) -> FileSummary:
    """Load one feed file in one transaction, record it in the ingest ledger, and say what happened.

    ``name`` is the file name shown and recorded (an upload's own name); ``scan`` its
    :class:`FileScan` when already made (an upload is scanned as it arrives). A file whose
    content was already stored for this feed is not applied again (outcome ``unchanged``)
    unless ``force``.

    Raises :class:`IngestError` (and stores nothing of the file) when it is unreadable, lacks a
    required column, or, with ``strict``, has an unreadable row; :class:`IngestBusy` when another
    ingest holds the database for more than ``wait_seconds``; :class:`IngestReadOnly` when the
    database cannot be written. Every outcome but busy is recorded in the ledger.
    """
    # One function on purpose: every outcome of a file is decided and recorded in its one try.
    if kind not in KINDS:
        raise ValueError(f"unknown feed kind {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{quote(path)}: no such file")
    name = name or path.name
    shown = quote(name)
    started_at = storage._utcnow()
    started = time.perf_counter()
    summary = FileSummary(kind=kind, path=name, source=source)
    try:
        scan = scan or FileScan.of_file(path, max_line_bytes)
        summary.size, summary.sha256 = scan.size, scan.sha256
        _check_scan(scan, shown, max_line_bytes)
        _check_width(path, shown)
        if scan.too_wide:
            raise IngestError(
                f"{shown}: refused, line {scan.too_wide:,} has more than {MAX_COLUMNS} fields (no feed row has that "
                "many: is this the right file?); nothing stored"
            )
        header = _read_header(path, shown)
        mapping = resolve_columns(kind, header, shown)
        if not force:
            with engine.connect() as conn:
                before = storage.ledger_find(conn, kind, scan.sha256)
            if before is not None:
                return _record_unchanged(engine, summary, before, started_at, started, wait_seconds)
        if not _PARSE_LOCK.acquire(timeout=max(wait_seconds, 0.001)):
            raise IngestBusy(f"another ingest in this process ran for more than {wait_seconds:g} s")
        try:
            with storage.write_transaction(engine, wait_seconds) as conn:
                _Load(kind, path, shown, header, mapping, scan, summary, strict, chunk_rows).run(conn, progress)
                summary.seconds = time.perf_counter() - started
                summary.ledger_id = storage.ledger_add(
                    conn, **_ledger_values(summary, "stored", started_at, _skip_note(summary))
                )
        finally:
            _PARSE_LOCK.release()
    except storage.DatabaseBusy as exc:
        raise IngestBusy(f"{shown}: not ingested, {exc}; nothing stored, try again later") from exc
    except storage.DatabaseReadOnly as exc:
        raise IngestReadOnly(f"{shown}: not ingested, the database is read-only ({exc})") from exc
    except IngestError as exc:
        _record_failure(engine, summary, "refused", str(exc), started_at, wait_seconds)
        raise
    except Exception as exc:
        _record_failure(engine, summary, "failed", f"{type(exc).__name__}: {exc}", started_at, wait_seconds)
        raise
    summary.outcome = "stored"
    log.debug("ingested %s: %s", shown, summary.describe().splitlines()[0])
    return summary


def _check_scan(scan: FileScan, name: str, max_line_bytes: int) -> None:
    """Refuse a file whose scan found a record over ``max_line_bytes`` or a stray quote."""
    if scan.long_line:
        raise IngestError(
            f"{name}: refused, the row starting on line {scan.long_line:,} is longer than {max_line_bytes:,} "
            "bytes: a quoted field runs on over the lines after it (is a quote left open?); nothing stored"
            if scan.long_spans
            else f"{name}: refused, line {scan.long_line:,} is longer than {max_line_bytes:,} bytes (no feed row is "
            "that long: is this the right file?); nothing stored"
        )
    if scan.stray_quote:
        raise IngestError(
            f"{name}: refused, line {scan.stray_quote:,} has a quote inside a field that does not start with "
            'one (a field holding quotes must be quoted, its quotes doubled: "12"" pizza"); nothing stored'
        )


def _check_width(path: Path, name: str) -> None:
    """Refuse a header of more than :data:`MAX_COLUMNS` fields before any CSV reader builds it.

    The header is read with Python's csv module, which keeps no more than the fields' text (a
    reader making columns of 100,000 header names takes minutes and gigabytes).
    """
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        try:
            fields = next(csv.reader(handle), [])
        except csv.Error as exc:
            raise IngestError(
                f"{name}: refused, its header is not readable CSV ({quote(exc)}); nothing stored"
            ) from exc
    if len(fields) > MAX_COLUMNS:
        raise IngestError(
            f"{name}: refused, its header has {len(fields):,} columns, more than the {MAX_COLUMNS} a feed file "
            f"may have (is this the right file?); it begins: {quote(', '.join(fields[:20]))}; nothing stored"
        )


def _read_header(path: Path, name: str) -> pd.Index:
    try:
        return pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8-sig", encoding_errors="surrogateescape").columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise IngestError(f"{name}: refused, not a readable CSV with a header row ({quote(exc)})") from exc


class _ChunkPlan:
    """How many rows the reader takes next: at most ``chunk_rows``, :data:`CHUNK_CELLS` fields and,
    after the scan's marks, :data:`CHUNK_BYTES` bytes of rows (at least one row)."""

    def __init__(self, scan: FileScan, width: int, chunk_rows: int):
        self.most = max(1, min(chunk_rows, CHUNK_CELLS // max(width, 1)))
        self.rows, self.bytes = scan.marks if scan.marks is not None else (None, None)

    def __call__(self, done: int) -> int:
        """Rows to read after the first ``done`` (the header is row 0)."""
        if self.rows is None:
            return self.most
        i = int(np.searchsorted(self.rows, done, side="right")) - 1
        j = int(np.searchsorted(self.bytes, self.bytes[i] + CHUNK_BYTES, side="right")) - 1
        if j == len(self.rows) - 1:  # the rest of the file fits
            return self.most
        return max(1, min(self.most, int(self.rows[j]) - done))


class _Load:
    """One file parsed chunk by chunk, its valid rows handed to the feed's writer.

    The reader takes the header as its row 0 and is given as many columns as the widest row
    has, so it reads every record as a row and skips none; the rows with more fields than the
    header are the ones the scan marked. (A CSV reader keeps the text of the rows it skips
    itself until its chunk is done, and its own skipping of given rows misreads some quoting.)
    """

    def __init__(
        self,
        kind,
        path: Path,
        name: str,
        header: pd.Index,
        mapping: dict[str, str],
        scan: FileScan,
        summary: FileSummary,
        strict: bool,
        chunk_rows: int,
    ):
        self.kind, self.path, self.name, self.header, self.scan = kind, path, name, header, scan
        self.summary, self.strict, self.chunk_rows = summary, strict, chunk_rows
        self.mapping = mapping
        self.positions = [header.get_loc(theirs) for theirs in mapping.values()]
        self.columns = max(len(header), scan.widest)
        self.writer = storage.FeedWriter.for_kind(kind, source=quote(Path(summary.path).name))
        self.known = KnownIds()
        self.hours_limit = {HOURS: HoursLimit(), SPECIAL: HoursLimit(day="date")}.get(kind)
        self.stores: set[str] = set()  # the hours' and zones' stores (the polls writer counts its own)
        self.wide_text = {
            record: f"{fields:,} fields where the header has {scan.width:,}" for record, fields in scan.wide_examples
        }
        self.plan = _ChunkPlan(scan, self.columns, chunk_rows)
        self.rows_done = 0

    def run(self, conn, progress: ProgressCallback | None) -> None:
        """Read, parse and write the whole file in the caller's transaction; fill in the summary."""
        summary, writer = self.summary, self.writer
        if self.kind == STATUS:  # ids of stores that have polls passed these checks when first stored
            self.known.good = writer.known_ids(conn)
        with self.path.open("rb") as handle:
            for rows, position in _read_ahead(self.parsed(handle)):
                if len(rows):
                    self.count_changed(writer.write(conn, rows))
                if progress:
                    progress(position, self.scan.size)
        if self.strict and summary.rows_skipped:
            raise IngestError(f"{self.name}: refused (--strict): {_skip_note(summary)}; nothing stored")
        self.count_changed(writer.finish(conn))
        if self.rows_done != self.scan.records:  # the scan's marks would be another row's: store nothing
            raise IngestError(
                f"{self.name}: refused, the CSV reader read {max(self.rows_done - 1, 0):,} rows where a count of the "
                f"file's line breaks and quotes finds {self.scan.records - 1:,}; nothing stored"
            )
        summary.rows_stored = writer.rows_stored
        summary.polls_span = writer.span
        if self.kind == STATUS:
            summary.stores = writer.stores
            if not writer.distinct.exact:
                summary.warnings.append(
                    f"more than {storage.DistinctKeys.EXACT_UP_TO:,} distinct polls, not in time order: rows_stored "
                    "counts a poll repeated in another part of the file again"
                )
        else:
            summary.stores = len(self.stores)
        if self.kind == TIMEZONES:
            summary.warnings += _unknown_zone_warnings(writer.zones_seen)
        if self.kind in (STATUS, TIMEZONES) and summary.rows_changed is None:
            summary.rows_changed = 0

    def count_changed(self, changed: int | None) -> None:
        if changed is not None:
            self.summary.rows_changed = (self.summary.rows_changed or 0) + changed

    def parsed(self, handle) -> Iterator[tuple[pd.DataFrame, int]]:
        """The file's valid rows chunk by chunk, with the bytes read so far; bad rows counted."""
        header = self.header
        try:
            with pd.read_csv(
                handle,
                header=None,
                names=range(self.columns) if self.columns > len(header) else None,
                dtype=str,
                index_col=False,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
                encoding_errors="surrogateescape",
                on_bad_lines="error",
                chunksize=self.chunk_rows,
            ) as reader:
                while True:
                    try:
                        chunk = reader.get_chunk(self.plan(self.rows_done) + (self.rows_done == 0))  # and the header
                    except StopIteration:
                        break
                    self.rows_done += len(chunk)
                    if chunk.index[0] == 0:  # row 0 is the header
                        chunk = chunk.iloc[1:]
                    if len(chunk):
                        yield self.valid_rows(chunk), handle.tell()
        except pd.errors.ParserError as exc:
            raise IngestError(f"{self.name}: refused, unreadable CSV ({quote(exc)}); nothing stored") from exc

    def valid_rows(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """One chunk's rows that can be stored, typed; the others counted by their first reason."""
        summary, scan = self.summary, self.scan
        summary.rows_read += len(chunk)
        bad = np.zeros(len(chunk), dtype=bool)
        reasons = []
        if scan.wide:
            bad |= scan.wide_mask(int(chunk.index[0]), len(chunk))
            reasons.append(pd.Series("too many fields", index=chunk.index[bad], dtype=object))
        if not scan.utf8:  # only then can a field hold an undecodable byte
            mask = np.zeros(len(chunk), dtype=bool)
            for column in chunk.columns:
                mask |= chunk[column].str.contains(NOT_UTF8, regex=True).to_numpy(dtype=bool)
            mask &= ~bad
            reasons.append(pd.Series("not UTF-8", index=chunk.index[mask], dtype=object))
            bad |= mask
        raw = chunk.iloc[:, self.positions].set_axis(list(self.mapping), axis=1)
        rows, parse_reasons = PARSERS[self.kind](raw[~bad] if bad.any() else raw, self.known)
        reasons.append(parse_reasons)
        if self.hours_limit is not None:
            beyond = self.hours_limit.over(rows)
            if beyond.any():
                reasons.append(pd.Series(TOO_MANY_HOURS, index=rows.index[beyond], dtype=object))
                rows = rows[~beyond]
        reasons = [r for r in reasons if len(r)]
        if reasons:
            _count_bad_rows(summary, chunk, pd.concat(reasons), scan, self.wide_text)
        if self.strict and summary.rows_skipped:
            raise _strict_refusal(self.name, summary)
        if self.kind != STATUS and len(rows):
            self.stores.update(rows["store_id"].unique())
        return rows


def _strict_refusal(name: str, summary: FileSummary) -> IngestError:
    bad = summary.examples[0]
    return IngestError(f"{name}: refused (--strict): line {bad.line}: {bad.reason}: {bad.text!r}; nothing stored")


def _read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """Iterate ``items`` in a thread of its own, up to ``depth`` items ahead of the caller.

    An ingest parses the next chunk while the database stores this one: SQLite, numpy's sorts
    and pandas' CSV tokenizer release the GIL, so the two share the machine's cores (about a
    sixth off a first load on two cores). Items keep their order; an exception in ``items`` is
    raised here; if the caller stops early, the thread stops after the item it is on.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                handoff.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator left early closes what it opened, in this thread
                close()

    thread = threading.Thread(target=run, name="storemon-ingest-parse", daemon=True)
    thread.start()
    try:
        while True:
            what, value = handoff.get()
            if what == "item":
                yield value
            elif what == "done":
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


def _count_bad_rows(
    summary: FileSummary, chunk: pd.DataFrame, reasons: pd.Series, scan: FileScan, texts: dict[int, str]
) -> None:
    """Count a chunk's bad rows by reason, and keep the :data:`MAX_EXAMPLES` first of the file
    (``texts``: what to show for some rows instead of their fields, which are shown up to the
    header's width)."""
    for reason, count in reasons.value_counts().items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + int(count)
    found = [
        BadRow(
            line=scan.line_of(int(index)),
            reason=str(reason),
            text=texts.get(int(index)) or quote(",".join(str(v) for v in chunk.loc[index].tolist()[: scan.width])),
        )
        for index, reason in reasons.sort_index().head(MAX_EXAMPLES).items()
    ]
    summary.examples = sorted(summary.examples + found, key=lambda bad: bad.line)[:MAX_EXAMPLES]


def _skip_note(summary: FileSummary) -> str | None:
    if not summary.skipped:
        return None
    return "skipped " + ", ".join(f"{n:,} x {reason}" for reason, n in sorted(summary.skipped.items()))


def _ledger_values(summary: FileSummary, outcome: str, started_at, message: str | None) -> dict:
    return dict(
        kind=summary.kind,
        file_name=quote(Path(summary.path).name),
        size=summary.size,  # at most 255 characters
        sha256=summary.sha256,
        rows_read=summary.rows_read,
        rows_stored=summary.rows_stored,
        rows_skipped=summary.rows_skipped,
        outcome=outcome,
        message=message,
        source=summary.source,
        started_at=started_at,
        polls_from_us=summary.polls_span[0] if outcome == "stored" and summary.polls_span else None,
        polls_to_us=summary.polls_span[1] if outcome == "stored" and summary.polls_span else None,
    )


def _record_unchanged(engine, summary, before, started_at, started, wait_seconds) -> FileSummary:
    when = before["finished_at"]
    when = when.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(when, "strftime") else str(when)
    summary.outcome = "unchanged"
    summary.rows_changed = None if summary.kind in (HOURS, SPECIAL) else 0
    summary.message = (
        f"this content was already ingested as {quote(before['file_name'], 80)} on {when} "
        f"(ledger #{before['id']}); force re-applies it"
    )
    summary.seconds = time.perf_counter() - started
    try:
        with storage.write_transaction(engine, wait_seconds) as conn:
            summary.ledger_id = storage.ledger_add(
                conn, **_ledger_values(summary, "unchanged", started_at, summary.message)
            )
    except storage.DatabaseBusy:
        pass  # nothing was going to change; the ledger line is only a note
    return summary


def _record_failure(engine, summary, outcome, message, started_at, wait_seconds) -> None:
    """Note a refused or failed file in the ledger (its rows were rolled back)."""
    summary.outcome = outcome
    try:
        with storage.write_transaction(engine, wait_seconds) as conn:
            summary.ledger_id = storage.ledger_add(
                conn, **_ledger_values(summary, outcome, started_at, quote(message, 500))
            )
    except Exception:  # noqa: BLE001 -- the ledger must not hide the file's own error
        log.warning("could not record the %s ingest of %s in the ledger", outcome, quote(summary.path), exc_info=True)


def _unknown_zone_warnings(zones: set[str]) -> list[str]:
    unknown = sorted(z for z in zones if not is_known_timezone(z))
    if not unknown:
        return []
    shown = ", ".join(quote(z, MAX_ZONE) for z in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    return [f"{len(unknown)} unknown time zone name(s), reported as {DEFAULT_TIMEZONE}: {shown}"]


# ---------------------------------------------------------------------------------------------
# Several files


def ingest_files(
    engine: Engine,
    folder: str | Path | None = None,
    *,
    status: Iterable[str | Path] = (),
    hours: Iterable[str | Path] = (),
    timezones: Iterable[str | Path] = (),
    special: Iterable[str | Path] = (),
    strict: bool = False,
    force: bool = False,
    chunk_rows: int = 250_000,
    progress_factory: Callable[[str, Path], ProgressCallback | None] | None = None,
    on_file: Callable[[FileSummary], None] | None = None,
    **options,
) -> IngestSummary:
    """Ingest a folder's recognised files and/or named files: zones, then hours, then special
    hours, then polls.

    Each file is its own transaction; the first refused file stops the run with
    :class:`IngestError` (files before it stay stored). ``on_file`` is called with each file's
    summary as soon as it is done; ``options`` go to :func:`ingest_file`.
    """
    plan: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    if folder is not None:
        for kind, paths in find_files(folder).items():
            plan[kind] += paths
        if not any(plan.values()):
            raise IngestError(
                f"{folder}: no recognised CSV files (expected names like store_status.csv, "
                "menu_hours.csv, timezones.csv, special_hours.csv)"
            )
    plan[STATUS] += [Path(p) for p in status]
    plan[HOURS] += [Path(p) for p in hours]
    plan[TIMEZONES] += [Path(p) for p in timezones]
    plan[SPECIAL] += [Path(p) for p in special]
    if not any(plan.values()):
        raise IngestError("nothing to ingest: give a folder or --status/--hours/--timezones/--special files")

    summary = IngestSummary()
    for kind in (TIMEZONES, HOURS, SPECIAL, STATUS):
        for path in plan[kind]:
            progress = progress_factory(kind, path) if progress_factory else None
            summary.files.append(
                ingest_file(
                    engine, kind, path, strict=strict, force=force, chunk_rows=chunk_rows, progress=progress, **options
                )
            )
            if on_file:
                on_file(summary.files[-1])
    return summary


# ---------------------------------------------------------------------------------------------
# One store's special dates: listed, and one removed


def special_dates(engine: Engine, store_id: str) -> pd.DataFrame:
    """One store's special-hours rows as :func:`storemon.storage.special_of_store` gives them
    (date, start_s, end_s, source); none for an id no feed row can have (a control character, a
    byte that was not UTF-8: a database may refuse to even look it up)."""
    if store_id_reason(store_id) is not None:
        return pd.DataFrame(
            {
                "date": np.empty(0, np.int64),
                "start_s": np.empty(0, np.int64),
                "end_s": np.empty(0, np.int64),
                "source": np.empty(0, object),
            }
        )
    with engine.connect() as conn:
        return storage.special_of_store(conn, store_id)


class NoSpecialDate(LookupError):
    """The store has no special-hours row on that date: nothing to remove."""


@dataclass
class SpecialRemoval:
    """What removing one store's special date did."""

    store_id: str
    date: str  # YYYY-MM-DD
    removed: pd.DataFrame  # the rows removed: date, start_s, end_s (-1 and -1: closed), source
    ledger_id: int

    @property
    def rows_removed(self) -> int:
        return len(self.removed)


# A removal reads no file: its ledger row has the size and sha256 of no bytes (no feed file is
# empty -- it has a header -- so no file's content is taken for it).
NO_CONTENT_SHA256 = hashlib.sha256(b"").hexdigest()


def remove_special_date(
    engine: Engine,
    store_id: str,
    date: str,
    *,
    source: str = "cli",
    wait_seconds: float = default("INGEST_WAIT_SECONDS"),
) -> SpecialRemoval:
    """Remove a store's special hours on one date (``YYYY-MM-DD``): its weekly hours apply to it
    again. One transaction: the rows go and the ingest ledger gains a ``special_hours`` row
    (outcome ``stored``, file name ``remove <store> <date>``, ``rows_stored`` the rows removed),
    so the data version moves.

    Raises ``ValueError`` for a date that is not one (:func:`~storemon.times.parse_date`),
    :class:`NoSpecialDate` when the store has no special hours that date (nothing is recorded
    then), :class:`IngestBusy` / :class:`IngestReadOnly` as :func:`ingest_file` does.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    day = parse_date(date)
    shown = f"{quote(store_id)!r} on {format_date(day)}"
    nothing = f"store {quote(store_id)!r} has no special hours on {format_date(day)}: nothing to remove"
    if store_id_reason(store_id) is not None:  # no row can have it
        raise NoSpecialDate(nothing)
    started_at = storage._utcnow()
    try:
        with storage.write_transaction(engine, wait_seconds) as conn:
            rows = storage.special_of_store(conn, store_id)
            rows = rows[rows["date"] == day].reset_index(drop=True)
            removed = storage.remove_special(conn, store_id, day)
            if not removed:
                raise NoSpecialDate(nothing)
            ledger_id = storage.ledger_add(
                conn,
                kind=SPECIAL,
                file_name=quote(f"remove {store_id} {format_date(day)}"),
                size=0,
                sha256=NO_CONTENT_SHA256,
                rows_read=0,
                rows_stored=removed,
                rows_skipped=0,
                outcome="stored",
                message=f"removed {removed:,} special-hours row(s): the weekly hours apply to that date again",
                source=source,
                started_at=started_at,
            )
    except storage.DatabaseBusy as exc:
        raise IngestBusy(f"special hours of store {shown}: not removed, {exc}; try again later") from exc
    except storage.DatabaseReadOnly as exc:
        raise IngestReadOnly(f"special hours of store {shown}: not removed, the database is read-only ({exc})") from exc
    return SpecialRemoval(store_id=store_id, date=format_date(day), removed=rows, ledger_id=ledger_id)
