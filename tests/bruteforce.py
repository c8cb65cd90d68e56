"""Brute-force reference implementation of the storemon report (docs/report-rules.md).

This module exists only so tests can check the real report engine against an
independent, deliberately naive computation.  It imports nothing from the
``storemon`` package and uses no interval arithmetic: every decision is made
per one-second sample.

Method
------
For each store that has at least one poll at or before ``now``:

1. **Business intervals in UTC.**  For every local calendar date from two days
   before the earliest relevant instant (the earliest poll or the start of the
   longest window) to two days after ``now``, the date's local wall-clock
   intervals ``[start, end)`` (docs/report-rules.md, issue 19) are:

   * on a **special date** of the store (a row of ``special``): one interval per
     special row of that date; a row whose start and end are both empty
     (*closed*) gives none.  The store's weekly rows give nothing that date;
   * on any other date: one interval per weekly row for the date's weekday; a
     store with no weekly rows has the row ``00:00``-``24:00`` every weekday
     (open 24x7), so a special date of such a store is open exactly as its
     special rows say;
   * each interval belongs to the date on which it starts, wherever it ends: a
     Friday ``22:00``-``02:00`` row runs into Saturday whatever Saturday is;
   * the end rules, for weekly and special rows alike: ``end`` of ``23:59:59``
     or ``24:00:00`` -> midnight ending the date; ``end < start`` -> ``end`` is
     on the next date (overnight); ``end == start`` -> open 24 h, until the
     same wall time the next date;
   * a store with neither weekly rows nor special dates is open 24x7 and gets
     no intervals at all (every instant is in business hours).

   Each end point is converted local -> UTC with :mod:`zoneinfo` (not pandas,
   not pytz) by :func:`local_to_utc`: an ambiguous wall time (autumn) takes its
   first occurrence (``fold=0``); a non-existent wall time (spring gap) maps to
   the transition instant, found by bisection over whole seconds.  Time zone:
   the store's ``timezone_str``; missing or unknown -> ``America/Chicago``.
   (Caveat: pandas 3.1's ``tz_localize(nonexistent="shift_forward")``, which the
   rules mention, does NOT return the transition instant in some zones -- e.g.
   America/Anchorage 2023-03-12 02:00 -> 04:00 AKDT, and the sub-hour / 2 h gaps
   of Australia/Lord_Howe, Pacific/Chatham, Antarctica/Troll.  This module
   follows the rules' stated meaning, "the first instant after the gap".)

   An instant is in business hours iff some interval contains it: the number of
   intervals starting at or before it, less the number ending at or before it,
   is positive (intervals may overlap; nothing is merged).

2. **Windows.**  The hour, day and week, then each of ``periods`` (``"Nh"`` or
   ``"Nd"``: N hours or days), all ending at ``now``.

3. **Samples.**  The instants ``now - k s`` for ``k = 1 .. K``, K the longest
   window in seconds; each sample stands for one second, and a window of W
   seconds holds the samples with ``k <= W``.

4. **Counted polls.**  Polls at or before ``now`` whose own instant is in
   business hours by the same test (intervals cover the polls' dates too).

5. **Nearest poll.**  Each business sample takes the status of the nearest
   counted poll in time, before or after, however far; on an exact tie the
   LATER poll wins (a poll speaks for ``[midpoint with predecessor, midpoint
   with successor)``).  A store with no counted poll gets 0 everywhere.

6. **Counting.**  ``uptime_last_<window>`` = number of business samples of the
   window whose nearest counted poll is active; ``downtime_last_<window>``
   likewise with inactive.  All figures are in SECONDS, unrounded.  Columns:
   the standard seven, then ``uptime_last_<p>``, ``downtime_last_<p>`` for each
   period ``p`` in the order given.

Everything is held as int64 microseconds since the Unix epoch (UTC).  Samples
are taken a million at a time, so a 92-day window (about 8 million samples)
needs tens of megabytes per store, not gigabytes.

The feeds are frames shaped like the files (docs/data-formats.md): ``polls``
(store_id, timestamp_utc, status), ``hours`` (store_id, day or dayOfWeek or
day_of_week, start_time_local, end_time_local), ``timezones`` (store_id,
timezone_str) and ``special`` (store_id, date as ``YYYY-MM-DD``,
start_time_local, end_time_local; both times empty -- or missing, as pandas
reads an empty CSV field -- for *closed*).

:func:`report_csv` turns those seconds into the report's CSV text by the documented rounding;
:func:`business_time` gives each store's business seconds per window and how many polls count;
:func:`counted_polls` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

__all__ = [
    "brute_force_report",
    "business_time",
    "counted_polls",
    "report_csv",
    "local_to_utc",
    "business_intervals_utc",
    "resolve_zone",
    "period_seconds",
]

DEFAULT_TZ = "America/Chicago"
UTC = UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000  # microseconds per second
HOUR_S, DAY_S, WEEK_S = 3600, 86400, 7 * 86400
STANDARD_WINDOWS = [("hour", HOUR_S), ("day", DAY_S), ("week", WEEK_S)]
COLUMNS = [
    "store_id",
    "uptime_last_hour",
    "uptime_last_day",
    "uptime_last_week",
    "downtime_last_hour",
    "downtime_last_day",
    "downtime_last_week",
]
CHUNK = 1 << 20  # samples handled at once
WHOLE_DAY = ("00:00:00", "24:00:00")  # the weekly row of a store open 24x7


# --------------------------------------------------------------------------- helpers


def _to_us(dt: datetime) -> int:
    """Aware datetime -> int microseconds since the epoch."""
    return (dt - EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def _now_us(now) -> int:
    dt = pd.Timestamp(now).to_pydatetime(warn=False)  # accepts datetime / Timestamp / str
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive 'now' is taken as UTC
    return _to_us(dt.astimezone(UTC))


def _series_to_us(values: pd.Series) -> np.ndarray:
    """Timestamps (aware or naive-as-UTC) -> int64 microseconds since the epoch."""
    ts = pd.to_datetime(values, utc=True)
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).to_numpy(np.int64)


def resolve_zone(name) -> ZoneInfo:
    """The store's zone; missing, empty or unknown names fall back to America/Chicago."""
    if isinstance(name, str) and name.strip():
        try:
            return ZoneInfo(name.strip())
        except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, ...
            pass
    return ZoneInfo(DEFAULT_TZ)


