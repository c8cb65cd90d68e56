"""Ingestion: the three CSV feeds (docs/data-formats.md) -> rows in the database.

Each file is read as text (every column a string, nothing guessed), in chunks, and converted by
vectorised parsers. A row that cannot be read is skipped and counted by reason; a file that lacks
a required column is refused before anything is written. One file is one transaction: either all
its valid rows are stored, or (error, ``strict`` refusal, crash) none are.

The database writes themselves live in :mod:`storemon.storage`; this module only decides *what*
to write.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

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

STATUS_VALUES = {"active": True, "inactive": False}
MAX_EXAMPLES = 5  # bad rows quoted (with line numbers) per file
_TIME_PATTERN = r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$"


class IngestError(Exception):
    """A file was refused as a whole (missing column, unreadable, or a bad row with strict)."""


@dataclass
class BadRow:
    line: int  # line number in the file; the header is line 1
    reason: str
    text: str  # the row's fields joined by commas, as read


@dataclass
class FileSummary:
    """What ingesting one file did."""

    kind: str  # "status", "hours" or "timezones"
    path: str
    rows_read: int = 0  # data rows in the file (header excluded)
    rows_stored: int = 0  # valid rows written (inserted or replacing)
    rows_changed: int | None = None  # polls/zones actually new or different; None for hours
    stores: int = 0  # distinct stores among the valid rows
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped
    examples: list[BadRow] = field(default_factory=list)  # the first few skipped rows
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time, reading to commit

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "file": Path(self.path).name,
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
        }

    def describe(self) -> str:
        """A few human-readable lines for the CLI."""
        changed = "" if self.rows_changed is None else f" ({self.rows_changed:,} new or changed)"
        lines = [
            f"{self.kind:9} {Path(self.path).name}: {self.rows_read:,} rows read, "
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
            f"for a {kind} file; its header is: {', '.join(map(str, header))}"
        )
    return mapping


# ---------------------------------------------------------------------------------------------
# Parsers: a chunk of raw strings -> (valid typed rows, reason per invalid row)


def _first_failure(checks: list[tuple[str, pd.Series]], index: pd.Index) -> pd.Series:
    """For each row, the first reason whose mask is True (rows with none are dropped)."""
    reason = pd.Series(pd.NA, index=index, dtype="object")
    for name, mask in reversed(checks):  # earlier checks win, so they are written last
        reason = reason.mask(mask.to_numpy(), name)
    return reason.dropna()


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
    missed = np.isnan(micros) & (values != "").to_numpy()
    if missed.any():
        retry = values[missed].str.strip().str.replace(r"(?i)\s*utc$", "", regex=True)
        micros[missed] = _micros(_iso_utc(retry))
    latest = pd.Timestamp.now(tz="UTC") + LATEST_POLL_AHEAD
    with np.errstate(invalid="ignore"):
        outside = (micros < EARLIEST_POLL.value // 1000) | (micros > latest.value // 1000)
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
    return (raw == "").all(axis=1)


def parse_status_rows(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Raw poll rows -> (store_id, ts_us, active) and the reasons for the rows skipped."""
    ts = parse_timestamps(raw["timestamp_utc"])
    status = _normalised(raw["status"], lambda s: s.str.strip().str.lower())
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            ("empty store_id", _normalised(raw["store_id"], lambda s: s.str.strip()) == ""),
            ("bad timestamp", ts.isna()),
            ("unknown status", ~status.isin(STATUS_VALUES.keys())),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index)
    rows = pd.DataFrame(
        {
            "store_id": raw["store_id"][good],
            "ts_us": ts[good].astype("int64"),
            "active": status[good] == "active",
        }
    )
    return rows, reasons


def parse_hours_rows(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Raw business-hours rows -> (store_id, day, start_s, end_s) and reasons for skipped rows."""
    day_text = raw["day"].str.strip()
    day = pd.to_numeric(day_text.where(day_text.str.fullmatch(r"0*[0-6]")), errors="coerce")  # 3, 03, " 3 "
    start = parse_clock(raw["start_time_local"])
    end = parse_clock(raw["end_time_local"])
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            ("empty store_id", raw["store_id"].str.strip() == ""),
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


def parse_timezone_rows(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Raw time-zone rows -> (store_id, timezone_str) and reasons for skipped rows."""
    tz = raw["timezone_str"].str.strip()
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            ("empty store_id", raw["store_id"].str.strip() == ""),
            ("empty timezone", tz == ""),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index)
    rows = pd.DataFrame({"store_id": raw["store_id"][good], "timezone_str": tz[good]})
    return rows, reasons


