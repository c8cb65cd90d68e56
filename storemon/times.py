"""Instants, clocks and time zones: how storemon reads and writes time, in one place.

Every instant inside storemon is an integer: UTC microseconds since the epoch (``us``). Text
meets those integers only here:

* formatting -- :func:`format_instant` (``2023-01-25T12:00:00Z``, fractional seconds only when
  there are any: the API's form), :func:`format_instant_us` (always six decimals: the
  timeline's form), :func:`format_local` (local wall-clock time with its offset) and
  :func:`format_datetime` (a datetime from the database);
* reading -- :func:`parse_timestamps` (a feed's column of instants, vectorised, within the
  accepted range: from :data:`EARLIEST_POLL` to :data:`LATEST_POLL_AHEAD` after the clock),
  :func:`parse_instant` (one ``as_of`` a user gave, with a readable error), :func:`to_us`
  (anything pandas reads as an instant; naive means UTC) and :func:`read_iso` (any ISO 8601
  instant, whatever its year);
* clocks -- :func:`parse_clock` (``HH:MM[:SS]`` -> seconds after local midnight) and
  :func:`format_clock` (back);
* durations -- :func:`parse_periods` (a report's extra periods, ``30d,2h`` -> names and lengths);
* calendar dates -- :func:`parse_dates` (a feed's column of ``YYYY-MM-DD``, vectorised, within
  :data:`EARLIEST_DATE` .. one year after today), :func:`parse_date` (one date a user gave, with a
  readable error) and :func:`format_date`: a date is an integer, days since 1970-01-01;
* time zones -- :data:`DEFAULT_TIMEZONE`, the zone of a store without a known one
  (docs/report-rules.md), and the names that are known (:func:`is_known_timezone`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytz

DEFAULT_TIMEZONE = "America/Chicago"

# The names pandas can localize to. pytz's list is fixed per release, so ingest (which warns
# about unknown names) and the report (which replaces them by the default) always agree.
KNOWN_TIMEZONES: frozenset[str] = frozenset(pytz.all_timezones)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_known_timezone(name: str) -> bool:
    return name in KNOWN_TIMEZONES


def format_utc(value: datetime) -> str:
    """An aware datetime -> ISO 8601 in UTC ending in ``Z`` (fractional seconds only when there
    are any). Raises ``OverflowError`` for one outside the years 1..9999 in UTC."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


def format_instant(us: int) -> str:
    """UTC microseconds -> ISO 8601 ending in ``Z``, e.g. ``2023-01-25T12:00:00Z``."""
    return format_utc(_EPOCH + timedelta(microseconds=int(us)))