def _parse_time(text) -> tuple[int, int, int]:
    parts = str(text).strip().split(":")
    if len(parts) == 2:
        parts.append("0")
    h, m, s = (int(float(p)) for p in parts)
    return h, m, s


def _offset_at(us: int, zi: ZoneInfo) -> timedelta:
    return _from_us(us).astimezone(zi).utcoffset()


def local_to_utc(naive: datetime, zi: ZoneInfo) -> int:
    """Local wall time -> UTC microseconds, as docs/report-rules.md / pandas
    ``tz_localize(ambiguous=True, nonexistent="shift_forward")``.

    * existing wall time that occurs twice -> first occurrence (fold=0);
    * non-existent wall time (spring gap) -> the transition instant, i.e. the
      first instant after the gap.
    """
    aware0 = naive.replace(tzinfo=zi, fold=0)
    u0 = _to_us(aware0.astimezone(UTC))
    back0 = _from_us(u0).astimezone(zi).replace(tzinfo=None)
    if back0 == naive:
        u1 = _to_us(naive.replace(tzinfo=zi, fold=1).astimezone(UTC))
        return min(u0, u1)  # fold=0 already is the first occurrence; min() is belt and braces
    # Non-existent wall time: fold=0 and fold=1 use the offsets before/after the
    # transition; the transition instant lies between the two UTC readings.
    u1 = _to_us(naive.replace(tzinfo=zi, fold=1).astimezone(UTC))
    lo, hi = min(u0, u1), max(u0, u1)
    off_after = _offset_at(hi, zi)
    assert _offset_at(lo, zi) != off_after, "gap detected but no offset change found"
    # Bisection over whole seconds: smallest instant in (lo, hi] already at off_after.
    lo_s, hi_s = lo // US, -(-hi // US)
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset_at(mid * US, zi) == off_after:
            hi_s = mid
        else:
            lo_s = mid
    return hi_s * US


