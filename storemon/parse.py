"""The feeds' text -> typed columns (docs/data-formats.md), pure: no file, no SQL.

A chunk of a feed arrives as a frame of strings (every column text, nothing guessed, as the CSV
reader gives it) and leaves as typed columns plus, for each row that cannot be read, the reason
-- the first that applies, in the order docs/data-formats.md lists them:

* :func:`parse_status_rows` -- ``store_id`` (text), ``ts_us`` (UTC microseconds, int64),
  ``active`` (bool);
* :func:`parse_hours_rows` -- ``store_id``, ``day`` (0 = Monday), ``start_s`` / ``end_s``
  (seconds after local midnight, 0..86400);
* :func:`parse_timezone_rows` -- ``store_id``, ``timezone_str``;
* :func:`parse_special_rows` -- ``store_id``, ``date`` (the local calendar date, days since
  1970-01-01), ``start_s`` / ``end_s`` (seconds after local midnight, 0..86400; -1 and -1 for a
  date the store is closed).

Here too: the feed kinds and their columns (:data:`KINDS`, :data:`COLUMNS`), the store-id rules
(:func:`store_id_reason` for one id), the per-store limit on business-hours rows
(:class:`HoursLimit`), and :func:`quote`, which makes any value from a file safe and short to show.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .times import parse_clock, parse_dates, parse_timestamps

STATUS, HOURS, TIMEZONES, SPECIAL = "status", "hours", "timezones", "special_hours"
KINDS = (STATUS, HOURS, TIMEZONES, SPECIAL)

# File names recognised in a folder (matched case-insensitively), per feed.
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    STATUS: ("store_status*.csv", "store status*.csv"),
    HOURS: ("menu_hours*.csv", "menu hours*.csv", "business_hours*.csv", "business hours*.csv"),
    TIMEZONES: ("timezones*.csv", "store_timezone*.csv", "bq-results-*.csv"),
    SPECIAL: ("special_hours*.csv", "special hours*.csv", "closures*.csv", "holidays*.csv"),
}

# Required columns per feed: our name -> the header names accepted for it (case-insensitive).
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    STATUS: {"store_id": ("store_id",), "status": ("status",), "timestamp_utc": ("timestamp_utc",)},
    HOURS: {
        "store_id": ("store_id",),
        "day": ("dayofweek", "day", "day_of_week"),
        "start_time_local": ("start_time_local",),
        "end_time_local": ("end_time_local",),
    },
    TIMEZONES: {"store_id": ("store_id",), "timezone_str": ("timezone_str",)},
    SPECIAL: {
        "store_id": ("store_id",),
        "date": ("date",),
        "start_time_local": ("start_time_local",),
        "end_time_local": ("end_time_local",),
    },
}

MAX_EXAMPLES = 5  # bad rows quoted (with line numbers) per file
MAX_QUOTE = 200  # characters of any value from a file (row, header, name) quoted in a message
MAX_STORE_ID = 255  # characters; a longer store_id is a bad row
MAX_COLUMNS = 64  # fields of the header or a row; a file with more is refused (the feeds have 2 to 4)
MAX_ZONE = 64  # characters of a timezone_str; a longer one is a bad row (IANA names have at most 32)
MAX_HOURS_PER_DAY = 50  # distinct hours rows kept per store and weekday (or special date); more are bad rows
CLOSED = -1  # start_s and end_s of a special-hours row that says the store is closed that date

# A store_id that a spreadsheet would run as a formula, or that holds control characters
# (tab, CR, LF, NUL, ...), is refused: reports are opened in Excel, and ids travel in CSV cells.
UNSAFE_ID_START = ("=", "+", "-", "@")
_CONTROL = r"[\x00-\x1f\x7f]"
_CONTROL_RE = re.compile(_CONTROL)
NOT_UTF8 = r"[\udc80-\udcff]"  # bytes that were not UTF-8, as Python's surrogateescape keeps them


class IngestError(Exception):
    """A file was refused as a whole (missing column, unreadable, or a bad row with strict)."""


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


def _normalised(values: pd.Series, how: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string clean-up to each distinct value once (feeds repeat few distinct values)."""
    codes, texts = pd.factorize(values)
    cleaned = how(pd.Series(texts, dtype=object)).to_numpy(dtype=object)
    return pd.Series(np.append(cleaned, "")[codes], index=values.index, dtype=object)


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
        i
        for i, t in enumerate(texts)
        if len(t) > MAX_STORE_ID
        or t.startswith(UNSAFE_ID_START)
        or not t.strip()
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


