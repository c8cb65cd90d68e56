"""One store's timeline: its report row and every piece it is made of.

:func:`load_timeline` reads one store's polls, business hours and time zone in one read
snapshot (the readers the report uses, filtered to the store) and hands them to
:func:`storemon.compute.explain_store` -- the report's own steps applied to one store, not a
second engine. The result, a :class:`Timeline`, is what the JSON route
(``GET /stores/<id>/timeline``), the ``flask explain`` text and the dashboard's chart all read.
How the figures follow from the pieces: ``docs/report-rules.md``.

JSON conventions: UTC instants are ISO 8601 strings ending in ``Z`` with microseconds
(``2023-01-25T12:09:39.388884Z``); local wall-clock times are ISO strings with their offset.
Segment ends are poll midpoints and may fall on a half microsecond: the string shows the
microsecond it lies in, ``seconds`` the exact length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import storage
from .compute import US_PER_DAY, US_PER_SECOND, WEEK_US, History, Schedule, explain_store, localize, report_windows
from .reports import LOOK_BACK_US, NoPollsError, read_snapshot
from .times import DEFAULT_TIMEZONE, format_clock, format_date, format_instant_us, format_local, is_known_timezone

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NOT_COUNTED_REASON = "outside business hours"


class UnknownStoreError(LookupError):
    """No such store in the database, or none of its polls is at or before ``now``."""


@dataclass
class Interval:
    """A merged business interval (UTC microseconds) and its local wall-clock ends;
    ``special_date`` the store's special date (``YYYY-MM-DD``) it starts on, None for an
    interval of the weekly hours."""

    start_us: int
    end_us: int
    local_start: str
    local_end: str
    special_date: str | None = None


@dataclass
class SpecialDay:
    """One special date of the store (docs/report-rules.md#special-days): its local calendar
    ``date``, that date's span in UTC (``start_us`` = its local midnight, ``end_us`` = the next),
    its ``hours`` as stored (``(start_s, end_s)`` pairs; none: closed that whole date) and the
    file that gave it (``source``)."""

    date: str
    start_us: int
    end_us: int
    hours: list[tuple[int, int]]
    source: str

    @property
    def closed(self) -> bool:
        return not self.hours

    def hours_text(self, dash: str = "-") -> str:
        """``closed``, or its hours as stored: ``10:00:00-14:00:00, 18:00:00-22:00:00``."""
        return (
            "closed" if self.closed else ", ".join(f"{format_clock(a)}{dash}{format_clock(b)}" for a, b in self.hours)
        )


@dataclass
class PollMark:
    """A poll: ``counted`` if inside business hours; ``in_week`` False for a counted poll before
    the week window whose segment reaches into it."""

    ts_us: int
    active: bool
    counted: bool
    in_week: bool

    @property
    def reason(self) -> str | None:
        return None if self.counted else NOT_COUNTED_REASON


@dataclass
class Segment:
    """A piece of business hours in the week window and the counted poll whose status it takes.

    ``start2``/``end2``: doubled UTC microseconds (exact midpoints)."""

    start2: int
    end2: int
    active: bool
    poll_us: int

    @property
    def start_us(self) -> int:
        return self.start2 // 2

    @property
    def end_us(self) -> int:
        return self.end2 // 2

    @property
    def seconds(self) -> float:
        return (self.end2 - self.start2) / (2 * US_PER_SECOND)

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass
class Timeline:
    """Everything about one store's report row at ``now`` (UTC microseconds throughout)."""

    store_id: str
    now_us: int
    windows: dict[str, tuple[int, int]]  # name -> [start, end) in UTC microseconds
    timezone: str  # the zone used
    timezone_source: str  # "given", "default: missing", "default: unknown name"
    timezone_given: str | None  # the name stored, if any
    hours_rows: list[tuple[int, int, int]]  # (day, start_s, end_s) as stored
    intervals: list[Interval]
    polls: list[PollMark]
    segments: list[Segment]
    figures: dict  # the report row: its columns (report_columns) -> value
    notes: list[str] = field(default_factory=list)
    special_days: list[SpecialDay] = field(default_factory=list)  # all of the store's, by date

    def to_dict(self) -> dict:
        """The JSON answer of ``GET /stores/<id>/timeline``."""
        # Long as the answer it writes: one literal, field by field (docs/interfaces.md#timeline).
        return {
            "store_id": self.store_id,
            "now": format_instant_us(self.now_us),
            "windows": {
                name: {"start": format_instant_us(a), "end": format_instant_us(b)}
                for name, (a, b) in self.windows.items()
            },
            "timezone": self.timezone,
            "timezone_source": self.timezone_source,
            "timezone_given": self.timezone_given,
            "business_hours": [
                {
                    "day": d,
                    "day_name": DAY_NAMES[d],
                    "start_time_local": format_clock(a),
                    "end_time_local": format_clock(b),
                }
                for d, a, b in self.hours_rows
            ],
            "business_intervals": [
                {
                    "start": format_instant_us(i.start_us),
                    "end": format_instant_us(i.end_us),
                    "local_start": i.local_start,
                    "local_end": i.local_end,
                    "special_date": i.special_date,
                }
                for i in self.intervals
            ],
            "polls": [
                {
                    "timestamp": format_instant_us(p.ts_us),
                    "status": _status(p.active),
                    "counted": p.counted,
                    "reason": p.reason,
                    "in_week": p.in_week,
                }
                for p in self.polls
            ],
            "segments": [
                {
                    "start": format_instant_us(s.start_us),
                    "end": format_instant_us(s.end_us),
                    "active": s.active,
                    "status": _status(s.active),
                    "poll": format_instant_us(s.poll_us),
                    "seconds": s.seconds,
                }
                for s in self.segments
            ],
            "special_days": [
                {
                    "date": d.date,
                    "closed": d.closed,
                    "hours": [
                        {"start_time_local": format_clock(a), "end_time_local": format_clock(b)} for a, b in d.hours
                    ],
                    "source": d.source,
                    "start": format_instant_us(d.start_us),
                    "end": format_instant_us(d.end_us),
                }
                for d in self.special_days
            ],
            "figures": {c: v for c, v in self.figures.items() if c != "store_id"},
            "notes": self.notes,
        }

    def to_text(self) -> str:
        """The ``flask explain`` output: the same facts, as readable text."""
        zone = (
            self.timezone
            if self.timezone_source == "given"
            else (
                f"{self.timezone} ({self.timezone_source}"
                + (f": {self.timezone_given!r})" if self.timezone_given else ")")
            )
        )
        lines = [
            f"store {self.store_id}",
            f"now       {format_instant_us(self.now_us)}",
            f"time zone {zone}",
            "windows",
        ]
        lines += [
            f"  {name:<5} {format_instant_us(a)} .. {format_instant_us(b)}" for name, (a, b) in self.windows.items()
        ]
        lines.append("business hours (as stored, local)")
        lines += [f"  {DAY_NAMES[d]:<9} {format_clock(a)}-{format_clock(b)}" for d, a, b in self.hours_rows] or [
            "  none: open 24x7"
        ]
        if self.special_days:
            lines.append("special days (local dates)")
            lines += [f"  {d.date} " + d.hours_text() + f"  ({d.source})" for d in self.special_days]
        lines.append("business intervals in the week (UTC | local)")
        lines += [
            f"  {format_instant_us(i.start_us)} .. {format_instant_us(i.end_us)} | {i.local_start} .. {i.local_end}"
            + (f"  (special day {i.special_date})" if i.special_date else "")
            for i in self.intervals
        ]
        counted = sum(p.counted for p in self.polls)
        lines.append(f"polls ({len(self.polls)}, {counted} counted)")
        for p in self.polls:
            where = "" if p.in_week else " (before the week)"
            lines.append(
                f"  {format_instant_us(p.ts_us)} {_status(p.active):<8} "
                f"{'counted' if p.counted else 'not counted: ' + p.reason}{where}"
            )
        lines.append(f"segments inside business hours ({len(self.segments)})")
        lines += [
            f"  {format_instant_us(s.start_us)} .. {format_instant_us(s.end_us)} {'up  ' if s.active else 'down'} "
            f"{s.hours:7.3f} h  by the poll at {format_instant_us(s.poll_us)}"
            for s in self.segments
        ]
        lines.append("figures (the hour in minutes, the others in hours)")
        lines += [f"  {c:<20} {v:.2f}" for c, v in self.figures.items() if c != "store_id"]
        if self.notes:
            lines.append("notes")
            lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines)


