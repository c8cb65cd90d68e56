"""Instants, clocks and time zones: how storemon reads and writes time, in one place.

Every instant inside storemon is an integer: UTC microseconds since the epoch (``us``). Text
meets those integers only here:

* formatting -- :func:`format_instant` (``2023-01-25T12:00:00Z``, fractional seconds only when
  there are any: the API's form), :func:`format_instant_us` (always six decimals: the
  timeline's form), :func:`format_local` (local wall-clock time with its offset) and
  :func:`format_datetime` (a datetime from the database);
* reading -- :func:`to_us` (anything pandas reads as an instant; naive means UTC) and
  :func:`read_iso` (any ISO 8601 instant, whatever its year);
* time zones -- :data:`DEFAULT_TIMEZONE`, the zone of a store without a known one
  (docs/report-rules.md), and the names that are known (:func:`is_known_timezone`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytz

DEFAULT_TIMEZONE = "America/Chicago"

# The names pandas can localize to. pytz's list is fixed per release, so ingest (which warns
# about unknown names) and the report (which replaces them by the default) always agree.
KNOWN_TIMEZONES: frozenset[str] = frozenset(pytz.all_timezones)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def is_known_timezone(name: str) -> bool:
    return name in KNOWN_TIMEZONES


def format_utc(value: datetime) -> str:
    """An aware datetime -> ISO 8601 in UTC ending in ``Z`` (fractional seconds only when there
    are any). Raises ``OverflowError`` for one outside the years 1..9999 in UTC."""
    text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
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
    value = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
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
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