def _interval(d: date, start_s: str, end_s: str, zi: ZoneInfo) -> tuple[int, int] | None:
    """The UTC [start, end) microseconds of the local row ``start_s``-``end_s`` starting on date ``d``
    (docs/report-rules.md#business-hours); None if it is empty in real time."""
    sh, sm, ss = _parse_time(start_s)
    eh, em, es = _parse_time(end_s)
    start = datetime.combine(d, time(sh, sm, ss))
    if (eh, em, es) in ((23, 59, 59), (24, 0, 0)):
        end = datetime.combine(d + timedelta(days=1), time(0, 0, 0))
    elif (eh, em, es) < (sh, sm, ss):
        end = datetime.combine(d + timedelta(days=1), time(eh, em, es))
    elif (eh, em, es) == (sh, sm, ss):
        end = start + timedelta(days=1)  # same wall time next day (naive arithmetic)
    else:
        end = datetime.combine(d, time(eh, em, es))
    s_us, e_us = local_to_utc(start, zi), local_to_utc(end, zi)
    return (s_us, e_us) if e_us > s_us else None


def business_intervals_utc(
    rows: list[tuple[int, str, str]] | None,
    zi: ZoneInfo,
    first_day: date,
    last_day: date,
    *,
    special: dict[date, list[tuple[str, str]]] | None = None,
) -> list[tuple[int, int]] | None:
    """UTC [start, end) microsecond intervals starting on local dates first_day..last_day.

    ``rows`` are the weekly rows (weekday, start_time_local, end_time_local); ``special`` maps each
    special date of the store to its (start, end) rows, an empty list for *closed*.  On a special
    date only its rows give intervals; on other dates the weekly rows of the weekday.  No weekly
    rows means ``00:00``-``24:00`` every weekday; with no special dates either (open 24x7) the
    answer is ``None``.
    """
    special = special or {}
    if not rows and not special:
        return None
    weekly = list(rows) if rows else [(day, *WHOLE_DAY) for day in range(7)]
    out = []
    d = first_day
    while d <= last_day:
        if d in special:
            todays = special[d]
        else:
            todays = [(st, en) for day, st, en in weekly if day == d.weekday()]
        for start_s, end_s in todays:
            interval = _interval(d, start_s, end_s, zi)
            if interval is not None:
                out.append(interval)
        d += timedelta(days=1)
    return out


def _in_business(t_us: np.ndarray, intervals: list[tuple[int, int]] | None) -> np.ndarray:
    """Per-instant membership: True iff t lies in some [start, end), i.e. more intervals start at
    or before t than end at or before t."""
    if intervals is None:
        return np.ones(t_us.shape, dtype=bool)
    starts = np.sort(np.array([s for s, _ in intervals], dtype=np.int64))
    ends = np.sort(np.array([e for _, e in intervals], dtype=np.int64))
    return np.searchsorted(starts, t_us, side="right") - np.searchsorted(ends, t_us, side="right") > 0


def period_seconds(period: str) -> int:
    """A period ``Nh`` or ``Nd`` (N a whole number) in seconds."""
    match = re.fullmatch(r"(\d+)([hd])", period)
    if match is None:
        raise ValueError(f"not a period (Nh or Nd): {period!r}")
    return int(match[1]) * (HOUR_S if match[2] == "h" else DAY_S)


def _windows(periods: Sequence[str]) -> list[tuple[str, int]]:
    """(name, seconds) of every window: hour, day, week, then the periods in the order given."""
    return STANDARD_WINDOWS + [(p, period_seconds(p)) for p in periods]


def _columns(periods: Sequence[str]) -> list[str]:
    return COLUMNS + [f"{kind}_last_{p}" for p in periods for kind in ("uptime", "downtime")]


def _sample_chunks(now_us: int, count: int) -> Iterator[tuple[slice, np.ndarray]]:
    """The samples ``now - k s``, k = count..1, oldest first, a chunk at a time: (index range,
    instants); the sample ``now - k s`` has index ``count - k``, so a window of W seconds is the
    last W indexes."""
    for lo in range(0, count, CHUNK):
        hi = min(lo + CHUNK, count)
        yield slice(lo, hi), now_us - np.arange(count - lo, count - hi, -1, dtype=np.int64) * US


