"""Brute-force reference implementation of the storemon report (docs/report-rules.md).

This module exists only so tests can check the real report engine against an
independent, deliberately naive computation.  It imports nothing from the
``storemon`` package and uses no interval arithmetic: every decision is made
per one-second sample.

Method
------
For each store that has at least one poll at or before ``now``:

1. **Business intervals in UTC.**  For every local calendar day from two days
   before the earliest relevant instant (the earliest poll or ``now - 7d``) to
   two days after ``now``, each business-hours row for that weekday gives one
   local wall-clock interval ``[start, end)`` (docs/report-rules.md):

   * ``end`` of ``23:59:59`` or ``24:00:00`` -> midnight ending the day;
   * ``end < start`` -> ``end`` is on the next day (overnight row);
   * ``end == start`` -> open 24 h: until the same wall time the next day;
   * a store with no rows at all is open 24x7; days without rows are closed;
     several rows a day simply give several intervals (membership is "in any").

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

2. **Samples.**  The week window ``[now-7d, now)`` is sampled at the instants
   ``now - k s`` for ``k = 1 .. 604800``; each sample stands for one second.
   A sample is in business hours iff it lies in some ``[start_utc, end_utc)``.

3. **Counted polls.**  Polls at or before ``now`` whose own instant is in
   business hours by the same test (intervals cover the polls' days too).

4. **Nearest poll.**  Each business sample takes the status of the nearest
   counted poll in time, before or after; on an exact tie the LATER poll wins
   (a poll speaks for ``[midpoint with predecessor, midpoint with successor)``).
   A store with no counted poll gets 0 everywhere.

5. **Counting.**  ``uptime_last_hour`` = number of business samples with
   ``k <= 3600`` whose nearest counted poll is active; likewise day
   (``k <= 86400``) and week (all samples), and downtime with inactive.
   All figures are in SECONDS, unrounded.

Everything is held as int64 microseconds since the Unix epoch (UTC).

:func:`report_csv` turns those seconds into the report's CSV text by the documented rounding;
:func:`business_time` gives each store's business seconds per window and how many polls count;
:func:`counted_polls` lists them.
"""

from __future__ import annotations

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
]

DEFAULT_TZ = "America/Chicago"
UTC = UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000  # microseconds per second
HOUR_S, DAY_S, WEEK_S = 3600, 86400, 7 * 86400
COLUMNS = [
    "store_id",
    "uptime_last_hour",
    "uptime_last_day",
    "uptime_last_week",
    "downtime_last_hour",
    "downtime_last_day",
    "downtime_last_week",
]


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


def business_intervals_utc(
    rows: list[tuple[int, str, str]] | None, zi: ZoneInfo, first_day: date, last_day: date
) -> list[tuple[int, int]] | None:
    """UTC [start, end) microsecond intervals for local days first_day..last_day.

    ``rows`` are (weekday, start_time_local, end_time_local).  ``None`` (no rows
    at all) means open 24x7 and is returned as ``None``.
    """
    if not rows:
        return None
    out = []
    d = first_day
    while d <= last_day:
        for day, start_s, end_s in rows:
            if day != d.weekday():
                continue
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
            if e_us > s_us:
                out.append((s_us, e_us))
        d += timedelta(days=1)
    return out


def _in_business(t_us: np.ndarray, intervals: list[tuple[int, int]] | None) -> np.ndarray:
    """Per-instant membership: True iff t lies in some [start, end)."""
    if intervals is None:
        return np.ones(t_us.shape, dtype=bool)
    mask = np.zeros(t_us.shape, dtype=bool)
    for s, e in intervals:
        mask |= (t_us >= s) & (t_us < e)
    return mask


# --------------------------------------------------------------------------- report


