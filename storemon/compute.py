"""The report's arithmetic: uptime and downtime inside business hours (docs/report-rules.md).

Pure computation: numpy arrays and pandas frames in, a frame out. No Flask, no SQL -- the
caller (:mod:`storemon.reports`) reads the database and hands the data over.

Units
-----
Every instant is an ``int64`` count of **microseconds since the Unix epoch, UTC**, the precision
of the real feed. Lengths are measured in **half-microseconds** (all instants doubled), so that
the midpoint of two polls, ``(a + b) / 2``, is an exact integer ``a + b``: the arithmetic is exact
and only the final division into minutes / hours rounds.

The rules, and how each is computed
-----------------------------------
1. **Windows.** ``now`` is the latest poll (or the caller's ``as_of``; later polls are ignored).
   The windows are ``[now-1h, now)``, ``[now-24h, now)`` and ``[now-7d, now)``, then any extra
   periods asked for, ``[now-30d, now)`` and the like (:class:`Window`, :func:`report_windows`).

2. **Business hours -> UTC intervals** (:func:`business_intervals`). A row ``(day, start, end)``
   is the local wall-clock interval ``[start, end)`` on every date whose weekday is ``day``.
   ``end`` of ``23:59:59``/``24:00:00`` is the midnight that ends the day; ``end < start`` runs
   past midnight into the next day; ``end == start`` is open 24 h (to the same wall time next
   day). Each end point is converted local -> UTC per date, in the store's zone (missing or
   unknown: ``America/Chicago``) with :func:`localize`: a wall time that occurs twice takes its
   first occurrence, one that does not exist moves to the first instant after the gap. So a
   09:00-17:00 store is open 09:00-17:00 local on both sides of a DST change (8 h each day), and
   a 00:00-05:00 store gets 4 h of real time on the spring day and 6 h on the autumn day.
   Intervals of one store are then united (:func:`merge_intervals`); a store with no rows at
   all is open 24x7, a store with rows is closed on the days that have none.

   **Special days** (:func:`_dated_rows`): an interval belongs to the local date on which it
   starts. On a store's special date the special rows (same forms and end rules; a *closed*
   row gives none) replace the intervals its weekly rows would start that date; intervals
   starting on other dates are untouched, so a Friday 22:00-02:00 row still runs into a closed
   Saturday. A store without weekly rows is open 00:00-24:00 on every other date.

3. **Counted polls.** Only polls whose own instant is inside the store's business hours count.

4. **Nearest-poll interpolation.** Every business instant takes the status of the nearest
   counted poll, before or after it, on any day. Equivalently, counted polls
   ``c_0 < c_1 < ... < c_m`` cut the time line at the midpoints ``(c_{j-1} + c_j) / 2``, and poll
   ``c_j`` speaks for the *segment* ``[mid(c_{j-1}, c_j), mid(c_j, c_{j+1}))``; the first segment
   starts at minus infinity and the last ends at plus infinity. (At an exact midpoint the later
   poll speaks.) The nearest counted poll may lie long before the window: a store polled once,
   a month ago, inside its hours, is "up" or "down" for the whole week by that poll.

5. **Measuring.** With ``B(t)`` the store's business time before ``t`` (a cumulative sum over its
   intervals), the business time inside ``[a, b)`` is ``B(b) - B(a)``. So

       uptime(window)   = sum over active segments   of B(clip(seg_end)) - B(clip(seg_start))
       downtime(window) = sum over inactive segments of the same

   with segment ends clipped to the window. Since the segments cover the whole time line,
   uptime + downtime = business time in the window whenever the store has a counted poll; a
   store with none has no segments and gets 0 and 0.

Worked example (docs/report-rules.md): open Monday 09:00-12:00 UTC, counted polls at 10:14 (active) and
11:15 (inactive). The midpoint is 10:44:30. The active poll's segment is (-inf, 10:44:30), the
inactive one's [10:44:30, +inf). Inside business hours that is 09:00-10:44:30 up = 1 h 44.5 min
= 1.74 h and 10:44:30-12:00 down = 1 h 15.5 min = 1.26 h.

Doing it for every store at once
--------------------------------
No per-store Python loop: stores are laid end to end on one integer axis, store ``k`` owning
``[k * stride, (k + 1) * stride)`` where ``stride`` exceeds the time span looked at. On that axis
every store's intervals, polls and segments are one sorted array, and "which interval holds this
poll", "B(t)" and per-store sums become single ``np.searchsorted`` / ``np.bincount`` calls.

One store, explained
--------------------
:func:`compute_report` is three steps: :func:`count_polls` (rule 3 and the look-back),
:func:`_measure` (rules 4 and 5, through :func:`nearest_poll_segments`) and :func:`report_frame`
(units and rounding). :func:`explain_store` runs the same three on one store and keeps the pieces
-- its business intervals, which polls counted, and each segment cut to business hours -- so a
store's timeline shows where every figure of its report row comes from (docs/report-rules.md).

This module is longer than the others on purpose: the whole of the report's arithmetic, from
business hours to rounded figures, reads top to bottom in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from .times import DEFAULT_TIMEZONE, is_known_timezone, parse_clock, parse_periods, to_us

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR
SECONDS_PER_DAY = 86_400
END_OF_DAY_TIMES = (86_399, 86_400)  # 23:59:59 and 24:00:00 mean "midnight ending the day"


@dataclass(frozen=True)
class Window:
    """A report window ``[now - length_us, now)``; its columns are ``uptime_last_<name>`` and
    ``downtime_last_<name>``, in units of ``unit_us`` (minutes or hours)."""

    name: str
    length_us: int
    unit_us: int


WINDOWS: tuple[Window, ...] = (
    Window("hour", US_PER_HOUR, US_PER_MINUTE),
    Window("day", US_PER_DAY, US_PER_HOUR),
    Window("week", 7 * US_PER_DAY, US_PER_HOUR),
)
WEEK_US = 7 * US_PER_DAY
REPORT_COLUMNS = [
    "store_id",
    "uptime_last_hour",
    "uptime_last_day",
    "uptime_last_week",
    "downtime_last_hour",
    "downtime_last_day",
    "downtime_last_week",
]
_MAX_AXIS = 2**62  # the store-by-store axis must stay inside int64
# The look-back for stores without a recent counted poll goes back in steps that double from
# two days up to 64 days: few rounds for a long history, bounded memory per round.
LOOK_BACK_FIRST_STEP_US = 2 * US_PER_DAY
LOOK_BACK_MAX_STEP_US = 64 * US_PER_DAY

# Fetches older polls for some stores: (store codes, from_us, to_us) -> frame of polls with
# columns store (code), ts_us, active in [from_us, to_us).
FetchOlder = Callable[[np.ndarray, int, int], pd.DataFrame]
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class History:
    """How far the polls handed to :func:`compute_report` reach back, and how to look further.

    ``complete_from_us``: every poll of the stores from this instant on is loaded (None: from
    the earliest loaded poll). A store whose nearest counted poll may lie before it is looked up
    through ``fetch_older`` (steps doubling from two days to 64 days, only for those stores,
    until found or until the store's ``first_poll_us``, one instant per store code).
    """

    complete_from_us: int | None = None
    first_poll_us: np.ndarray | None = None
    fetch_older: FetchOlder | None = None


def report_windows(periods: Sequence[str] | str | None = ()) -> tuple[Window, ...]:
    """The report's windows: hour, day, week, then each extra period (``"30d"``, ``"2h"``; see
    :func:`~storemon.times.parse_periods`) in the order given, in hours."""
    text = periods if periods is None or isinstance(periods, str) else ",".join(periods)
    return WINDOWS + tuple(Window(name, length, US_PER_HOUR) for name, length in parse_periods(text))


def report_columns(windows: Sequence[Window] = WINDOWS) -> list[str]:
    """The report's columns: :data:`REPORT_COLUMNS`, then up and down time of each extra window."""
    extra = [f"{kind}_last_{w.name}" for w in windows[len(WINDOWS) :] for kind in ("uptime", "downtime")]
    return REPORT_COLUMNS + extra