PARSERS = {STATUS: parse_status_rows, HOURS: parse_hours_rows, TIMEZONES: parse_timezone_rows}


# ---------------------------------------------------------------------------------------------
# One file


def ingest_file(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    chunk_rows: int = 250_000,
    progress: ProgressCallback | None = None,
) -> FileSummary:
    """Load one feed file in one transaction and return what happened.

    Raises :class:`IngestError` (and stores nothing of the file) when a required column is
    missing, or, with ``strict``, when any row is unreadable.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feed kind {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    started = time.perf_counter()
    summary = FileSummary(kind=kind, path=str(path))
    try:
        header = pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8-sig").columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: refused, not a readable CSV with a header row ({exc})") from exc
    mapping = resolve_columns(kind, header, path)
    rename = {theirs: ours for ours, theirs in mapping.items()}
    size = path.stat().st_size
    writer = storage.FeedWriter.for_kind(kind)
    stores: set[str] = set()

    with path.open("rb") as handle, engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            storage.lock_for_ingest(conn)
            try:
                reader = pd.read_csv(
                    handle,
                    dtype=str,
                    usecols=list(mapping.values()),
                    keep_default_na=False,
                    na_filter=False,
                    skip_blank_lines=False,
                    encoding="utf-8-sig",
                    chunksize=chunk_rows,
                )
                for chunk in reader:
                    raw = chunk.rename(columns=rename)
                    rows, reasons = PARSERS[kind](raw)
                    summary.rows_read += len(raw)
                    if len(reasons):
                        _count_bad_rows(summary, raw, reasons)
                        if strict:
                            bad = summary.examples[0]
                            raise IngestError(
                                f"{path}: refused (--strict): line {bad.line}: {bad.reason}: {bad.text!r}"
                            )
                    if len(rows):
                        changed = writer.write(conn, rows)
                        if changed is not None:
                            summary.rows_changed = (summary.rows_changed or 0) + changed
                        summary.rows_stored += len(rows)
                        stores.update(rows["store_id"].unique())
                    if progress:
                        progress(handle.tell(), size)
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise IngestError(f"{path}: refused, unreadable CSV ({exc}); nothing stored") from exc
            writer.finish(conn)
    summary.stores = len(stores)
    if kind == TIMEZONES:
        summary.warnings += _unknown_zone_warnings(writer.zones_seen)
    if kind in (STATUS, TIMEZONES) and summary.rows_changed is None:
        summary.rows_changed = 0
    summary.seconds = time.perf_counter() - started
    log.debug("ingested %s: %s", path, summary.describe().splitlines()[0])
    return summary


def _count_bad_rows(summary: FileSummary, raw: pd.DataFrame, reasons: pd.Series) -> None:
    for reason, count in reasons.value_counts().items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + int(count)
    room = MAX_EXAMPLES - len(summary.examples)
    for index, reason in reasons.sort_index().head(max(room, 0)).items():
        text = ",".join(str(v) for v in raw.loc[index].tolist())
        summary.examples.append(BadRow(line=int(index) + 2, reason=str(reason), text=text))


def _unknown_zone_warnings(zones: set[str]) -> list[str]:
    unknown = sorted(z for z in zones if not is_known_timezone(z))
    if not unknown:
        return []
    shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
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
    chunk_rows: int = 250_000,
    progress_factory: Callable[[str, Path], ProgressCallback | None] | None = None,
) -> IngestSummary:
    """Ingest a folder's recognised files and/or named files: zones, then hours, then polls.

    Each file is its own transaction; the first refused file stops the run with
    :class:`IngestError` (files before it stay stored).
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
                ingest_file(engine, kind, path, strict=strict, chunk_rows=chunk_rows, progress=progress)
            )
    return summary