def _status(active: bool) -> str:
    return "active" if active else "inactive"


def load_timeline(engine: Engine, store_id: str, as_of_us: int | None = None, periods: str | None = None) -> Timeline:
    """One store's :class:`Timeline` at ``now`` = ``as_of_us`` or the latest poll (as the report),
    its figures those of a report with these extra ``periods`` (``"30d,2h"``; see
    :func:`~storemon.compute.report_windows`; a ``ValueError`` when unreadable).

    Raises :class:`UnknownStoreError` for a store the report would have no row for, and
    :class:`~storemon.reports.NoPollsError` when the database holds no polls.
    """
    windows = report_windows(periods)
    # One function on purpose: every read of one store happens inside one snapshot.
    with read_snapshot(engine) as conn:
        now_us = as_of_us if as_of_us is not None else storage.latest_poll_us(conn)
        if now_us is None:
            raise NoPollsError("no polls in the database yet: ingest a store-status file first")
        row = storage.store_row(conn, store_id)
        if row is None:
            raise UnknownStoreError(f"no store {store_id!r} (no poll of it was ever ingested)")
        if row["first_poll_us"] > now_us:
            raise UnknownStoreError(f"store {store_id!r} has no poll at or before {format_instant_us(now_us)}")
        key = row["store_key"]
        # The report's read, filtered to this store: the longest window and a day, then the look-back.
        complete_from = now_us - max(WEEK_US, *(w.length_us for w in windows)) - LOOK_BACK_US
        polls = storage.polls_of_stores(conn, np.array([key]), complete_from, now_us + 1).assign(store=0)
        hours = storage.hours_of_store(conn, store_id)
        special = storage.special_of_store(conn, store_id)
        zone_given = storage.timezone_of_store(conn, store_id)

        def fetch_older(_codes: np.ndarray, from_us: int, to_us: int) -> pd.DataFrame:
            return storage.polls_of_stores(conn, np.array([key]), from_us, to_us).assign(store=0)

        schedule = Schedule.build(
            1,
            hours.assign(store=0),
            pd.Series([zone_given], index=[0]) if zone_given is not None else None,
            special.assign(store=0)[["store", "date", "start_s", "end_s"]],
        )
        found = explain_store(
            store_id,
            polls,
            schedule,
            now_us,
            history=History(complete_from, row["first_poll_us"], fetch_older),
            windows=windows,
        )

    zone = schedule.zones[0]
    source = (
        "given"
        if zone_given is not None and is_known_timezone(zone_given)
        else "default: missing"
        if zone_given is None
        else "default: unknown name"
    )
    week_start = now_us - WEEK_US
    special_days = _special_days(special, zone)
    ends = [(int(a), int(b)) for a, b in zip(found.iv_start, found.iv_end)]
    if hours.empty:  # open around the clock: its intervals have no real ends, show the week's
        ends = [(max(a, week_start), min(b, now_us)) for a, b in ends]
    intervals = [
        Interval(a, b, format_local(a, zone), format_local(b, zone), _special_date_of(a, special_days)) for a, b in ends
    ]
    timeline = Timeline(
        store_id=store_id,
        now_us=now_us,
        windows={w.name: (now_us - w.length_us, now_us) for w in windows},
        timezone=zone,
        timezone_source=source,
        timezone_given=zone_given,
        hours_rows=[tuple(int(v) for v in r) for r in hours[["day", "start_s", "end_s"]].itertuples(index=False)],
        intervals=intervals,
        polls=[
            PollMark(int(t), bool(a), bool(c), bool(w))
            for t, a, c, w in zip(found.poll_ts, found.poll_active, found.poll_counted, found.poll_in_week)
        ],
        segments=[
            Segment(int(a), int(b), bool(s), int(p))
            for a, b, s, p in zip(found.seg_start2, found.seg_end2, found.seg_active, found.seg_poll)
        ],
        figures=found.figures,
        special_days=special_days,
    )
    timeline.notes = _notes(timeline, found.counted_polls, found.nearest_before_week)
    return timeline