@dataclass
class Schedule:
    """Business hours of the stores of one report, in array form.

    ``store``, ``day``, ``start_s``, ``end_s``: one entry per business-hours row, ``store`` the
    store's code (its index in the report's store list), ``day`` 0 = Monday, times in seconds
    after local midnight as written (23:59:59 = 86399, 24:00:00 = 86400).
    ``zones``: the IANA zone name per store code (unknown or missing names already replaced by
    :data:`~storemon.times.DEFAULT_TIMEZONE`).
    ``special_*``: one entry per special-day row -- ``special_date`` the store's local calendar
    date (days since 1970-01-01), times as above, ``-1`` and ``-1`` for a row that closes the
    whole date.
    """

    store: np.ndarray
    day: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    zones: np.ndarray
    special_store: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    special_date: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    special_start_s: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    special_end_s: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def n_stores(self) -> int:
        return len(self.zones)

    @classmethod
    def build(
        cls,
        n_stores: int,
        hours: pd.DataFrame,
        zone_of_store: pd.Series | None = None,
        special: pd.DataFrame | None = None,
    ) -> Schedule:
        """From an hours frame (store, day, start_s, end_s), zone names indexed by store code,
        and a special-days frame (store, date, start_s, end_s)."""
        zones = np.full(n_stores, DEFAULT_TIMEZONE, dtype=object)
        if zone_of_store is not None and len(zone_of_store):
            names = zone_of_store.astype(object).to_numpy()
            known = np.array([isinstance(z, str) and is_known_timezone(z) for z in names], dtype=bool)
            zones[zone_of_store.index.to_numpy()[known]] = names[known]
        special = {} if special is None else {c: special[c].to_numpy(np.int64) for c in special.columns}
        return cls(
            store=hours["store"].to_numpy(np.int64),
            day=hours["day"].to_numpy(np.int64),
            start_s=hours["start_s"].to_numpy(np.int64),
            end_s=hours["end_s"].to_numpy(np.int64),
            zones=zones,
            **{f"special_{c}": special[c] for c in ("store", "date", "start_s", "end_s") if c in special},
        )

    def subset(self, code_of_store: np.ndarray, zones: np.ndarray) -> Schedule:
        """The rows of the stores with ``code_of_store >= 0``, renumbered to those codes."""
        rows = code_of_store[self.store] >= 0
        special = code_of_store[self.special_store] >= 0
        return Schedule(
            store=code_of_store[self.store][rows],
            day=self.day[rows],
            start_s=self.start_s[rows],
            end_s=self.end_s[rows],
            zones=zones,
            special_store=code_of_store[self.special_store][special],
            special_date=self.special_date[special],
            special_start_s=self.special_start_s[special],
            special_end_s=self.special_end_s[special],
        )


# ---------------------------------------------------------------------------------------------
# Local time -> UTC