def brute_force_report(
    polls: pd.DataFrame, hours: pd.DataFrame, timezones: pd.DataFrame, now: datetime
) -> pd.DataFrame:
    """Brute-force report (docs/report-rules.md); all figures in seconds, unrounded (see module doc)."""
    now_us = _now_us(now)

    # ---- polls at or before now, per store (duplicate (store, ts): last row wins)
    p = pd.DataFrame(
        {
            "store_id": polls["store_id"].astype(str).to_numpy(),
            "t": _series_to_us(polls["timestamp_utc"]) if len(polls) else np.array([], np.int64),
            "active": polls["status"].astype(str).str.strip().str.lower().eq("active").to_numpy(),
        }
    )
    p = p[p["t"] <= now_us]
    p = p.drop_duplicates(subset=["store_id", "t"], keep="last")

    # ---- business-hours rows per store
    day_col = next((c for c in ("day", "dayOfWeek", "day_of_week") if c in hours.columns), None)
    rows_by_store: dict[str, list] = {}
    if day_col is not None:
        for sid, day, st, en in zip(
            hours["store_id"].astype(str), hours[day_col], hours["start_time_local"], hours["end_time_local"]
        ):
            rows_by_store.setdefault(sid, []).append((int(day), st, en))

    # ---- time zones (later row wins)
    tz_by_store: dict[str, object] = {}
    if "timezone_str" in timezones.columns:
        for sid, name in zip(timezones["store_id"].astype(str), timezones["timezone_str"]):
            tz_by_store[sid] = name

    # ---- the samples: now - k seconds, k = 1..WEEK_S (index k-1)
    k = np.arange(1, WEEK_S + 1, dtype=np.int64)
    samples = now_us - k * US
    in_hour, in_day = k <= HOUR_S, k <= DAY_S

    out = []
    for sid, g in sorted(p.groupby("store_id", sort=False), key=lambda kv: kv[0]):
        zi = resolve_zone(tz_by_store.get(sid))
        earliest = min(int(g["t"].min()), now_us - WEEK_S * US)
        first_day = _from_us(earliest).date() - timedelta(days=2)
        last_day = _from_us(now_us).date() + timedelta(days=2)
        intervals = business_intervals_utc(rows_by_store.get(sid), zi, first_day, last_day)

        # counted polls: own instant inside business hours
        pt = g["t"].to_numpy(np.int64)
        pa = g["active"].to_numpy(bool)
        keep = _in_business(pt, intervals)
        pt, pa = pt[keep], pa[keep]
        order = np.argsort(pt, kind="stable")
        pt, pa = pt[order], pa[order]

        row = {"store_id": sid}
        if len(pt) == 0:
            for c in COLUMNS[1:]:
                row[c] = 0
            out.append(row)
            continue

        biz = _in_business(samples, intervals)

        # nearest counted poll per sample; exact tie -> the later poll
        nxt = np.searchsorted(pt, samples, side="left")  # first poll with time >= sample
        prv = nxt - 1  # last poll with time < sample
        nxt_c = np.minimum(nxt, len(pt) - 1)
        prv_c = np.maximum(prv, 0)
        d_next = np.where(nxt < len(pt), pt[nxt_c] - samples, np.iinfo(np.int64).max)
        d_prev = np.where(prv >= 0, samples - pt[prv_c], np.iinfo(np.int64).max)
        choose = np.where(d_next <= d_prev, nxt_c, prv_c)
        active = pa[choose]

        up = biz & active
        down = biz & ~active
        row["uptime_last_hour"] = int(np.count_nonzero(up & in_hour))
        row["uptime_last_day"] = int(np.count_nonzero(up & in_day))
        row["uptime_last_week"] = int(np.count_nonzero(up))
        row["downtime_last_hour"] = int(np.count_nonzero(down & in_hour))
        row["downtime_last_day"] = int(np.count_nonzero(down & in_day))
        row["downtime_last_week"] = int(np.count_nonzero(down))
        out.append(row)

    return pd.DataFrame(out, columns=COLUMNS)


# --------------------------------------------------------------------------- business time alone