def _special_days(special: pd.DataFrame, zone: str) -> list[SpecialDay]:
    """The store's special dates (rows: date, start_s, end_s, source; a closed row's times are
    -1), each with its local date's span in UTC."""
    if special.empty:
        return []
    dates = np.unique(special["date"].to_numpy(np.int64))
    midnights = localize(np.concatenate([dates, dates + 1]) * US_PER_DAY, zone)  # each date's, then the next's
    days = []
    for i, (date, rows) in enumerate(special.groupby("date", sort=True)):
        opens = rows[rows["start_s"].to_numpy(np.int64) >= 0]
        days.append(
            SpecialDay(
                date=format_date(date),
                start_us=int(midnights[i]),
                end_us=int(midnights[len(dates) + i]),
                hours=[(int(a), int(b)) for a, b in zip(opens["start_s"], opens["end_s"])],
                source=", ".join(dict.fromkeys(rows["source"].astype(str))),
            )
        )
    return days


def _special_date_of(start_us: int, special_days: list[SpecialDay]) -> str | None:
    """The special date an interval starting at ``start_us`` belongs to, if any (the local date
    it starts on is special)."""
    return next((d.date for d in special_days if d.start_us <= start_us < d.end_us and d.hours), None)


def _notes(t: Timeline, counted_polls: int, nearest_before_week: int | None) -> list[str]:
    """Plain sentences for the cases an all-zero or surprising row does not explain itself."""
    notes = []
    week_start = t.now_us - WEEK_US
    for day in t.special_days:
        if day.start_us < t.now_us and day.end_us > week_start:
            notes.append(
                f"Closed on {day.date} (special day, from {day.source}): no business hours that date."
                if day.closed
                else f"Open {day.hours_text()} on {day.date} (special day, from {day.source}) "
                "instead of the weekly hours."
            )
    if not t.hours_rows:
        notes.append(
            "No business hours are stored for this store: it is open 24x7"
            + (", except on its special days." if t.special_days else ".")
        )
    if t.timezone_source == "default: missing":
        notes.append(f"No time zone is stored for this store: {DEFAULT_TIMEZONE} is used.")
    elif t.timezone_source == "default: unknown name":
        notes.append(f"The stored time zone {t.timezone_given!r} is not a known zone name: {DEFAULT_TIMEZONE} is used.")
    week_polls = [p for p in t.polls if p.in_week]
    if counted_polls == 0:
        notes.append(
            f"No poll of this store falls inside its business hours ({len(week_polls)} in the week, "
            "none counted, and none earlier): there is no status to interpolate, so every figure is 0."
        )
    elif nearest_before_week is not None and any(not p.in_week for p in t.polls):
        hours = (t.now_us - WEEK_US - nearest_before_week) / (3600 * US_PER_SECOND)
        ago = f"{hours / 24:.1f} days" if hours >= 24 else f"{hours:.1f} hours"
        poll = next(p for p in t.polls if not p.in_week)
        if not any(p.counted for p in week_polls):
            notes.append(
                f"No poll in the week falls inside business hours: the whole week takes the status "
                f"({_status(poll.active)}) of the nearest counted poll, at {format_instant_us(poll.ts_us)}, "
                f"{ago} before the week starts."
            )
        elif hours > 24:  # a poll from the day before the week is no news; one from long before is
            notes.append(
                f"The week's first business hours take the status ({_status(poll.active)}) of a counted "
                f"poll from before the week, at {format_instant_us(poll.ts_us)}, {ago} before it starts."
            )
    return notes