def localize(wall_us: np.ndarray, zone: str) -> np.ndarray:
    """Local wall-clock instants (microseconds, as if UTC) -> UTC microseconds (docs/report-rules.md, "Time zones").

    As pandas ``tz_localize(zone, ambiguous=True, nonexistent="shift_forward")`` is documented to
    do: a wall time that occurs twice (autumn) takes its first, daylight-saving occurrence; one
    that does not exist (spring gap) becomes the first instant after the gap, i.e. the transition
    instant itself. (pandas' own ``shift_forward`` misses that instant in a few zones, e.g.
    America/Anchorage and Australia/Lord_Howe, so the rule is applied here, to the zone's offsets.)

    The zone's UTC offsets come from :func:`_offset_segments` as segments of real time: segment
    ``i`` starts at UTC instant ``starts[i]`` and has offset ``offsets[i]``, so it shows wall
    times from ``starts[i] + offsets[i]`` to ``starts[i + 1] + offsets[i]``. A wall time belongs
    to the first segment still showing it -- after an autumn change two segments show it, and
    the first one is the earlier instant -- and converts by that segment's offset. If that
    segment only begins after it, the wall time fell in a spring gap, and the segment's start
    (the transition instant) is its instant. Vectorised: one ``searchsorted`` for all.
    """
    wall_us = np.asarray(wall_us, dtype=np.int64)
    if not len(wall_us):
        return wall_us.copy()
    # Offsets lie within +-1 day, so segments of real time two days either side cover every wall time.
    starts, offsets = _offset_segments(zone, int(wall_us.min()) - 2 * US_PER_DAY, int(wall_us.max()) + 2 * US_PER_DAY)
    shown_until = starts[1:] + offsets[:-1]  # the wall time at which each segment (but the last) ends
    segment = np.searchsorted(shown_until, wall_us, side="right")
    utc = wall_us - offsets[segment]
    return np.maximum(utc, starts[segment])  # before its segment began: in a spring gap


def _offset_segments(zone: str, from_us: int, to_us: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, offsets)``: the UTC offsets of ``zone`` over at least ``[from_us, to_us]``, as
    segments of real time (UTC microseconds) each with one offset; the first starts at or
    before ``from_us``. Built month by month (:func:`_month_offsets`, kept per process)."""
    months = range(_month_of(from_us), _month_of(to_us) + 1)
    parts = [_month_offsets(zone, month) for month in months]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@lru_cache(maxsize=16_384)
def _month_offsets(zone: str, month: int) -> tuple[np.ndarray, np.ndarray]:
    """The offset segments of ``zone`` in one calendar month (months since 1970-01, UTC): the
    month's first instant, then each instant the offset changes at.

    The offsets are pandas' own (``tz_convert``, whatever time-zone database pandas uses),
    sampled every 15 minutes; each change is then found to the microsecond by bisection (the
    offset only changes once between two samples: zones change offsets months apart).
    """
    first = int(np.datetime64(month, "M").astype("datetime64[us]").astype(np.int64))
    last = int(np.datetime64(month + 1, "M").astype("datetime64[us]").astype(np.int64))
    samples = np.arange(first, last + 1, 15 * US_PER_MINUTE, dtype=np.int64)
    offsets = _wall_clock(samples, zone) - samples
    changed = np.flatnonzero(offsets[1:] != offsets[:-1])
    before, after = samples[changed], samples[changed + 1]  # each change lies in (before, after]
    while np.any(after - before > 1):
        mid = before + (after - before) // 2
        moved = _wall_clock(mid, zone) - mid != offsets[changed]
        after, before = np.where(moved, mid, after), np.where(moved, before, mid)
    starts = np.concatenate([[first], after]).astype(np.int64)
    values = np.concatenate([offsets[:1], offsets[changed + 1]]).astype(np.int64)
    starts.flags.writeable = values.flags.writeable = False  # shared by every caller
    return starts, values


def _month_of(us: int) -> int:
    """Months since 1970-01 of a UTC instant (microseconds)."""
    return int(np.datetime64(us, "us").astype("datetime64[M]").astype(np.int64))


def _wall_clock(utc_us: np.ndarray, zone: str) -> np.ndarray:
    """UTC microseconds -> local wall-clock microseconds (as if UTC)."""
    index = pd.DatetimeIndex(utc_us.astype("datetime64[us]")).tz_localize("UTC").tz_convert(zone)
    return index.tz_localize(None).as_unit("us").asi8


# ---------------------------------------------------------------------------------------------
# Business intervals


def business_intervals(schedule: Schedule, stores: np.ndarray, from_us: int, to_us: int):
    """Merged UTC business intervals of ``stores`` covering at least ``[from_us, to_us]``.

    Returns ``(store, start_us, end_us)``: sorted by store then start, disjoint within a store.
    A store with neither hours rows nor a special day in the range gets one interval spanning
    the whole range (open 24x7), clipped to ``[from_us - 3 days, to_us + 3 days]``.
    """
    stores = np.asarray(stores, dtype=np.int64)
    lo_edge, hi_edge = from_us - 3 * US_PER_DAY, to_us + 3 * US_PER_DAY
    # Every local date that can touch the range: UTC offsets lie within +-14 h and an interval
    # lasts at most 24 h past its date, so three days either side is plenty.
    dates = np.arange(from_us // US_PER_DAY - 3, to_us // US_PER_DAY + 3)
    store, date, start_s, end_s, always_open = _dated_rows(schedule, stores, dates)

    end_wall_s = np.where(
        np.isin(end_s, END_OF_DAY_TIMES),
        SECONDS_PER_DAY,  # the midnight ending the day
        np.where(end_s <= start_s, end_s + SECONDS_PER_DAY, end_s),  # overnight or 24 h
    )
    wall_start = date * US_PER_DAY + start_s * US_PER_SECOND
    wall_end = date * US_PER_DAY + end_wall_s * US_PER_SECOND
    start, end = np.empty_like(wall_start), np.empty_like(wall_end)
    zone_code, zone_names = pd.factorize(schedule.zones[store])
    for k, zone in enumerate(zone_names):
        at = zone_code == k
        converted = localize(np.concatenate([wall_start[at], wall_end[at]]), zone)
        start[at], end[at] = converted[: at.sum()], converted[at.sum() :]
    keep = (end > start) & (end > lo_edge) & (start < hi_edge)
    store, start, end = store[keep], np.maximum(start[keep], lo_edge), np.minimum(end[keep], hi_edge)

    store = np.concatenate([store, always_open])
    start = np.concatenate([start, np.full(len(always_open), lo_edge, dtype=np.int64)])
    end = np.concatenate([end, np.full(len(always_open), hi_edge, dtype=np.int64)])
    return merge_intervals(store, start, end)


def _dated_rows(schedule: Schedule, stores: np.ndarray, dates: np.ndarray):
    """Rule 2 before time zones: the local wall-clock rows of ``stores`` on each of ``dates``.

    Returns ``(store, date, start_s, end_s, always_open)``: one row per business interval that
    *starts* on a date (days since 1970-01-01), times as written; and the stores open 24x7 over
    all the dates. On a store's special date its special rows (none for a closed date) replace
    the weekly rows of that weekday; a store without weekly rows is open 00:00-24:00 on each
    date that is not special, and 24x7 when none of the dates is.
    """
    selected = np.zeros(schedule.n_stores, dtype=bool)
    selected[stores] = True
    rows = np.flatnonzero(selected[schedule.store])
    has_rows = np.zeros(schedule.n_stores, dtype=bool)
    has_rows[schedule.store[rows]] = True
    first, span = int(dates[0]) if len(dates) else 0, len(dates)
    special = np.flatnonzero(
        selected[schedule.special_store] & (schedule.special_date >= first) & (schedule.special_date < first + span)
    )
    has_special = np.zeros(schedule.n_stores, dtype=bool)
    has_special[schedule.special_store[special]] = True
    daily = stores[~has_rows[stores] & has_special[stores]]  # 24x7 stores with a special date

    weekday = (dates + 3) % 7  # 1970-01-01 was a Thursday (3)
    whole_days = span * len(daily)
    parts = [(np.repeat(daily, span), np.tile(dates, len(daily)), np.zeros(whole_days), np.full(whole_days, 86_400))]
    for day in range(7):
        day_rows, day_dates = rows[schedule.day[rows] == day], dates[weekday == day]
        r = np.repeat(day_rows, len(day_dates))
        parts.append((schedule.store[r], np.tile(day_dates, len(day_rows)), schedule.start_s[r], schedule.end_s[r]))
    store, date, start_s, end_s = (np.concatenate(column).astype(np.int64) for column in zip(*parts))

    if len(special):
        replaced = np.isin(
            store * span + (date - first),
            schedule.special_store[special] * span + (schedule.special_date[special] - first),
        )
        opens = special[schedule.special_start_s[special] >= 0]  # closed rows add no interval
        store = np.concatenate([store[~replaced], schedule.special_store[opens]])
        date = np.concatenate([date[~replaced], schedule.special_date[opens]])
        start_s = np.concatenate([start_s[~replaced], schedule.special_start_s[opens]])
        end_s = np.concatenate([end_s[~replaced], schedule.special_end_s[opens]])
    always_open = stores[~has_rows[stores] & ~has_special[stores]]
    return store, date, start_s, end_s, always_open


def merge_intervals(store: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Unite overlapping or touching intervals within each store; sorted by store, start."""
    if not len(store):
        return store, start, end
    order = np.lexsort((start, store))
    store, start, end = store[order], start[order], end[order]
    reach = pd.Series(end).groupby(store).cummax().to_numpy()  # furthest end so far, per store
    new = np.ones(len(store), dtype=bool)
    new[1:] = (store[1:] != store[:-1]) | (start[1:] > reach[:-1])
    first = np.flatnonzero(new)
    return store[first], start[first], np.maximum.reduceat(reach, first)