def business_time(polls: pd.DataFrame, hours: pd.DataFrame, timezones: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Per store with a poll at or before ``now``: its business seconds in the last hour, day and
    week (``business_hour``, ``business_day``, ``business_week``, counted on the same one-second
    samples as :func:`brute_force_report`, statuses ignored) and ``counted_polls``, how many of
    its polls at or before ``now`` lie inside its business hours."""
    now_us = _now_us(now)
    t = _series_to_us(polls["timestamp_utc"]) if len(polls) else np.array([], np.int64)
    p = pd.DataFrame({"store_id": polls["store_id"].astype(str).to_numpy(), "t": t})
    p = p[p["t"] <= now_us].drop_duplicates()
    day_col = next((c for c in ("day", "dayOfWeek", "day_of_week") if c in hours.columns), None)
    k = np.arange(1, WEEK_S + 1, dtype=np.int64)
    samples = now_us - k * US
    out = []
    for sid, g in sorted(p.groupby("store_id", sort=False), key=lambda kv: kv[0]):
        rows, zi = _store_week(sid, hours, timezones, day_col)
        earliest = min(int(g["t"].min()), now_us - WEEK_S * US)
        intervals = business_intervals_utc(
            rows, zi, _from_us(earliest).date() - timedelta(days=2), _from_us(now_us).date() + timedelta(days=2)
        )
        biz = _in_business(samples, intervals)
        out.append(
            {
                "store_id": sid,
                "business_hour": int(np.count_nonzero(biz[:HOUR_S])),
                "business_day": int(np.count_nonzero(biz[:DAY_S])),
                "business_week": int(np.count_nonzero(biz)),
                "counted_polls": int(np.count_nonzero(_in_business(g["t"].to_numpy(np.int64), intervals))),
            }
        )
    return pd.DataFrame(out, columns=["store_id", "business_hour", "business_day", "business_week", "counted_polls"])


def counted_polls(polls: pd.DataFrame, hours: pd.DataFrame, timezones: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """The counted polls (at or before ``now``, inside the store's business hours) of every
    store: ``store_id``, ``t`` (UTC microseconds), ``active``; sorted by store then time."""
    now_us = _now_us(now)
    p = pd.DataFrame(
        {
            "store_id": polls["store_id"].astype(str).to_numpy(),
            "t": _series_to_us(polls["timestamp_utc"]) if len(polls) else np.array([], np.int64),
            "active": polls["status"].astype(str).str.strip().str.lower().eq("active").to_numpy(),
        }
    )
    p = p[p["t"] <= now_us].drop_duplicates(subset=["store_id", "t"], keep="last")
    day_col = next((c for c in ("day", "dayOfWeek", "day_of_week") if c in hours.columns), None)
    kept = []
    for sid, g in sorted(p.groupby("store_id", sort=False), key=lambda kv: kv[0]):
        rows, zi = _store_week(sid, hours, timezones, day_col)
        intervals = business_intervals_utc(
            rows,
            zi,
            _from_us(int(g["t"].min())).date() - timedelta(days=2),
            _from_us(now_us).date() + timedelta(days=2),
        )
        kept.append(g[_in_business(g["t"].to_numpy(np.int64), intervals)].sort_values("t"))
    if not kept:
        return p.iloc[:0].reset_index(drop=True)
    return pd.concat(kept, ignore_index=True)


# --------------------------------------------------------------------------- the report's text


def report_csv(brute: pd.DataFrame) -> str:
    """The report CSV that :func:`brute_force_report`'s seconds make under docs/report-rules.md:
    minutes for the hour, hours for the day and week, ``numpy.round`` to 2 decimals (a tie goes
    to the even digit), written with two decimals; rows sorted by store_id as text; an id
    holding a comma, a quote, CR or LF, or starting or ending with a space, quoted."""
    lines = [",".join(COLUMNS)]
    for row in sorted(brute.to_dict("records"), key=lambda r: r["store_id"]):
        sid = row["store_id"]
        if any(c in sid for c in ',"\r\n') or sid != sid.strip(" "):
            sid = '"' + sid.replace('"', '""') + '"'
        figures = [np.round(row[c] / (60 if c.endswith("_hour") else 3600), 2) for c in COLUMNS[1:]]
        lines.append(",".join([sid] + [f"{f:.2f}" for f in figures]))
    return "\n".join(lines) + "\n"


def _store_week(sid: str, hours: pd.DataFrame, timezones: pd.DataFrame, day_col: str | None):
    """One store's business-hours rows ``(day, start, end)`` as given, and its zone."""
    mine = hours[hours["store_id"].astype(str) == sid]
    rows = (
        [(int(d), st, en) for d, st, en in zip(mine[day_col], mine["start_time_local"], mine["end_time_local"])]
        if day_col
        else []
    )
    zone = timezones[timezones["store_id"].astype(str) == sid]["timezone_str"] if "timezone_str" in timezones else []
    return rows, resolve_zone(zone.iloc[-1] if len(zone) else None)