def _empty_text(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


class _Feeds:
    """The hours, zones and special days of every store, read once."""

    def __init__(self, hours: pd.DataFrame, timezones: pd.DataFrame, special: pd.DataFrame | None):
        day_col = next((c for c in ("day", "dayOfWeek", "day_of_week") if c in hours.columns), None)
        self.weekly: dict[str, list[tuple[int, str, str]]] = {}
        if day_col is not None:
            for sid, day, st, en in zip(
                hours["store_id"].astype(str), hours[day_col], hours["start_time_local"], hours["end_time_local"]
            ):
                self.weekly.setdefault(sid, []).append((int(day), st, en))
        self.zone: dict[str, object] = {}  # a later row wins
        if "timezone_str" in timezones.columns:
            for sid, name in zip(timezones["store_id"].astype(str), timezones["timezone_str"]):
                self.zone[sid] = name
        self.special: dict[str, dict[date, list[tuple[str, str]]]] = {}
        if special is not None:
            for sid, day, st, en in zip(
                special["store_id"].astype(str), special["date"], special["start_time_local"], special["end_time_local"]
            ):
                rows = self.special.setdefault(sid, {}).setdefault(date.fromisoformat(str(day)[:10]), [])
                if _empty_text(st) and _empty_text(en):
                    continue  # closed: the date is special, with no interval
                if _empty_text(st) or _empty_text(en):
                    raise ValueError(f"special row of {sid} on {day}: one time empty, not closed")
                rows.append((st, en))

    def intervals(self, sid: str, earliest_us: int, now_us: int) -> list[tuple[int, int]] | None:
        """The store's business intervals on local dates two days either side of earliest..now."""
        first_day = _from_us(earliest_us).date() - timedelta(days=2)
        last_day = _from_us(now_us).date() + timedelta(days=2)
        zi = resolve_zone(self.zone.get(sid))
        return business_intervals_utc(self.weekly.get(sid), zi, first_day, last_day, special=self.special.get(sid))


def _polls(polls: pd.DataFrame, now_us: int) -> pd.DataFrame:
    """Polls at or before now: store_id, t (UTC microseconds), active; a duplicate (store, t) keeps
    its last row."""
    p = pd.DataFrame(
        {
            "store_id": polls["store_id"].astype(str).to_numpy(),
            "t": _series_to_us(polls["timestamp_utc"]) if len(polls) else np.array([], np.int64),
            "active": polls["status"].astype(str).str.strip().str.lower().eq("active").to_numpy()
            if "status" in polls
            else np.zeros(len(polls), bool),
        }
    )
    return p[p["t"] <= now_us].drop_duplicates(subset=["store_id", "t"], keep="last")


def _by_store(p: pd.DataFrame):
    return sorted(p.groupby("store_id", sort=False), key=lambda kv: kv[0])


FAR = 1 << 61  # microseconds: a sentinel poll this far from the epoch is never the nearest


def _nearest_active(pt: np.ndarray, pa: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The status of the nearest poll of ``pt`` (sorted, statuses ``pa``) for each sample; an exact
    tie -> the later poll.  Sentinel polls far before and after stand for "no poll there"."""
    times = np.concatenate(([-FAR], pt, [FAR]))
    status = np.concatenate((pa[:1], pa, pa[-1:]))
    nxt = np.searchsorted(times, samples, side="left")  # first poll with time >= sample
    later_is_nearer = times[nxt] - samples <= samples - times[nxt - 1]
    return np.where(later_is_nearer, status[nxt], status[nxt - 1])


# --------------------------------------------------------------------------- report


def brute_force_report(
    polls: pd.DataFrame,
    hours: pd.DataFrame,
    timezones: pd.DataFrame,
    now: datetime,
    *,
    special: pd.DataFrame | None = None,
    periods: Sequence[str] = (),
) -> pd.DataFrame:
    """Brute-force report (docs/report-rules.md); all figures in seconds, unrounded (see module doc)."""
    now_us = _now_us(now)
    windows = _windows(periods)
    columns = _columns(periods)
    count = max(seconds for _, seconds in windows)
    feeds = _Feeds(hours, timezones, special)

    out = []
    for sid, g in _by_store(_polls(polls, now_us)):
        intervals = feeds.intervals(sid, min(int(g["t"].min()), now_us - count * US), now_us)

        # counted polls: own instant inside business hours
        pt = g["t"].to_numpy(np.int64)
        pa = g["active"].to_numpy(bool)
        keep = _in_business(pt, intervals)
        pt, pa = pt[keep], pa[keep]
        order = np.argsort(pt, kind="stable")
        pt, pa = pt[order], pa[order]

        row = dict.fromkeys(columns[1:], 0)
        row["store_id"] = sid
        if len(pt):
            up = np.zeros(count, dtype=bool)  # index count - k: the sample now - k s
            down = np.zeros(count, dtype=bool)
            for index, samples, biz in _business_samples(now_us, count, intervals):
                active = _nearest_active(pt, pa, samples)
                up[index] = biz & active
                down[index] = biz & ~active
            for name, seconds in windows:
                row[f"uptime_last_{name}"] = int(np.count_nonzero(up[count - seconds :]))
                row[f"downtime_last_{name}"] = int(np.count_nonzero(down[count - seconds :]))
        out.append(row)

    return pd.DataFrame(out, columns=columns)


def _business_samples(now_us: int, count: int, intervals):
    """``(index, samples, in business hours)`` for the ``count`` one-second samples before
    ``now``, a chunk at a time (see :func:`_sample_chunks`)."""
    for index, samples in _sample_chunks(now_us, count):
        yield index, samples, _in_business(samples, intervals)


# --------------------------------------------------------------------------- business time alone


def business_time(
    polls: pd.DataFrame,
    hours: pd.DataFrame,
    timezones: pd.DataFrame,
    now: datetime,
    *,
    special: pd.DataFrame | None = None,
    periods: Sequence[str] = (),
) -> pd.DataFrame:
    """Per store with a poll at or before ``now``: its business seconds in each window
    (``business_hour``, ``business_day``, ``business_week``, then ``business_<p>`` for each period,
    counted on the same one-second samples as :func:`brute_force_report`, statuses ignored) and
    ``counted_polls``, how many of its polls at or before ``now`` lie inside its business hours."""
    now_us = _now_us(now)
    windows = _windows(periods)
    count = max(seconds for _, seconds in windows)
    feeds = _Feeds(hours, timezones, special)
    out = []
    for sid, g in _by_store(_polls(polls, now_us)):
        intervals = feeds.intervals(sid, min(int(g["t"].min()), now_us - count * US), now_us)
        biz = np.zeros(count, dtype=bool)
        for index, _samples, in_hours in _business_samples(now_us, count, intervals):
            biz[index] = in_hours
        row = {"store_id": sid}
        for name, seconds in windows:
            row[f"business_{name}"] = int(np.count_nonzero(biz[count - seconds :]))
        row["counted_polls"] = int(np.count_nonzero(_in_business(g["t"].to_numpy(np.int64), intervals)))
        out.append(row)
    return pd.DataFrame(out, columns=["store_id"] + [f"business_{name}" for name, _ in windows] + ["counted_polls"])


def counted_polls(
    polls: pd.DataFrame,
    hours: pd.DataFrame,
    timezones: pd.DataFrame,
    now: datetime,
    *,
    special: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The counted polls (at or before ``now``, inside the store's business hours) of every
    store: ``store_id``, ``t`` (UTC microseconds), ``active``; sorted by store then time."""
    now_us = _now_us(now)
    feeds = _Feeds(hours, timezones, special)
    p = _polls(polls, now_us)
    kept = []
    for sid, g in _by_store(p):
        intervals = feeds.intervals(sid, int(g["t"].min()), now_us)
        kept.append(g[_in_business(g["t"].to_numpy(np.int64), intervals)].sort_values("t"))
    if not kept:
        return p.iloc[:0].reset_index(drop=True)
    return pd.concat(kept, ignore_index=True)


# --------------------------------------------------------------------------- the report's text


def report_csv(brute: pd.DataFrame) -> str:
    """The report CSV that :func:`brute_force_report`'s seconds make under docs/report-rules.md:
    minutes for the hour, hours for the day, the week and every period, ``numpy.round`` to 2
    decimals (a tie goes to the even digit), written with two decimals; the columns of ``brute``
    in its order; rows sorted by store_id as text; an id holding a comma, a quote, CR or LF, or
    starting or ending with a space, quoted."""
    columns = list(brute.columns)
    lines = [",".join(columns)]
    for row in sorted(brute.to_dict("records"), key=lambda r: r["store_id"]):
        sid = row["store_id"]
        if any(c in sid for c in ',"\r\n') or sid != sid.strip(" "):
            sid = '"' + sid.replace('"', '""') + '"'
        figures = [np.round(row[c] / (60 if c.endswith("_last_hour") else 3600), 2) for c in columns[1:]]
        lines.append(",".join([sid] + [f"{f:.2f}" for f in figures]))
    return "\n".join(lines) + "\n"