def clip_intervals(intervals, lo_us: int, hi_us: int):
    """Merged intervals cut to ``[lo_us, hi_us]``, empty pieces dropped.

    Exactly what :func:`business_intervals` gives for a narrower range (its intervals are cut to
    three days around the range): cutting a union of intervals is the union of the cut pieces,
    and cutting keeps merged intervals apart. So intervals computed once for a wide range serve
    every report whose range (3 days spare on each side) lies inside it.
    """
    store, start, end = intervals
    start, end = np.maximum(start, lo_us), np.minimum(end, hi_us)
    keep = end > start
    return store[keep], start[keep], end[keep]


# ---------------------------------------------------------------------------------------------
# The store-by-store axis


class Axis:
    """Stores laid end to end on one integer line: ``key = store * stride + (t - origin) * scale``.

    ``scale`` 2 gives half-microsecond resolution, so midpoints of polls are integers.
    """

    def __init__(self, origin_us: int, end_us: int, n_stores: int, scale: int = 1):
        self.origin, self.scale = origin_us, scale
        self.stride = (end_us - origin_us) * scale + 1
        if self.stride * max(n_stores, 1) >= _MAX_AXIS:
            raise OverflowError(
                f"{n_stores} stores x {(end_us - origin_us) / US_PER_DAY:.0f} days do not fit one int64 axis"
            )

    def key(self, store: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Axis position of instant ``t`` (microseconds) of ``store``."""
        return store * self.stride + (np.asarray(t, dtype=np.int64) - self.origin) * self.scale

    def key_doubled(self, store: np.ndarray, t2: np.ndarray) -> np.ndarray:
        """Axis position of a doubled instant ``t2 = 2 t`` (on a ``scale=2`` axis)."""
        assert self.scale == 2
        return store * self.stride + np.asarray(t2, dtype=np.int64) - 2 * self.origin


def in_business(store: np.ndarray, ts: np.ndarray, intervals, axis: Axis) -> np.ndarray:
    """True where the instant ``ts`` lies inside one of its store's business intervals."""
    iv_store, iv_start, iv_end = intervals
    if not len(iv_store) or not len(store):
        return np.zeros(len(store), dtype=bool)
    starts = axis.key(iv_store, iv_start)
    ends = axis.key(iv_store, iv_end)
    points = axis.key(store, ts)
    holder = np.searchsorted(starts, points, side="right") - 1  # last interval starting at or before
    return (holder >= 0) & (points < ends[np.maximum(holder, 0)])


class BusinessClock:
    """``B(t)``: business time of a store before ``t``, for every store at once (on an axis)."""

    def __init__(self, intervals, axis: Axis):
        iv_store, iv_start, iv_end = intervals
        self.axis = axis
        self.starts = axis.key(iv_store, iv_start)
        self.lengths = axis.key(iv_store, iv_end) - self.starts
        self.before = np.concatenate([[0], np.cumsum(self.lengths)])  # business time before each

    def at(self, keys: np.ndarray) -> np.ndarray:
        """B at axis positions ``keys`` (in the axis' units)."""
        i = np.searchsorted(self.starts, keys, side="right") - 1  # last interval starting before
        j = np.maximum(i, 0)
        inside = np.clip(keys - self.starts[j], 0, self.lengths[j])
        return np.where(i >= 0, self.before[j] + inside, 0)


# ---------------------------------------------------------------------------------------------
# The report


def compute_report(
    store_ids: Sequence[str],
    polls: pd.DataFrame,
    schedule: Schedule,
    now_us: int,
    *,
    history: History = History(),
    windows: Sequence[Window] = WINDOWS,
    progress: Progress | None = None,
    exact_seconds: bool = False,
    intervals=None,
) -> pd.DataFrame:
    """The report (docs/report-rules.md) for ``store_ids``, one row each, sorted by store_id.

    ``polls``: columns ``store`` (code = index into ``store_ids``), ``ts_us``, ``active``; it must
    hold every poll of these stores from ``history.complete_from_us`` to ``now_us`` (see
    :class:`History` for the look-back). Polls after ``now_us`` are ignored. ``windows``: the
    standard three, then any extra periods (:func:`report_windows`); columns as
    :func:`report_columns`.

    With ``exact_seconds`` every figure is given in seconds, unrounded (for checks).

    Work already done may be handed over (the report cache, :mod:`storemon.snapshot`, keeps it
    between reports): ``intervals``, the stores' merged business intervals covering at least
    ``[complete_from_us - 3 days, now_us + 3 days]`` (see :func:`clip_intervals`), and a boolean
    column ``counted`` in ``polls`` (rule 3, as :func:`in_business` finds it).
    """
    store_ids = np.asarray(store_ids, dtype=object)
    n = len(store_ids)
    span_us = max(w.length_us for w in windows)
    counted = count_polls(polls, schedule, n, now_us, history, span_us, progress=progress, intervals=intervals)
    result = counted.measure(n, now_us, windows)
    _tell(progress, 0.95, "formatting")
    return report_frame(store_ids, result, windows, exact_seconds)


@dataclass
class CountedPolls:
    """The counted polls of a report's stores, and the business intervals they were judged by.

    ``store``, ``ts``, ``active``: every counted poll loaded (inside business hours, at or
    before ``now``), plus, for each store that needs it, its latest counted poll before the
    loaded range (the look-back); sorted by store then time. ``intervals``: the merged business
    intervals ``(store, start_us, end_us)``, covering ``[earliest - 3 days, now + 3 days]``.
    """

    store: np.ndarray
    ts: np.ndarray
    active: np.ndarray
    intervals: tuple[np.ndarray, np.ndarray, np.ndarray]
    earliest: int  # the earliest instant the loaded polls cover (UTC microseconds)

    def measure(self, n: int, now_us: int, windows: Sequence[Window] = WINDOWS) -> dict[str, tuple]:
        """Up and down time of ``n`` stores per window (:func:`_measure`), from these polls."""
        return _measure(self.store, self.ts, self.active, self.intervals, (self.earliest, now_us), n, now_us, windows)


def count_polls(
    polls: pd.DataFrame,
    schedule: Schedule,
    n: int,
    now_us: int,
    history: History = History(),
    span_us: int = WEEK_US,
    *,
    progress: Progress | None = None,
    intervals=None,
) -> CountedPolls:
    """Rule 3 plus the look-back: the counted polls :func:`_measure` interpolates between.

    Arguments as :func:`compute_report` (``n`` stores, codes ``0..n-1``); ``span_us``: the
    longest window.
    """
    span_start = now_us - span_us
    polls = polls[polls["ts_us"].to_numpy() <= now_us]
    store = polls["store"].to_numpy(np.int64)
    ts = polls["ts_us"].to_numpy(np.int64)
    active = polls["active"].to_numpy(bool)
    complete_from_us = history.complete_from_us
    if complete_from_us is None:
        complete_from_us = int(ts.min()) if len(ts) else span_start
    complete_from_us = min(complete_from_us, span_start)
    _tell(progress, 0.05, "business hours")

    # Counted polls among those loaded.
    earliest = min(complete_from_us, int(ts.min())) if len(ts) else complete_from_us
    if intervals is None:
        intervals = business_intervals(schedule, np.arange(n), earliest, now_us)
    else:
        intervals = clip_intervals(intervals, earliest - 3 * US_PER_DAY, now_us + 3 * US_PER_DAY)
    if "counted" in polls.columns:
        counted = polls["counted"].to_numpy(bool)
    else:
        axis = Axis(earliest - 3 * US_PER_DAY, now_us + 3 * US_PER_DAY, n)
        counted = in_business(store, ts, intervals, axis)
    store, ts, active = store[counted], ts[counted], active[counted]
    _tell(progress, 0.35, "look-back")

    # Stores whose nearest counted poll might predate the loaded polls.
    store, ts, active = _with_older_polls(
        store, ts, active, schedule, n, span_start, replace(history, complete_from_us=complete_from_us)
    )
    _tell(progress, 0.55, "interpolation")

    if not _sorted_by_store_and_time(store, ts):
        order = np.lexsort((ts, store))
        store, ts, active = store[order], ts[order], active[order]
    return CountedPolls(store=store, ts=ts, active=active, intervals=intervals, earliest=earliest)


def report_frame(
    store_ids,
    result: dict[str, tuple[np.ndarray, np.ndarray]],
    windows: Sequence[Window] = WINDOWS,
    exact_seconds: bool = False,
) -> pd.DataFrame:
    """The report's rows from :func:`_measure`'s half-microseconds: minutes for the hour, hours
    for the day, the week and every extra period, rounded to 2 decimals (``numpy.round``);
    sorted by store_id. With ``exact_seconds``: seconds, unrounded."""
    frame = pd.DataFrame({"store_id": np.asarray(store_ids, dtype=object)})
    for window in windows:
        up, down = result[window.name]
        unit = US_PER_SECOND if exact_seconds else window.unit_us
        for column, value in ((f"uptime_last_{window.name}", up), (f"downtime_last_{window.name}", down)):
            frame[column] = value / (2 * unit) if exact_seconds else np.round(value / (2 * unit), 2)
    return frame[report_columns(windows)].sort_values("store_id", kind="stable").reset_index(drop=True)


def _tell(progress: Progress | None, fraction: float, stage: str) -> None:
    if progress is not None:
        progress(fraction, stage)


def _with_older_polls(store, ts, active, schedule, n, span_start, history: History):
    """Add, for each store that needs it, its latest counted poll before the loaded range.

    A store needs one when it has no counted poll before the longest window (which starts at
    ``span_start``) among the loaded polls *and* an older poll could still be nearest to some
    instant of the window: its first counted poll in the window, ``q``, lies further after the
    window start than the loaded range reaches before it (an older poll ``p`` speaks from
    ``(p + q) / 2`` on, which is inside the window only if ``p > 2 * span_start - q``), or it has
    no counted poll at all.
    """
    fetch_older, complete_from = history.fetch_older, history.complete_from_us
    if fetch_older is None or n == 0:
        return store, ts, active
    if history.first_poll_us is None:
        raise ValueError("fetch_older needs first_poll_us, to know where each store's history ends")
    first_poll_us = np.asarray(history.first_poll_us, dtype=np.int64)
    has_before = np.zeros(n, dtype=bool)
    has_before[store[ts < span_start]] = True
    first_in_window = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_in_window, store, ts)
    reach = span_start - complete_from
    needs = ~has_before & (first_in_window - span_start > reach) & (first_poll_us < complete_from)
    pending = np.flatnonzero(needs)

    found_store, found_ts, found_active = [store], [ts], [active]
    span_end, step = complete_from, LOOK_BACK_FIRST_STEP_US
    while len(pending):
        span_start = span_end - step
        older = fetch_older(pending, span_start, span_end)
        if len(older):
            o_store = older["store"].to_numpy(np.int64)
            o_ts = older["ts_us"].to_numpy(np.int64)
            o_active = older["active"].to_numpy(bool)
            ivs = business_intervals(schedule, pending, span_start, span_end)
            axis = Axis(span_start - 3 * US_PER_DAY, span_end + 3 * US_PER_DAY, n)
            ok = in_business(o_store, o_ts, ivs, axis)
            o_store, o_ts, o_active = o_store[ok], o_ts[ok], o_active[ok]
            if len(o_store):
                order = np.lexsort((o_ts, o_store))
                o_store, o_ts, o_active = o_store[order], o_ts[order], o_active[order]
                last = np.r_[o_store[1:] != o_store[:-1], True]  # latest counted poll per store
                found_store.append(o_store[last])
                found_ts.append(o_ts[last])
                found_active.append(o_active[last])
                pending = np.setdiff1d(pending, o_store[last])
        pending = pending[first_poll_us[pending] < span_start]  # others have no older history
        span_end, step = span_start, min(2 * step, LOOK_BACK_MAX_STEP_US)
    return np.concatenate(found_store), np.concatenate(found_ts), np.concatenate(found_active)