def store_id_reason(store_id: str) -> str | None:
    """Why no feed row could store ``store_id`` (the reason such a row is skipped with: the
    :func:`store_id_failures` checks, and ``not UTF-8`` for bytes that were not), or None when
    it is an id storemon can hold. For an id a user names (a removal, a listing)."""
    if re.search(r"[\ud800-\udfff]", store_id):
        return "not UTF-8"
    failures = store_id_failures(pd.Series([store_id], dtype=object))
    return next((reason for reason, failed in failures if bool(failed.iloc[0])), None)


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


def parse_special_rows(raw: pd.DataFrame, known: KnownIds | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Raw special-hours rows -> (store_id, date, start_s, end_s) and reasons for skipped rows.

    ``date`` is the store's local calendar date in days since 1970-01-01 (``YYYY-MM-DD``, from
    2000-01-01 to one year after today: :func:`~storemon.times.parse_dates`); ``start_s`` /
    ``end_s`` are seconds after local midnight as written (0..86400, read as the weekly rows'
    are), or :data:`CLOSED` and :data:`CLOSED` for a row whose start and end are both empty (or
    all spaces): the store is closed that date. A row with only one of them empty has a bad
    start or end time.
    """
    start_text = raw["start_time_local"].str.strip()
    end_text = raw["end_time_local"].str.strip()
    closed = ((start_text == "") & (end_text == "")).to_numpy(dtype=bool)
    date = parse_dates(raw["date"])
    start = parse_clock(raw["start_time_local"])
    end = parse_clock(raw["end_time_local"])
    reasons = _first_failure(
        [
            ("empty line", _empty_lines(raw)),
            *store_id_failures(raw["store_id"], known),
            ("bad date", date.isna()),
            ("bad start time", ~closed & (start.isna() | (start >= 86400)).to_numpy(dtype=bool)),
            ("bad end time", ~closed & end.isna().to_numpy(dtype=bool)),
        ],
        raw.index,
    )
    good = ~raw.index.isin(reasons.index)
    rows = pd.DataFrame(
        {
            "store_id": raw["store_id"][good],
            "date": date[good].astype("int64"),
            "start_s": start.where(~closed, CLOSED)[good].astype("int64"),
            "end_s": end.where(~closed, CLOSED)[good].astype("int64"),
        }
    )
    return rows, reasons


def _bad_zones(tz: pd.Series) -> pd.Series:
    """Zone names too long or holding a control character (each distinct name looked at once)."""
    codes, names = pd.factorize(tz)
    names = pd.Series(names, dtype=object)
    bad = ((names.str.len() > MAX_ZONE) | names.str.contains(_CONTROL, regex=True)).to_numpy(dtype=bool)
    return pd.Series(np.append(bad, False)[codes], index=tz.index)


PARSERS = {
    STATUS: parse_status_rows,
    HOURS: parse_hours_rows,
    TIMEZONES: parse_timezone_rows,
    SPECIAL: parse_special_rows,
}

TOO_MANY_HOURS = "too many hours rows for the store"


class HoursLimit:
    """Keeps at most ``limit`` distinct hours rows per store and ``day`` over one file: the
    weekday of business hours (``day``), the date of special hours (``date``).

    The ingest keeps a row given twice once (overlapping rows are kept as given: the report
    unites them), so a repeat of a row already counted is no new row. Rows and (store, day)
    pairs are held as 64-bit hashes in sorted arrays, 8 bytes per distinct row and 16 per pair;
    a collision would miscount one row, it changes no stored value.
    """

    def __init__(self, limit: int = MAX_HOURS_PER_DAY, day: str = "day"):
        self.limit = limit
        self.day = day  # the column that names the day
        self.rows = np.empty(0, dtype=np.uint64)  # the distinct rows counted in
        self.days = np.empty(0, dtype=np.uint64)  # the (store, day) pairs met ...
        self.counts = np.empty(0, dtype=np.int64)  # ... and their rows counted in

    def over(self, rows: pd.DataFrame) -> np.ndarray:
        """For parsed hours rows, in file order: which are beyond the limit (the others are counted in)."""
        if not len(rows):
            return np.zeros(0, dtype=bool)
        row_hash = pd.util.hash_pandas_object(rows[["store_id", self.day, "start_s", "end_s"]], index=False).to_numpy()
        day_hash = pd.util.hash_pandas_object(rows[["store_id", self.day]], index=False).to_numpy()
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
