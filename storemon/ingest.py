"""Ingestion: the three CSV feeds (docs/data-formats.md) -> rows in the database.

Each file is read as text (every column a string, nothing guessed), in chunks, and converted by
vectorised parsers. A row that cannot be read is skipped and counted by reason; a file that lacks
a required column is refused before anything is written. One file is one transaction: either all
its valid rows are stored, or (error, ``strict`` refusal, crash) none are.

The database writes themselves live in :mod:`storemon.storage`; this module only decides *what*
to write.
"""

from __future__ import annotations

import codecs
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
import re

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import storage
from .demo import UNKNOWN_ZONE as DEMO_UNKNOWN_ZONE
from .timezones import is_known_timezone

log = logging.getLogger(__name__)

STATUS, HOURS, TIMEZONES = "status", "hours", "timezones"
KINDS = (STATUS, HOURS, TIMEZONES)

# File names recognised in a folder (matched case-insensitively), per feed.
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    STATUS: ("store_status*.csv", "store status*.csv"),
    HOURS: ("menu_hours*.csv", "menu hours*.csv", "business_hours*.csv", "business hours*.csv"),
    TIMEZONES: ("timezones*.csv", "store_timezone*.csv", "bq-results-*.csv"),
}

# Required columns per feed: our name -> the header names accepted for it (case-insensitive).
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    STATUS: {
        "store_id": ("store_id",),
        "status": ("status",),
        "timestamp_utc": ("timestamp_utc",),
    },
    HOURS: {
        "store_id": ("store_id",),
        "day": ("dayofweek", "day", "day_of_week"),
        "start_time_local": ("start_time_local",),
        "end_time_local": ("end_time_local",),
    },
    TIMEZONES: {
        "store_id": ("store_id",),
        "timezone_str": ("timezone_str",),
    },
}

MAX_EXAMPLES = 5  # bad rows quoted (with line numbers) per file
MAX_QUOTE = 200  # characters of any value from a file (row, header, name) quoted in a message
MAX_STORE_ID = 255  # characters; a longer store_id is a bad row
MAX_COLUMNS = 64  # fields of the header or a row; a file with more is refused (the feeds have 2 to 4)
MAX_ZONE = 64  # characters of a timezone_str; a longer one is a bad row (IANA names have at most 32)
MAX_HOURS_PER_DAY = 50  # distinct business-hours rows kept per store and weekday; more are bad rows
# The reader's chunks: at most this many bytes of rows and this many fields (rows x columns),
# whatever the rows' lengths, so that parsing takes memory in proportion to these, not the file.
CHUNK_BYTES = 32 << 20
CHUNK_CELLS = 1_000_000
# A store_id that a spreadsheet would run as a formula, or that holds control characters
# (tab, CR, LF, NUL, ...), is refused: reports are opened in Excel, and ids travel in CSV cells.
UNSAFE_ID_START = ("=", "+", "-", "@")
_CONTROL = r"[\x00-\x1f\x7f]"
_CONTROL_RE = re.compile(_CONTROL)
_NOT_UTF8 = r"[\udc80-\udcff]"  # bytes that were not UTF-8, as Python's surrogateescape keeps them
_TIME_PATTERN = r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$"
SOURCES = ("cli", "http")


class IngestError(Exception):
    """A file was refused as a whole (missing column, unreadable, or a bad row with strict)."""


class IngestBusy(Exception):
    """Another ingest held the database longer than this one may wait: try again later."""

    retry_after = 30  # seconds suggested to the caller


class IngestReadOnly(Exception):
    """The database cannot be written."""