def _sorted_by_store_and_time(store: np.ndarray, ts: np.ndarray) -> bool:
    """True if (store, ts) pairs are already in order (the database hands them over so)."""
    if len(store) < 2:
        return True
    step_store, step_ts = np.diff(store), np.diff(ts)
    return bool(np.all((step_store > 0) | ((step_store == 0) & (step_ts >= 0))))


def nearest_poll_segments(store: np.ndarray, ts: np.ndarray, lo2: int, hi2: int) -> tuple[np.ndarray, np.ndarray]:
    """Rule 4: the segment each counted poll speaks for, in doubled instants, clipped to
    ``[lo2, hi2)`` (also doubled).

    Poll ``j``'s segment is ``[mid(j-1, j), mid(j, j+1))``, open-ended at a store's first / last
    poll; in doubled instants ``mid(a, b)`` is simply ``a + b``. ``store``/``ts``: counted polls
    sorted by store then time. A poll whose segment lies outside the range gets an empty one.
    """
    first = np.r_[True, store[1:] != store[:-1]]
    last = np.r_[store[1:] != store[:-1], True]
    seg_start = np.where(first, lo2, np.r_[0, ts[:-1]] + ts)
    seg_end = np.where(last, hi2, ts + np.r_[ts[1:], 0])
    return np.clip(seg_start, lo2, hi2), np.clip(seg_end, lo2, hi2)