def format_instant_us(us: int) -> str:
    """UTC microseconds -> ISO 8601 with microseconds, ``2023-01-25T12:09:39.388884Z``."""
    return pd.Timestamp(int(us), unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_local(us: int, zone: str) -> str:
    """UTC microseconds -> local wall-clock time with its offset, ``2023-01-25T06:09:39-06:00``."""
    return pd.Timestamp(int(us), unit="us", tz="UTC").tz_convert(zone).isoformat()


def format_datetime(value: datetime | None, *, seconds: bool = False) -> str | None:
    """A stored datetime -> ISO 8601 UTC ending in ``Z`` (naive values are UTC; ``seconds``:
    without the fraction); None stays None."""
    if value is None:
        return None
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return format_utc(value.replace(microsecond=0) if seconds else value)


def to_us(instant) -> int:
    """A datetime-like (naive = UTC) -> UTC microseconds since the epoch."""
    stamp = pd.Timestamp(instant)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.value // 1000  # .value is nanoseconds whatever the unit


def read_iso(text: str) -> datetime | None:
    """Any ISO 8601 instant (naive = UTC, ``UTC`` suffix allowed), whatever its year; else None."""
    cleaned = re.sub(r"(?i)\s*utc$", "", text.strip())
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_TIME_PATTERN = r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$"

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


# Special dates before 2000 or more than a year ahead are taken for typos (1923 for 2023), as polls.
EARLIEST_DATE = pd.Timestamp("2000-01-01")
LATEST_DATE_AHEAD = pd.DateOffset(years=1)
_DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # ASCII digits: a regex's \d takes every script's
_DAY_NS = 86_400 * 10**9


def latest_date() -> int:
    """The last date accepted: one year after today (UTC), in days since 1970-01-01."""
    return (pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + LATEST_DATE_AHEAD).value // _DAY_NS


def parse_dates(values: pd.Series) -> pd.Series:
    """``YYYY-MM-DD`` (surrounding spaces allowed) -> days since 1970-01-01 (float64); a text that
    is not a real calendar date (``2023-02-30``), or a date outside 2000-01-01 .. one year after
    today (UTC) -> NaN. Each distinct text is parsed once."""
    codes, texts = pd.factorize(values)
    texts = pd.Series(texts, dtype=object).str.strip()
    shaped = texts.str.fullmatch(_DATE_PATTERN).fillna(False).astype(bool)
    parsed = pd.to_datetime(texts.where(shaped), format="%Y-%m-%d", errors="coerce")
    days = np.full(len(texts), np.nan)
    read = parsed.notna().to_numpy()
    days[read] = parsed[read].to_numpy().astype("datetime64[D]").astype(np.int64)
    with np.errstate(invalid="ignore"):
        days[(days < EARLIEST_DATE.value // _DAY_NS) | (days > latest_date())] = np.nan
    return pd.Series(np.append(days, np.nan)[codes], index=values.index)


def parse_date(text: str) -> int:
    """One date a user gave (``YYYY-MM-DD``) -> days since 1970-01-01, within the range of
    :func:`parse_dates`. Raises ``ValueError`` with a readable message."""
    value = parse_dates(pd.Series([str(text)], dtype=object)).iloc[0]
    if not pd.isna(value):
        return int(value)
    if not re.fullmatch(_DATE_PATTERN, str(text).strip()):
        raise ValueError(f"cannot read {text!r} as a date; use YYYY-MM-DD, e.g. 2023-01-23")
    try:
        date.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a real calendar date (YYYY-MM-DD, e.g. 2023-01-23)") from None
    raise ValueError(
        f"{text!r} is outside the accepted range: from {EARLIEST_DATE.date()} to one year after today "
        f"({format_date(latest_date())})"
    )


def format_date(days: int) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD``."""
    return str(np.datetime64(int(days), "D"))


def format_clock(seconds: int) -> str:
    """Seconds after local midnight -> ``HH:MM:SS`` (``24:00:00`` stays so): a clock as stored."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def parse_instant(text: str) -> int:
    """An ``as_of`` given by a user -> UTC microseconds. Same forms and range as the poll feed.

    Raises ``ValueError`` with a readable message: "cannot read" for text that is not an
    instant, "outside the accepted range" (with the range) for an instant the feed would refuse.
    """
    value = parse_timestamps(pd.Series([str(text)])).iloc[0]
    if not pd.isna(value):
        return int(value)
    instant = read_iso(str(text))
    if instant is None:
        raise ValueError(
            f"cannot read {text!r} as an instant; use e.g. 2023-01-25T12:00:00Z or 2023-01-25 12:00:00 UTC"
        )
    latest = (datetime.now(UTC) + LATEST_POLL_AHEAD.to_pytimedelta()).replace(microsecond=0)
    try:
        shown = f"{text!r} ({format_utc(instant)})"
    except OverflowError:  # e.g. year 1 with a positive offset: no UTC date to show
        shown = repr(text)
    raise ValueError(
        f"{shown} is outside the accepted range: from "
        f"{format_utc(EARLIEST_POLL.to_pydatetime())} to one day after the current time ({format_utc(latest)})"
    )


MAX_PERIODS = 6  # extra periods one report may ask for
MAX_PERIOD_DAYS = 92  # the longest period, in days
_PERIOD_PATTERN = re.compile(r"(\d{1,4})([hd])")
_PERIOD_UNIT_US = {"h": 3_600_000_000, "d": 86_400_000_000}


def parse_periods(text: str | None) -> tuple[tuple[str, int], ...]:
    """A report's extra periods, ``"30d,2h"`` -> ``(("30d", 2592000000000), ("2h", 7200000000))``.

    A comma-separated list of ``Nh`` (hours) or ``Nd`` (days), ``N`` a whole number from 1, at
    most :data:`MAX_PERIODS` of them, each at most :data:`MAX_PERIOD_DAYS` days, none twice; spaces
    around items are ignored and the name is written without leading zeros (``030d`` is ``30d``).
    Lengths are microseconds. Empty or None -> ``()``. Raises ``ValueError`` with a readable message.
    """
    if text is None or not str(text).strip():
        return ()
    periods: list[tuple[str, int]] = []
    for item in str(text).split(","):
        match = _PERIOD_PATTERN.fullmatch(item.strip().lower())
        if not match or int(match[1]) == 0:
            raise ValueError(
                f"periods: cannot read {item.strip()[:40]!r}; give whole numbers of hours or days, e.g. 30d,2h"
            )
        name, length = f"{int(match[1])}{match[2]}", int(match[1]) * _PERIOD_UNIT_US[match[2]]
        if length > MAX_PERIOD_DAYS * _PERIOD_UNIT_US["d"]:
            raise ValueError(f"periods: {name} is longer than {MAX_PERIOD_DAYS}d, the longest period")
        if any(name == seen for seen, _ in periods):
            raise ValueError(f"periods: {name} is given twice")
        periods.append((name, length))
    if len(periods) > MAX_PERIODS:
        raise ValueError(f"periods: {len(periods)} given, at most {MAX_PERIODS}")
    return tuple(periods)