def quote(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` made safe to show: at most ``limit`` characters of it, undecodable bytes shown as
    ``\\xNN`` (counted as the four characters they take), and its length when it is cut."""
    text = str(text)
    shown = text[:limit]
    while True:
        safe = _escaped(shown)
        if len(safe) <= limit:
            break
        shown = shown[: len(shown) - (len(safe) - limit + 3) // 4 - 1]
    return safe + (f"... ({len(text):,} characters)" if len(shown) < len(text) else "")


def _escaped(text: str) -> str:
    try:  # bytes that were not UTF-8, kept by Python's surrogateescape
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


@dataclass
class BadRow:
    line: int  # line number in the file; the header is line 1
    reason: str
    text: str  # the row's fields joined by commas, as read


@dataclass
class FileScan:
    """What one pass over a file's bytes tells before it is parsed.

    ``sha256`` names the content for the ingest ledger; ``utf8`` says whether every byte is
    UTF-8 (if not, the rows holding other bytes are found and skipped).

    The bytes are also cut into CSV records as the CSV reader cuts them: a record ends at a line
    break (LF, CRLF or CR) outside quotes, so a quoted field that spans lines belongs to one
    record. Quotes are followed as RFC 4180 has them: a field is quoted when it starts with a
    quote, and a quote inside it is doubled. ``stray_quote`` is the first line holding a quote
    inside a field that does not start with one (0: none) -- CSV readers take such a quote
    literally, a count of quotes does not, so such a file is refused. ``long_line`` is the line
    on which the first record longer than ``max_line`` bytes starts (0: none), ``long_spans``
    whether that record runs over several lines: such a file is refused too, since no feed row
    is that long and parsing it would take memory in proportion.

    ``width`` is the header's number of fields, ``widest`` the most fields of any record, and
    ``too_wide`` the line of the first record with more than :data:`MAX_COLUMNS` fields (0:
    none; such a file is refused). ``wide`` counts the records with more fields than the header,
    ``wide_bits`` marks them (bit per record, kept only for the pieces of the file that have
    some) and ``wide_examples`` gives (record, fields) of the first few; the header is record 0.
    ``multiline`` holds (record, extra lines) for the first :data:`MAX_MULTILINE` records that
    span lines, so that rows get their line numbers. ``marks`` are (records, their bytes)
    cumulated at points along the file: the reader's chunks are cut from them.
    """

    size: int = 0
    sha256: str = ""
    utf8: bool = True
    stray_quote: int = 0
    long_line: int = 0
    long_spans: bool = False
    lines: int = 0  # line breaks, quoted ones included
    records: int = 0  # the header included
    width: int = 0
    widest: int = 0
    too_wide: int = 0
    wide: int = 0
    wide_bits: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (first record, records, bits)
    wide_examples: list[tuple[int, int]] = field(default_factory=list)
    multiline: list[tuple[int, int]] = field(default_factory=list)
    marks: tuple[np.ndarray, np.ndarray] | None = None
    _lookup: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of_file(cls, path: str | Path, max_line: int, block: int = 1 << 20) -> "FileScan":
        scanner = Scanner(max_line)
        with open(path, "rb") as handle:
            while data := handle.read(block):
                scanner.update(data)
        return scanner.finish()

    def line_of(self, record: int) -> int:
        """The line on which ``record`` starts (the header's is 1); exact up to the
        :data:`MAX_MULTILINE`-th record that spans lines."""
        if not self.multiline:
            return record + 1
        if "lines" not in self._lookup:
            self._lookup["lines"] = (np.array([r for r, _ in self.multiline]),
                                     np.cumsum([0] + [e for _, e in self.multiline]))
        spanning, extra = self._lookup["lines"]
        return record + 1 + int(extra[np.searchsorted(spanning, record)])

    def wide_mask(self, first: int, count: int) -> np.ndarray:
        """Which of the records ``first`` .. ``first + count - 1`` have more fields than the header."""
        mask = np.zeros(count, dtype=bool)
        for start, records, bits in self.wide_bits:
            lo, hi = max(start, first), min(start + records, first + count)
            if lo < hi:
                mask[lo - first:hi - first] = np.unpackbits(bits, count=records).astype(bool)[lo - start:hi - start]
        return mask


SCAN_PIECE = 1 << 20  # bytes the scanner looks at in one step; smaller writes are gathered first
MAX_MULTILINE = 100_000  # records spanning lines remembered per file (for line numbers)
_LF, _CR, _QUOTE, _COMMA = 10, 13, 34, 44


class Scanner:
    """Builds a :class:`FileScan` from blocks of bytes (an upload is scanned as it arrives).

    A step looks at :data:`SCAN_PIECE` bytes in a few vectorised passes: one finds the commas
    and line breaks together; only a piece holding a quote (or starting inside a quoted field)
    also finds its quotes, and drops the separators that an odd number of quotes precede.
    """

    def __init__(self, max_line: int):
        self.max_line = max_line
        self.hash = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.scan = FileScan()
        self.pending = bytearray()  # bytes gathered towards a piece
        self.quoted = 0  # 1: the bytes scanned end inside a quoted field
        self.tail = b""  # their last two bytes (a CR ends a record, the LF right after it does not)
        self.current = 0  # bytes of the record being read
        self.commas = 0  # its separators outside quotes
        self.start_line = 1  # the line it starts on
        self.records_bytes = 0  # bytes of the records counted
        self.marks: list[tuple[int, int]] = [(0, 0)]
        self.masks = [np.empty(SCAN_PIECE, dtype=bool) for _ in range(3)]

    def update(self, data: bytes) -> None:
        if not self.pending and len(data) == SCAN_PIECE and isinstance(data, bytes):
            self._step(data)
            return
        self.pending += data
        whole = len(self.pending) - len(self.pending) % SCAN_PIECE
        if whole:
            pieces = bytes(self.pending[:whole])
            del self.pending[:whole]
            for at in range(0, whole, SCAN_PIECE):
                self._step(pieces[at:at + SCAN_PIECE])

    def finish(self) -> FileScan:
        if self.pending:
            self._step(bytes(self.pending))
            self.pending = bytearray()
        scan = self.scan
        if scan.utf8:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                scan.utf8 = False
        scan.sha256 = self.hash.hexdigest()
        # A last record without a line break (the LF of a final CRLF is no record: its byte is
        # the last record's).
        if self.current == 1 and self.tail == b"\r\n":
            self.records_bytes += 1
        elif not (scan.long_line or scan.stray_quote) and (self.current or self.commas):
            self._count(np.array([self.current]), np.array([self.commas]), self.current)
            if self.start_line <= scan.lines:
                self._note_multiline(scan.records, scan.lines + 1 - self.start_line)
            scan.records += 1
        self.marks.append((self.scan.records, self.records_bytes))
        scan.marks = (np.array([m[0] for m in self.marks]), np.array([m[1] for m in self.marks]))
        return scan

    def _step(self, piece: bytes) -> None:
        scan = self.scan
        scan.size += len(piece)
        self.hash.update(piece)
        if scan.utf8 and not (piece.isascii() and not self.decoder.getstate()[0]):
            try:
                self.decoder.decode(piece)
            except UnicodeDecodeError:
                scan.utf8 = False
        after_cr = self.tail.endswith(b"\r")
        tail, self.tail = self.tail, (self.tail + piece[-2:])[-2:]
        if scan.long_line or scan.stray_quote or not piece:
            return
        arr = np.frombuffer(piece, dtype=np.uint8)
        # The masks go to buffers kept from piece to piece: fresh ones would cost page faults.
        sep, lf, cr = (buffer[: len(piece)] for buffer in self.masks)
        np.equal(arr, _COMMA, out=sep)
        np.equal(arr, _LF, out=lf)
        if after_cr or b"\r" in piece:
            np.equal(arr, _CR, out=cr)
            sep |= cr
            cr[1:] = cr[:-1]  # now: the byte before is a CR
            cr[0] = after_cr
            lf &= ~cr
        sep |= lf
        found = np.flatnonzero(sep)  # commas and line breaks
        breaks = arr[found] != _COMMA
        lines_before = scan.lines
        scan.lines += int(np.count_nonzero(breaks))
        at, ends = found, None  # the separators outside quotes; which of them end a record
        if b'"' in piece:
            quotes = np.flatnonzero(arr == _QUOTE)
            if self._stray(arr, quotes, found[breaks], lines_before, tail):
                return
            outside = ((np.searchsorted(quotes, found) + self.quoted) & 1) == 0
            self.quoted = (self.quoted + len(quotes)) & 1
            at, ends = found[outside], np.flatnonzero(breaks[outside])
        elif self.quoted:
            at, ends = found[:0], found[:0]
        else:
            ends = np.flatnonzero(breaks)
        if len(ends):
            self._records(len(piece), at, ends, found, breaks, lines_before)
        else:
            self.current += len(piece)
            self.commas += len(at)
        if self.current > self.max_line and not scan.long_line:
            scan.long_line, scan.long_spans = self.start_line, scan.lines >= self.start_line

    def _stray(self, arr: np.ndarray, quotes: np.ndarray, line_breaks: np.ndarray, lines_before: int,
               tail: bytes) -> bool:
        """Whether a quote that opens a quoted field (as a count of quotes has it) follows
        something other than a separator, a line break or a closing quote (a doubled quote);
        if so, note its line."""
        opening = quotes[self.quoted::2]
        if not len(opening):
            return False
        before = arr[np.maximum(opening - 1, 0)]
        if opening[0] == 0:  # the byte before is the last of the piece before (none: the file starts)
            before[0] = tail[-1] if tail else _COMMA
        if self.scan.size == len(arr) and arr[:3].tobytes() == codecs.BOM_UTF8:
            before[opening == 3] = _COMMA  # the header's first field, after a byte-order mark
        fine = (before == _COMMA) | (before == _LF) | (before == _CR) | (before == _QUOTE)
        if fine.all():
            return False
        at = int(opening[np.argmin(fine)])
        self.scan.stray_quote = lines_before + int(np.searchsorted(line_breaks, at)) + 1
        return True

    def _records(self, size: int, at: np.ndarray, ends: np.ndarray, found: np.ndarray, breaks: np.ndarray,
                 lines_before: int) -> None:
        """Count the records that end in this piece of ``size`` bytes. ``at``: its separators
        outside quotes, ``ends``: the indices of those that end a record; ``found``: every
        separator, ``breaks``: which of them are line breaks."""
        scan = self.scan
        end_at = at[ends]
        lengths = np.diff(end_at, prepend=-1)  # bytes of each record, its line break included
        lengths[0] += self.current
        commas = np.diff(ends, prepend=-1) - 1
        commas[0] += self.commas
        last_line = None  # the line each record ends on, when a record spans lines
        if len(at) < len(found) or self.start_line <= lines_before:
            last_line = lines_before + np.searchsorted(found[breaks], end_at, side="right")
        if int(lengths.max()) > self.max_line + 1:
            k = int(np.argmax(lengths > self.max_line + 1))
            start = self.start_line if k == 0 else (
                int(last_line[k - 1]) + 1 if last_line is not None else lines_before + k + 1)
            scan.long_line = start
            scan.long_spans = last_line is not None and int(last_line[k]) > start
            return
        if last_line is not None:
            starts = np.concatenate(([self.start_line], last_line[:-1] + 1))
            for k in np.flatnonzero(last_line > starts)[: max(MAX_MULTILINE - len(scan.multiline), 0)]:
                self._note_multiline(scan.records + int(k), int(last_line[k] - starts[k]))
        self._count(lengths, commas, self.current + int(end_at[-1]) + 1)
        scan.records += len(ends)
        self.current = size - int(end_at[-1]) - 1
        self.commas = len(at) - int(ends[-1]) - 1
        self.start_line = (int(last_line[-1]) if last_line is not None else lines_before + len(ends)) + 1
        self.marks.append((self.scan.records, self.records_bytes))

    def _count(self, lengths: np.ndarray, commas: np.ndarray, total: int) -> None:
        """The width, widest and wide records, and the bytes, of the records from ``scan.records``
        on, of ``lengths`` bytes (``total`` together) and ``commas`` separators each."""
        scan = self.scan
        first = scan.records
        if first == 0:
            scan.width = int(commas[0]) + 1
        most = int(commas.max()) + 1
        if most > scan.widest:
            scan.widest = most
        if most > MAX_COLUMNS and not scan.too_wide:
            record = first + int(np.argmax(commas >= MAX_COLUMNS))
            scan.too_wide = record + 1 + sum(extra for r, extra in scan.multiline if r < record)
        if most > scan.width:
            wide = commas >= scan.width
            scan.wide += int(np.count_nonzero(wide))
            scan.wide_bits.append((first, len(wide), np.packbits(wide)))
            for k in np.flatnonzero(wide)[: max(MAX_EXAMPLES - len(scan.wide_examples), 0)]:
                scan.wide_examples.append((first + int(k), int(commas[k]) + 1))
        self.records_bytes += total

    def _note_multiline(self, record: int, extra: int) -> None:
        if len(self.scan.multiline) < MAX_MULTILINE:
            self.scan.multiline.append((record, extra))


@dataclass
class FileSummary:
    """What ingesting one file did."""

    kind: str  # "status", "hours" or "timezones"
    path: str
    rows_read: int = 0  # data rows in the file (header excluded)
    rows_stored: int = 0  # distinct valid rows written (a key given twice in the file counts once)
    rows_changed: int | None = None  # polls/zones actually new or different; None for hours
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


def resolve_columns(kind: str, header: Iterable[str], path: str | Path = "") -> dict[str, str]:
    """Map our column names to the file's header names; refuse a file that lacks one."""
    by_lower = {str(h).strip().lower(): h for h in header}
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for ours, accepted in COLUMNS[kind].items():
        hit = next((by_lower[a] for a in accepted if a in by_lower), None)
        if hit is None:
            missing.append(ours if len(accepted) == 1 else f"{ours} (or {'/'.join(accepted)})")
        else:
            mapping[ours] = hit
    if missing:
        raise IngestError(
            f"{path}: refused, missing required column(s) {', '.join(missing)} "
            f"for a {kind} file; its header is: {quote(', '.join(map(str, header)))}"
        )
    return mapping


# ---------------------------------------------------------------------------------------------
# Parsers: a chunk of raw strings -> (valid typed rows, reason per invalid row)


def _first_failure(checks: list[tuple[str, pd.Series]], index: pd.Index) -> pd.Series:
    """For each row, the first reason whose mask is True (rows with none are dropped)."""
    reason = np.full(len(index), None, dtype=object)
    failed = np.zeros(len(index), dtype=bool)
    for name, mask in reversed(checks):  # earlier checks win, so they are written last
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            reason[mask] = name
            failed |= mask
    return pd.Series(reason[failed], index=index[failed], dtype=object)


# Polls outside this span are taken for typos or sentinels (0001-01-01, 9999-12-31) and skipped
# as bad timestamps: one such row would otherwise move `now` by centuries for every report.
EARLIEST_POLL = pd.Timestamp("2000-01-01", tz="UTC")
LATEST_POLL_AHEAD = pd.Timedelta(days=1)  # a poll may not be more than a day in the future


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Text -> UTC microseconds since the epoch (float64, exact below 2**53); unreadable -> NaN.

    Accepts the real feed's ``2023-01-25 12:09:39.388884 UTC`` (0-6 fractional digits),
    ``2023-01-25T12:09:39Z``, explicit offsets (``+00:00``) and naive values (taken as UTC).
    The common form is parsed in one vectorised pass; only the rows it misses get a second,
    more forgiving look (surrounding spaces, ``UTC`` in any case or without a space). Instants
    before 2000 or more than a day ahead of the clock count as unreadable.
    """
    micros = _micros(_iso_utc(values.str.removesuffix(" UTC")))
    missed = np.isnan(micros)
    missed[missed] = values.to_numpy(dtype=object)[missed] != ""
    if missed.any():
        retry = values[missed].str.strip().str.replace(r"(?i)\s*utc$", "", regex=True)
        micros[missed] = _micros(_iso_utc(retry))
    wall_clock = pd.Timestamp.now(tz="UTC")
    latest = wall_clock + LATEST_POLL_AHEAD
    with np.errstate(invalid="ignore"):
        outside = (micros < EARLIEST_POLL.value // 1000) | (micros > latest.value // 1000)
        # pandas reads the words "now" and "today" as the wall clock: only values that land
        # near it are looked at again (few, in a historical feed), and they must be dates.
        recent = micros >= (wall_clock - 2 * LATEST_POLL_AHEAD).value // 1000
    if recent.any():
        is_date = values[recent].str.match(r"\s*\d{4}-\d{2}-\d{2}").fillna(False).to_numpy(dtype=bool)
        outside[np.flatnonzero(recent)[~is_date]] = True
    micros[outside] = np.nan
    return pd.Series(micros, index=values.index)


def _micros(parsed: pd.Series) -> np.ndarray:
    """Parsed instants -> float64 microseconds, NaN where unparsed."""
    out = parsed.dt.as_unit("us").array.asi8.astype(np.float64)
    out[parsed.isna().to_numpy()] = np.nan
    return out


def _iso_utc(text: pd.Series) -> pd.Series:
    return pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")


def _normalised(values: pd.Series, how: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string clean-up to each distinct value once (feeds repeat few distinct values)."""
    codes, texts = pd.factorize(values)
    cleaned = how(pd.Series(texts, dtype=object)).to_numpy(dtype=object)
    return pd.Series(np.append(cleaned, "")[codes], index=values.index, dtype=object)


def parse_clock(values: pd.Series) -> pd.Series:
    """``HH:MM`` or ``HH:MM:SS`` -> seconds after midnight (0..86400); invalid -> NaN.

    A feed repeats a few hundred distinct times, so each distinct text is parsed once.
    """
    codes, texts = pd.factorize(values)
    parts = pd.Series(texts, dtype=object).str.strip().str.extract(_TIME_PATTERN)
    h = pd.to_numeric(parts[0], errors="coerce")
    m = pd.to_numeric(parts[1], errors="coerce")
    s = pd.to_numeric(parts[2], errors="coerce").fillna(0)
    seconds = h * 3600 + m * 60 + s
    ok = (h <= 24) & (m < 60) & (s < 60) & ((h < 24) | (seconds == 86400))
    per_text = seconds.where(ok).to_numpy(dtype=float)
    return pd.Series(np.append(per_text, np.nan)[codes], index=values.index)


def _empty_lines(raw: pd.DataFrame) -> pd.Series:
    """Rows whose every field is empty (the first column is looked at first: few rows pass)."""
    empty = raw.iloc[:, 0].to_numpy(dtype=object) == ""
    for column in raw.columns[1:]:
        if not empty.any():
            break
        empty[empty] = raw[column].to_numpy(dtype=object)[empty] == ""
    return pd.Series(empty, index=raw.index)


class KnownIds:
    """Store ids of one file already found good, so a chunk checks only the ids new to the file
    (every chunk of a big polls file names every store)."""

    def __init__(self) -> None:
        self.good = pd.Index([], dtype=object)

    def unknown(self, distinct: pd.Series) -> np.ndarray:
        return ~distinct.isin(self.good).to_numpy(dtype=bool)

    def add(self, ids: pd.Series) -> None:
        if len(ids):
            self.good = self.good.append(pd.Index(ids.to_numpy(dtype=object)))


def store_id_failures(ids: pd.Series, known: KnownIds | None = None, factorized=None) -> list[tuple[str, pd.Series]]:
    """The checks every feed applies to ``store_id``, each distinct id looked at once (once per
    file, with ``known``).

    An id is kept byte for byte, so it is refused rather than cleaned: empty (or only spaces),
    longer than :data:`MAX_STORE_ID` characters, or unsafe -- starting with ``= + - @`` (a
    spreadsheet formula) or holding a control character. ``factorized``: ``pd.factorize(ids)``
    when the caller has it already.
    """
    codes, texts = factorized if factorized is not None else pd.factorize(ids)
    distinct = pd.Series(texts, dtype=object)
    look = known.unknown(distinct) if known is not None else np.ones(len(distinct), dtype=bool)
    fresh = distinct[look]
    texts = fresh.tolist()
    # Plain Python over the distinct ids (pandas' .str costs more per call than these take): one
    # pass finds the suspects -- the control-character search runs once over all the ids, and
    # per id only if it finds one -- then each suspect gets its reason.
    control = _CONTROL_RE.search("".join(texts)) is not None
    suspects = [
        i for i, t in enumerate(texts)
        if len(t) > MAX_STORE_ID or t.startswith(UNSAFE_ID_START) or not t.strip()
        or (control and _CONTROL_RE.search(t))
    ]
    checks = {}
    for reason, failed in (
        ("empty store_id", lambda t: not t.strip()),
        ("store_id too long", lambda t: len(t) > MAX_STORE_ID),
        ("unsafe store_id", lambda t: t.startswith(UNSAFE_ID_START) or _CONTROL_RE.search(t) is not None),
    ):
        per_fresh = np.zeros(len(texts), dtype=bool)
        per_fresh[[i for i in suspects if failed(texts[i])]] = True
        per_text = np.zeros(len(distinct), dtype=bool)
        per_text[look] = per_fresh
        checks[reason] = per_text
    if known is not None:
        known.add(fresh[~np.logical_or.reduce(list(checks.values()))[look]])
    return [
        (reason, pd.Series(np.append(per_text, False)[codes], index=ids.index)) for reason, per_text in checks.items()
    ]


def parse_status_rows(raw: pd.DataFrame, known: KnownIds | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Raw poll rows -> (store_id, ts_us, active) and the reasons for the rows skipped."""
    ts = parse_timestamps(raw["timestamp_utc"])
    status = raw["status"].to_numpy(dtype=object)
    active = status == "active"
    readable = active | (status == "inactive")
    if not readable.all():  # only the other rows are cleaned up (spaces, case) and looked at again
        odd = ~readable
        cleaned = _normalised(raw["status"][odd], lambda s: s.str.strip().str.lower()).to_numpy(dtype=object)
        active[odd] = cleaned == "active"
        readable[odd] = active[odd] | (cleaned == "inactive")
    codes, texts = pd.factorize(raw["store_id"])
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            *store_id_failures(raw["store_id"], known, factorized=(codes, texts)),
            ("bad timestamp", ts.isna()),
            ("unknown status", pd.Series(~readable, index=raw.index)),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index) if len(reasons) else np.ones(len(raw), dtype=bool)
    rows = pd.DataFrame(
        {
            # categorical: the writer reuses these codes instead of hashing every id again
            "store_id": pd.Categorical.from_codes(codes[good], categories=texts),
            "ts_us": ts[good].astype("int64"),
            "active": active[good],
        },
        index=raw.index[good],
    )
    return rows, reasons


def parse_hours_rows(raw: pd.DataFrame, known: KnownIds | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Raw business-hours rows -> (store_id, day, start_s, end_s) and reasons for skipped rows."""
    day_text = raw["day"].str.strip()
    day = pd.to_numeric(day_text.where(day_text.str.fullmatch(r"0*[0-6]")), errors="coerce")  # 3, 03, " 3 "
    start = parse_clock(raw["start_time_local"])
    end = parse_clock(raw["end_time_local"])
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            *store_id_failures(raw["store_id"], known),
            ("bad day", day.isna()),
            ("bad start time", start.isna() | (start >= 86400)),
            ("bad end time", end.isna()),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index)
    rows = pd.DataFrame(
        {
            "store_id": raw["store_id"][good],
            "day": day[good].astype("int64"),
            "start_s": start[good].astype("int64"),
            "end_s": end[good].astype("int64"),
        }
    )
    return rows, reasons


def parse_timezone_rows(raw: pd.DataFrame, known: KnownIds | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Raw time-zone rows -> (store_id, timezone_str) and reasons for skipped rows.

    A name longer than :data:`MAX_ZONE` characters or holding a control character is no zone
    name (an unknown but plausible one is stored, and warned about).
    """
    tz = raw["timezone_str"].str.strip()
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            *store_id_failures(raw["store_id"], known),
            ("empty timezone", tz == ""),
            ("bad timezone", _bad_zones(tz)),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index)
    rows = pd.DataFrame({"store_id": raw["store_id"][good], "timezone_str": tz[good]})
    return rows, reasons


def _bad_zones(tz: pd.Series) -> pd.Series:
    """Zone names too long or holding a control character (each distinct name looked at once)."""
    codes, names = pd.factorize(tz)
    names = pd.Series(names, dtype=object)
    bad = ((names.str.len() > MAX_ZONE) | names.str.contains(_CONTROL, regex=True)).to_numpy(dtype=bool)
    return pd.Series(np.append(bad, False)[codes], index=tz.index)


PARSERS = {STATUS: parse_status_rows, HOURS: parse_hours_rows, TIMEZONES: parse_timezone_rows}

TOO_MANY_HOURS = "too many hours rows for the store"


class HoursLimit:
    """Keeps at most ``limit`` distinct business-hours rows per store and weekday over one file.

    The ingest keeps a row given twice once (overlapping rows are kept as given: the report
    unites them), so a repeat of a row already counted is no new row. Rows and (store, day)
    pairs are held as 64-bit hashes in sorted arrays, 8 bytes per distinct row and 16 per pair;
    a collision would miscount one row, it changes no stored value.
    """

    def __init__(self, limit: int = MAX_HOURS_PER_DAY):
        self.limit = limit
        self.rows = np.empty(0, dtype=np.uint64)  # the distinct rows counted in
        self.days = np.empty(0, dtype=np.uint64)  # the (store, day) pairs met ...
        self.counts = np.empty(0, dtype=np.int64)  # ... and their rows counted in

    def over(self, rows: pd.DataFrame) -> np.ndarray:
        """For parsed hours rows, in file order: which are beyond the limit (the others are counted in)."""
        if not len(rows):
            return np.zeros(0, dtype=bool)
        row_hash = pd.util.hash_pandas_object(rows[["store_id", "day", "start_s", "end_s"]], index=False).to_numpy()
        day_hash = pd.util.hash_pandas_object(rows[["store_id", "day"]], index=False).to_numpy()
        codes, distinct = pd.factorize(row_hash)  # distinct rows in order of first appearance
        first = np.unique(codes, return_index=True)[1]
        fresh = np.flatnonzero(~_found(self.rows, distinct)[1])
        days = day_hash[first[fresh]]
        at, known = _found(self.days, days)
        before = np.zeros(len(days), dtype=np.int64)
        before[known] = self.counts[at[known]]
        rank = pd.Series(days).groupby(days).cumcount().to_numpy() + before
        beyond = np.zeros(len(distinct), dtype=bool)
        beyond[fresh[rank >= self.limit]] = True
        taken = fresh[rank < self.limit]
        if len(taken):  # merged in order: two sorted runs, which a stable sort joins in one pass
            self.rows = np.sort(np.concatenate([self.rows, np.sort(distinct[taken])]), kind="stable")
            new_days, counts = np.unique(day_hash[first[taken]], return_counts=True)
            at, known = _found(self.days, new_days)
            self.counts[at[known]] += counts[known]
            days, counts = np.concatenate([self.days, new_days[~known]]), np.concatenate([self.counts, counts[~known]])
            order = np.argsort(days, kind="stable")
            self.days, self.counts = days[order], counts[order]
        return beyond[codes]


def _found(ordered: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``keys`` are in the sorted array ``ordered``, and which are there."""
    at = np.searchsorted(ordered, keys)
    there = at < len(ordered)
    there[there] = ordered[at[there]] == keys[there]
    return at, there


# ---------------------------------------------------------------------------------------------
# One file


# One ingest at a time per process: a parse takes memory in proportion to its chunks
# (CHUNK_BYTES, CHUNK_CELLS), so a worker holds one file's at a time. (Ingests serialise in the
# database anyway.)
_PARSE_LOCK = threading.Lock()


def ingest_file(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    force: bool = False,
    chunk_rows: int = 250_000,
    progress: ProgressCallback | None = None,
    source: str = "cli",
    name: str | None = None,
    scan: FileScan | None = None,
    max_line_bytes: int = 1 << 20,
    wait_seconds: float = 30.0,
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
        if scan.long_line:
            raise IngestError(
                f"{shown}: refused, the row starting on line {scan.long_line:,} is longer than {max_line_bytes:,} "
                "bytes: a quoted field runs on over the lines after it (is a quote left open?); nothing stored"
                if scan.long_spans else
                f"{shown}: refused, line {scan.long_line:,} is longer than {max_line_bytes:,} bytes (no feed row is "
                "that long: is this the right file?); nothing stored"
            )
        if scan.stray_quote:
            raise IngestError(
                f"{shown}: refused, line {scan.stray_quote:,} has a quote inside a field that does not start with "
                'one (a field holding quotes must be quoted, its quotes doubled: "12"" pizza"); nothing stored'
            )
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
                _load(conn, kind, path, shown, header, mapping, scan, summary, strict, chunk_rows, progress)
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


def _load(conn, kind, path, name, header, mapping, scan, summary, strict, chunk_rows, progress) -> None:
    """Parse the file chunk by chunk and hand the valid rows to the feed's writer.

    The reader takes the header as its row 0 and is given as many columns as the widest row
    has, so it reads every record as a row and skips none; the rows with more fields than the
    header are the ones the scan marked. (A CSV reader keeps the text of the rows it skips
    itself until its chunk is done, and its own skipping of given rows misreads some quoting.)
    """
    positions = [header.get_loc(theirs) for theirs in mapping.values()]
    columns = max(len(header), scan.widest)
    writer = storage.FeedWriter.for_kind(kind)
    known = KnownIds()
    if kind == STATUS:  # ids of stores that have polls passed these checks when first stored
        known.good = writer.known_ids(conn)
    hours_limit = HoursLimit() if kind == HOURS else None
    stores: set[str] = set()
    wide_text = {record: f"{fields:,} fields where the header has {scan.width:,}"
                 for record, fields in scan.wide_examples}
    plan = _ChunkPlan(scan, columns, chunk_rows)
    rows_done = 0

    def parsed(handle) -> Iterator[tuple[pd.DataFrame, int]]:
        """The file's valid rows chunk by chunk, with the bytes read so far; bad rows counted."""
        nonlocal rows_done
        try:
            with pd.read_csv(
                handle,
                header=None,
                names=range(columns) if columns > len(header) else None,
                dtype=str,
                index_col=False,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
                encoding_errors="surrogateescape",
                on_bad_lines="error",
                chunksize=chunk_rows,
            ) as reader:
                while True:
                    try:
                        chunk = reader.get_chunk(plan(rows_done) + (rows_done == 0))  # and the header
                    except StopIteration:
                        break
                    rows_done += len(chunk)
                    if chunk.index[0] == 0:  # row 0 is the header
                        chunk = chunk.iloc[1:]
                    if not len(chunk):
                        continue
                    summary.rows_read += len(chunk)
                    bad = np.zeros(len(chunk), dtype=bool)
                    reasons = []
                    if scan.wide:
                        bad |= scan.wide_mask(int(chunk.index[0]), len(chunk))
                        reasons.append(pd.Series("too many fields", index=chunk.index[bad], dtype=object))
                    if not scan.utf8:  # only then can a field hold an undecodable byte
                        mask = np.zeros(len(chunk), dtype=bool)
                        for column in chunk.columns:
                            mask |= chunk[column].str.contains(_NOT_UTF8, regex=True).to_numpy(dtype=bool)
                        mask &= ~bad
                        reasons.append(pd.Series("not UTF-8", index=chunk.index[mask], dtype=object))
                        bad |= mask
                    raw = chunk.iloc[:, positions].set_axis(list(mapping), axis=1)
                    rows, parse_reasons = PARSERS[kind](raw[~bad] if bad.any() else raw, known)
                    reasons.append(parse_reasons)
                    if hours_limit is not None:
                        beyond = hours_limit.over(rows)
                        if beyond.any():
                            reasons.append(pd.Series(TOO_MANY_HOURS, index=rows.index[beyond], dtype=object))
                            rows = rows[~beyond]
                    reasons = pd.concat([r for r in reasons if len(r)]) if any(len(r) for r in reasons) else None
                    if reasons is not None:
                        _count_bad_rows(summary, chunk, reasons, scan, wide_text)
                    if strict and summary.rows_skipped:
                        raise _strict_refusal(name, summary)
                    if kind != STATUS and len(rows):  # the polls writer counts its stores itself
                        stores.update(rows["store_id"].unique())
                    yield rows, handle.tell()
        except pd.errors.ParserError as exc:
            raise IngestError(f"{name}: refused, unreadable CSV ({quote(exc)}); nothing stored") from exc

    with path.open("rb") as handle:
        for rows, position in _read_ahead(parsed(handle)):
            if len(rows):
                changed = writer.write(conn, rows)
                if changed is not None:
                    summary.rows_changed = (summary.rows_changed or 0) + changed
            if progress:
                progress(position, scan.size)
    if strict and summary.rows_skipped:
        raise IngestError(f"{name}: refused (--strict): {_skip_note(summary)}; nothing stored")
    changed = writer.finish(conn)
    if changed is not None:
        summary.rows_changed = (summary.rows_changed or 0) + changed
    summary.rows_stored = writer.rows_stored
    if kind == STATUS and not writer.distinct.exact:
        summary.warnings.append(
            f"more than {storage.DistinctKeys.EXACT_UP_TO:,} distinct polls, not in time order: rows_stored "
            "counts a poll repeated in another part of the file again"
        )
    if rows_done != scan.records:  # the scan's marks would be another row's: store nothing
        raise IngestError(
            f"{name}: refused, the CSV reader read {max(rows_done - 1, 0):,} rows where a count of the file's "
            f"line breaks and quotes finds {scan.records - 1:,}; nothing stored"
        )
    summary.polls_span = writer.span
    summary.stores = writer.stores if kind == STATUS else len(stores)
    if kind == TIMEZONES:
        summary.warnings += _unknown_zone_warnings(writer.zones_seen)
    if kind in (STATUS, TIMEZONES) and summary.rows_changed is None:
        summary.rows_changed = 0


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


def _count_bad_rows(summary: FileSummary, chunk: pd.DataFrame, reasons: pd.Series, scan: FileScan,
                    texts: dict[int, str]) -> None:
    """Count a chunk's bad rows by reason, and keep the :data:`MAX_EXAMPLES` first of the file
    (``texts``: what to show for some rows instead of their fields, which are shown up to the
    header's width)."""
    for reason, count in reasons.value_counts().items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + int(count)
    found = [
        BadRow(line=scan.line_of(int(index)), reason=str(reason),
               text=texts.get(int(index)) or quote(",".join(str(v) for v in chunk.loc[index].tolist()[: scan.width])))
        for index, reason in reasons.sort_index().head(MAX_EXAMPLES).items()
    ]
    summary.examples = sorted(summary.examples + found, key=lambda bad: bad.line)[:MAX_EXAMPLES]


def _skip_note(summary: FileSummary) -> str | None:
    if not summary.skipped:
        return None
    return "skipped " + ", ".join(f"{n:,} x {reason}" for reason, n in sorted(summary.skipped.items()))


def _ledger_values(summary: FileSummary, outcome: str, started_at, message: str | None) -> dict:
    return dict(
        kind=summary.kind, file_name=quote(Path(summary.path).name), size=summary.size,  # at most 255 characters
        sha256=summary.sha256, rows_read=summary.rows_read, rows_stored=summary.rows_stored,
        rows_skipped=summary.rows_skipped, outcome=outcome, message=message, source=summary.source,
        started_at=started_at,
        polls_from_us=summary.polls_span[0] if outcome == "stored" and summary.polls_span else None,
        polls_to_us=summary.polls_span[1] if outcome == "stored" and summary.polls_span else None,
    )


def _record_unchanged(engine, summary, before, started_at, started, wait_seconds) -> FileSummary:
    when = before["finished_at"]
    when = when.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(when, "strftime") else str(when)
    summary.outcome = "unchanged"
    summary.rows_changed = None if summary.kind == HOURS else 0
    summary.message = (
        f"this content was already ingested as {quote(before['file_name'], 80)} on {when} "
        f"(ledger #{before['id']}); force re-applies it"
    )
    summary.seconds = time.perf_counter() - started
    try:
        with storage.write_transaction(engine, wait_seconds) as conn:
            summary.ledger_id = storage.ledger_add(conn, **_ledger_values(summary, "unchanged", started_at, summary.message))
    except storage.DatabaseBusy:
        pass  # nothing was going to change; the ledger line is only a note
    return summary


def _record_failure(engine, summary, outcome, message, started_at, wait_seconds) -> None:
    """Note a refused or failed file in the ledger (its rows were rolled back)."""
    summary.outcome = outcome
    try:
        with storage.write_transaction(engine, wait_seconds) as conn:
            summary.ledger_id = storage.ledger_add(conn, **_ledger_values(summary, outcome, started_at, quote(message, 500)))
    except Exception:  # noqa: BLE001 -- the ledger must not hide the file's own error
        log.warning("could not record the %s ingest of %s in the ledger", outcome, quote(summary.path), exc_info=True)


def _unknown_zone_warnings(zones: set[str]) -> list[str]:
    unknown = sorted(z for z in zones if not is_known_timezone(z))
    if not unknown:
        return []
    shown = ", ".join(quote(z, MAX_ZONE) for z in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    if DEMO_UNKNOWN_ZONE in unknown:
        shown += f" ({DEMO_UNKNOWN_ZONE} is put in the demo data on purpose, to show this default)"
    return [f"{len(unknown)} unknown time zone name(s), reported as America/Chicago: {shown}"]


# ---------------------------------------------------------------------------------------------
# Several files


def ingest_files(
    engine: Engine,
    folder: str | Path | None = None,
    *,
    status: Iterable[str | Path] = (),
    hours: Iterable[str | Path] = (),
    timezones: Iterable[str | Path] = (),
    strict: bool = False,
    force: bool = False,
    chunk_rows: int = 250_000,
    progress_factory: Callable[[str, Path], ProgressCallback | None] | None = None,
    on_file: Callable[[FileSummary], None] | None = None,
    **options,
) -> IngestSummary:
    """Ingest a folder's recognised files and/or named files: zones, then hours, then polls.

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
                "menu_hours.csv, timezones.csv)"
            )
    plan[STATUS] += [Path(p) for p in status]
    plan[HOURS] += [Path(p) for p in hours]
    plan[TIMEZONES] += [Path(p) for p in timezones]
    if not any(plan.values()):
        raise IngestError("nothing to ingest: give a folder or --status/--hours/--timezones files")

    summary = IngestSummary()
    for kind in (TIMEZONES, HOURS, STATUS):
        for path in plan[kind]:
            progress = progress_factory(kind, path) if progress_factory else None
            summary.files.append(
                ingest_file(engine, kind, path, strict=strict, force=force, chunk_rows=chunk_rows,
                            progress=progress, **options)
            )
            if on_file:
                on_file(summary.files[-1])
    return summary