def _measure(
    store, ts, active, intervals, axis_span, n, now_us, windows: Sequence[Window] = WINDOWS
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Uptime and downtime per store and window, in half-microseconds (see module docstring).

    ``store``/``ts``/``active``: counted polls sorted by store then time. ``intervals``: the
    stores' business intervals, covering ``axis_span`` (which holds every window) with 3 days
    spare.

    Two exact shortcuts keep this to one ``searchsorted`` over the segment ends:

    * consecutive counted polls of a store with the same status have adjacent segments (one
      ends where the next starts), so each such *run* is measured as one segment;
    * ``B`` is non-decreasing along the axis, so ``B(clip(t, lo, hi)) = clip(B(t), B(lo), B(hi))``:
      ``B`` is evaluated once at every run end, once per store at each window start and at
      ``now``, and each window only clips those numbers.
    """
    axis = Axis(axis_span[0] - 3 * US_PER_DAY, axis_span[1] + 3 * US_PER_DAY, n, scale=2)
    clock = BusinessClock(intervals, axis)

    # Ends are clipped to the longest window, which holds all the others.
    lo, hi = 2 * (now_us - max(w.length_us for w in windows)), 2 * now_us
    seg_start, seg_end = nearest_poll_segments(store, ts, lo, hi)
    run_first = np.r_[True, (store[1:] != store[:-1]) | (active[1:] != active[:-1])] if len(store) else np.ones(0, bool)
    first = np.flatnonzero(run_first)
    last = np.r_[first[1:] - 1, len(store) - 1].astype(np.int64) if len(first) else first
    run_store, run_active = store[first], active[first]
    b_start = clock.at(axis.key_doubled(run_store, seg_start[first]))
    b_end = clock.at(axis.key_doubled(run_store, seg_end[last]))

    codes = np.arange(n, dtype=np.int64)
    b_hi = clock.at(axis.key_doubled(codes, np.full(n, hi, dtype=np.int64)))[run_store]
    result = {}
    for window in windows:
        w_lo = 2 * (now_us - window.length_us)
        b_lo = clock.at(axis.key_doubled(codes, np.full(n, w_lo, dtype=np.int64)))[run_store]
        covered = (np.clip(b_end, b_lo, b_hi) - np.clip(b_start, b_lo, b_hi)).astype(np.float64)  # exact: < 2**53
        up = np.bincount(run_store, weights=np.where(run_active, covered, 0), minlength=n)
        down = np.bincount(run_store, weights=np.where(run_active, 0, covered), minlength=n)
        result[window.name] = (up, down)
    return result


# ---------------------------------------------------------------------------------------------
# One store, explained (the timeline; see docs/report-rules.md)


@dataclass
class StoreExplanation:
    """One store's report row and every piece it is made of, as :func:`explain_store` found them.

    All instants are UTC microseconds. Segment ends are midpoints of polls and may fall on a
    half microsecond: ``seg_*2`` are doubled instants (exact), as in the engine.

    * ``figures``: the store's report row (the seven columns), from :func:`report_frame`.
    * ``iv_start``/``iv_end``: merged business intervals overlapping the week window.
    * ``poll_ts``/``poll_active``/``poll_counted``: every poll in ``[now - 7 d, now]``, and
      ``poll_in_week`` False for the counted polls before the week whose segment reaches into it.
    * ``seg_start2``/``seg_end2``/``seg_active``/``seg_poll``: the pieces of business hours in the
      week window and the counted poll (its instant) whose status each piece takes.
    * ``counted_polls``: counted polls found in all (loaded range and look-back);
      ``nearest_before_week``: the latest counted poll before the week, or None.
    """

    now_us: int
    figures: dict
    iv_start: np.ndarray
    iv_end: np.ndarray
    poll_ts: np.ndarray
    poll_active: np.ndarray
    poll_counted: np.ndarray
    poll_in_week: np.ndarray
    seg_start2: np.ndarray
    seg_end2: np.ndarray
    seg_active: np.ndarray
    seg_poll: np.ndarray
    counted_polls: int
    nearest_before_week: int | None


def explain_store(
    store_id: str,
    polls: pd.DataFrame,
    schedule: Schedule,
    now_us: int,
    *,
    history: History = History(),
    windows: Sequence[Window] = WINDOWS,
) -> StoreExplanation:
    """The report for one store (``schedule`` of one store, code 0) and the pieces behind it.

    The same steps as :func:`compute_report` -- :func:`count_polls`, :func:`_measure`,
    :func:`report_frame` -- applied to one store, so ``figures`` is that store's report row
    whenever the inputs are the ones the report read (``history.first_poll_us``: one instant, or
    an array of one). Then, for showing: the week's business
    intervals, its polls (counted or not), and the pieces of :func:`nearest_poll_segments`
    inside business hours.
    """
    # Long for its docstring: it is compute_report's steps for one store, in their order.
    if history.first_poll_us is not None:
        history = replace(history, first_poll_us=np.asarray(history.first_poll_us, dtype=np.int64).reshape(1))
    counted = count_polls(polls, schedule, 1, now_us, history, max(w.length_us for w in windows))
    figures = report_frame([store_id], counted.measure(1, now_us, windows), windows).iloc[0].to_dict()

    week_start = now_us - WEEK_US
    _iv_store, iv_start, iv_end = counted.intervals
    overlap = (iv_end > week_start) & (iv_start < now_us)
    iv_start, iv_end = iv_start[overlap], iv_end[overlap]

    # Segments of the counted polls, clipped to the week, cut to business hours (doubled).
    seg_start, seg_end = nearest_poll_segments(counted.store, counted.ts, 2 * week_start, 2 * now_us)
    piece_start = np.maximum(seg_start[:, None], 2 * iv_start[None, :])
    piece_end = np.minimum(seg_end[:, None], 2 * iv_end[None, :])
    seg_i, _iv_i = np.nonzero(piece_end > piece_start)  # row-major: by segment, then interval
    piece_start, piece_end = piece_start[piece_end > piece_start], piece_end[piece_end > piece_start]

    # Polls: all in the week, plus counted ones before it that speak into it.
    ts = polls["ts_us"].to_numpy(np.int64)
    in_week = (ts >= week_start) & (ts <= now_us)
    week_ts, week_active = ts[in_week], polls["active"].to_numpy(bool)[in_week]
    week_counted = np.isin(week_ts, counted.ts)
    speaks_in = (counted.ts < week_start) & (seg_end > seg_start)
    poll_ts = np.r_[counted.ts[speaks_in], week_ts]
    order = np.argsort(poll_ts, kind="stable")
    before = counted.ts[counted.ts < week_start]
    return StoreExplanation(
        now_us=now_us,
        figures=figures,
        iv_start=iv_start,
        iv_end=iv_end,
        poll_ts=poll_ts[order],
        poll_active=np.r_[counted.active[speaks_in], week_active][order],
        poll_counted=np.r_[np.ones(speaks_in.sum(), dtype=bool), week_counted][order],
        poll_in_week=np.r_[np.zeros(speaks_in.sum(), dtype=bool), np.ones(len(week_ts), dtype=bool)][order],
        seg_start2=piece_start,
        seg_end2=piece_end,
        seg_active=counted.active[seg_i],
        seg_poll=counted.ts[seg_i],
        counted_polls=len(counted.ts),
        nearest_before_week=int(before.max()) if len(before) else None,
    )


# ---------------------------------------------------------------------------------------------
# Convenience: the report straight from feed-shaped frames (tests, notebooks)


def report_from_frames(
    polls: pd.DataFrame,
    hours: pd.DataFrame,
    timezones: pd.DataFrame,
    now=None,
    exact_seconds: bool = False,
    *,
    special: pd.DataFrame | None = None,
    periods: Sequence[str] | str = (),
) -> pd.DataFrame:
    """The report from frames shaped like the feeds (docs/data-formats.md), all history in memory.

    ``polls``: store_id, status (active/inactive), timestamp_utc (datetime-like, UTC);
    ``hours``: store_id, day (or dayOfWeek / day_of_week), start_time_local, end_time_local as
    ``HH:MM[:SS]``; ``timezones``: store_id, timezone_str; ``special``: store_id, date
    (``YYYY-MM-DD``), start_time_local, end_time_local (both empty: closed that date; one empty:
    a ``ValueError``, as the feed's parser refuses the row).
    ``now`` defaults to the latest poll; ``periods`` as :func:`report_windows`.
    """
    polls = polls.drop_duplicates(["store_id", "timestamp_utc"], keep="last")  # later row wins
    ts = pd.to_datetime(polls["timestamp_utc"], utc=True).dt.as_unit("us").array.asi8
    now_us = int(ts.max()) if now is None else to_us(now)
    known = ts <= now_us
    store_ids = np.sort(polls["store_id"].astype(str)[known].unique())
    code = pd.Series(np.arange(len(store_ids)), index=store_ids)
    kept = polls[known & polls["store_id"].astype(str).isin(code.index).to_numpy()]
    frame = pd.DataFrame(
        {
            "store": code[kept["store_id"].astype(str)].to_numpy(),
            "ts_us": ts[known],
            "active": kept["status"].str.strip().str.lower().eq("active").to_numpy(),
        }
    )
    day_column = next(c for c in ("day", "dayOfWeek", "day_of_week") if c in hours.columns)
    hours = hours[hours["store_id"].astype(str).isin(code.index)]
    hours_frame = pd.DataFrame(
        {
            "store": code[hours["store_id"].astype(str)].to_numpy(),
            "day": hours[day_column].astype(int).to_numpy(),
            "start_s": parse_clock(hours["start_time_local"].astype(str)).astype(int).to_numpy(),
            "end_s": parse_clock(hours["end_time_local"].astype(str)).astype(int).to_numpy(),
        }
    )
    zones = timezones[timezones["store_id"].astype(str).isin(code.index)]
    zone_of_store = pd.Series(zones["timezone_str"].to_numpy(), index=code[zones["store_id"].astype(str)].to_numpy())
    special_frame = None if special is None else _special_frame(special, code)
    schedule = Schedule.build(len(store_ids), hours_frame, zone_of_store, special_frame)
    windows = report_windows(periods)
    return compute_report(store_ids, frame, schedule, now_us, windows=windows, exact_seconds=exact_seconds)


def _special_frame(special: pd.DataFrame, code: pd.Series) -> pd.DataFrame:
    """Feed-shaped special days of the stores in ``code`` (store_id -> code) as
    :meth:`Schedule.build` takes them: store, date (days since 1970-01-01), start_s, end_s
    (-1 and -1 for a closed date)."""
    special = special[special["store_id"].astype(str).isin(code.index)]
    start_text, end_text = (
        special[c].fillna("").astype(str).str.strip() for c in ("start_time_local", "end_time_local")
    )
    closed = (start_text.eq("") & end_text.eq("")).to_numpy()
    start, end = (parse_clock(text.where(~closed, "00:00")) for text in (start_text, end_text))
    if start.isna().any() or end.isna().any():  # (the feed's parser skips such a row as bad)
        raise ValueError("special hours: a row with one time empty or unreadable")
    return pd.DataFrame(
        {
            "store": code[special["store_id"].astype(str)].to_numpy(),
            "date": pd.to_datetime(special["date"]).to_numpy().astype("datetime64[D]").astype(np.int64),
            "start_s": np.where(closed, -1, start).astype(np.int64),
            "end_s": np.where(closed, -1, end).astype(np.int64),
        }
    )
