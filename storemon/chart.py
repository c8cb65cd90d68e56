"""The dashboard's SVG charts laid out: the store page's week chart (a
:class:`~storemon.explain.Timeline`) and the report page's histogram.

One row per local calendar day of the store (the week window touches eight), time running left
to right from local midnight to the next one, so a store's business hours line up from row to
row. On each row: the business hours as a band, the up and down pieces on it, the polls as marks
above it, and the window edges (week start, day start, hour start, now) as vertical lines. A
special day's hours are a band of their own, a little taller than the others so that it shows
above and below the up and down pieces; a special day closed all day covers its whole row.

Pure layout, no drawing: this module computes every coordinate (SVG user units) and the template
``templates/_chart.html`` only places them, so the template holds no arithmetic. A day with a DST
change is 23 or 25 hours long and is drawn at the same width as the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .explain import Timeline
from .times import format_instant_us

WIDTH = 1000  # the SVG's user units; it scales to its container
LABEL_WIDTH = 118  # left column: the row's date
RIGHT_PAD = 24
TOP = 30  # room for the hour ticks
ROW_HEIGHT = 50  # marks, band, and a line for the window edges' labels
BAND_TOP, BAND_HEIGHT = 14, 20  # inside a row: the business-hours band
SPECIAL_MARGIN = 3  # a special day's band and a closed day reach this far above and below the band
MARK_Y = 7  # inside a row: where the poll marks sit
TICK_HOURS = range(0, 25, 3)


@dataclass
class Box:
    x: float
    y: float
    width: float
    height: float
    title: str = ""


@dataclass
class SpecialBox(Box):
    """A special day's hours (a business interval starting on it) or, ``closed``, the whole of a
    special day the store is closed."""

    date: str = ""  # the special day, YYYY-MM-DD (local)
    closed: bool = False


@dataclass
class SegmentBox(Box):
    active: bool = True
    index: int = 0  # the segment's index in the timeline (a segment over midnight is two boxes)
    start: str = ""  # ISO UTC, as in the timeline JSON
    end: str = ""


@dataclass
class Mark:
    x: float
    y: float
    active: bool
    counted: bool
    title: str


@dataclass
class Edge:
    x: float
    y1: float
    y2: float
    label: str
    label_x: float
    label_y: float
    anchor: str  # text-anchor of the label


@dataclass
class Row:
    y: float
    label: str  # e.g. "Wed 18 Jan"
    line_y: float  # the row's base line


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    width: int
    height: float
    plot_left: float
    plot_right: float
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    bands: list[Box] = field(default_factory=list)  # the weekly hours
    special_bands: list[SpecialBox] = field(default_factory=list)  # a special day's hours
    closed: list[SpecialBox] = field(default_factory=list)  # the special days closed all day
    segments: list[SegmentBox] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def week_chart(t: Timeline) -> Chart:
    """Lay out ``t``'s week: bands, segments, polls and window edges, row by local day."""
    # One function on purpose: the chart's rows, bands and marks share one set of coordinates.
    week_start, now = t.windows["week"]
    first_day = pd.Timestamp(week_start, unit="us", tz="UTC").tz_convert(t.timezone).normalize()
    last_day = pd.Timestamp(now, unit="us", tz="UTC").tz_convert(t.timezone).normalize()
    days = pd.date_range(first_day.tz_localize(None), last_day.tz_localize(None), freq="D")
    # Local midnights as UTC microseconds, one more than rows (the end of the last row).
    bounds = (
        pd.DatetimeIndex(list(days) + [days[-1] + pd.Timedelta(days=1)])
        .tz_localize(t.timezone, ambiguous=True, nonexistent="shift_forward")
        .as_unit("us")
        .asi8
    )

    left, right = LABEL_WIDTH, WIDTH - RIGHT_PAD
    span = right - left
    chart = Chart(width=WIDTH, height=TOP + ROW_HEIGHT * len(days) + 4, plot_left=left, plot_right=right)
    chart.ticks = [Tick(left + span * h / 24, f"{h:02d}:00") for h in TICK_HOURS]

    def pieces(start_us: int, end_us: int):
        """(row, x0, x1) for each row the UTC interval [start, end) touches."""
        for i in range(len(days)):
            a, b = max(start_us, bounds[i]), min(end_us, bounds[i + 1])
            if b > a:
                scale = span / (bounds[i + 1] - bounds[i])
                yield i, left + (a - bounds[i]) * scale, left + (b - bounds[i]) * scale

    def row_of(us: int) -> int | None:
        for i in range(len(days)):
            if bounds[i] <= us < bounds[i + 1] or (i == len(days) - 1 and us == bounds[i + 1]):
                return i
        return None

    def x_of(i: int, us: int) -> float:
        return left + (us - bounds[i]) * span / (bounds[i + 1] - bounds[i])

    for i, day in enumerate(days):
        y = TOP + i * ROW_HEIGHT
        chart.rows.append(Row(y=y, label=day.strftime("%a %d %b"), line_y=y + BAND_TOP + BAND_HEIGHT))
    special = {d.date: d for d in t.special_days}

    def special_box(i: int, x0: float, x1: float, title: str, date: str, closed: bool) -> SpecialBox:
        y = TOP + i * ROW_HEIGHT + BAND_TOP - SPECIAL_MARGIN
        return SpecialBox(x0, y, x1 - x0, BAND_HEIGHT + 2 * SPECIAL_MARGIN, title, date=date, closed=closed)

    def which(date: str) -> str:
        return f"special day: {date}" + (f", from {special[date].source}" if date in special else "")

    for d in t.special_days:
        if d.closed:
            title = f"closed ({which(d.date)})"
            chart.closed += [special_box(i, x0, x1, title, d.date, True) for i, x0, x1 in pieces(d.start_us, d.end_us)]
    for iv in t.intervals:
        for i, x0, x1 in pieces(iv.start_us, iv.end_us):
            if iv.special_date is not None:
                title = f"special hours {iv.local_start} to {iv.local_end} ({which(iv.special_date)})"
                chart.special_bands.append(special_box(i, x0, x1, title, iv.special_date, False))
            else:
                title = f"business hours {iv.local_start} to {iv.local_end}"
                chart.bands.append(Box(x0, TOP + i * ROW_HEIGHT + BAND_TOP, x1 - x0, BAND_HEIGHT, title))
    for k, seg in enumerate(t.segments):
        for i, x0, x1 in pieces(seg.start_us, seg.end_us):
            word = "up" if seg.active else "down"
            chart.segments.append(
                SegmentBox(
                    x0,
                    TOP + i * ROW_HEIGHT + BAND_TOP,
                    max(x1 - x0, 0.5),
                    BAND_HEIGHT,
                    f"{word} {format_instant_us(seg.start_us)} to {format_instant_us(seg.end_us)} "
                    f"by the poll at {format_instant_us(seg.poll_us)}",
                    active=seg.active,
                    index=k,
                    start=format_instant_us(seg.start_us),
                    end=format_instant_us(seg.end_us),
                )
            )
    for p in t.polls:
        i = row_of(p.ts_us)
        if i is None:  # a counted poll from before the first row: drawn at the row's start
            i, x = 0, left
        else:
            x = x_of(i, p.ts_us)
        status = "active" if p.active else "inactive"
        counted = "counted" if p.counted else f"not counted: {p.reason}"
        chart.marks.append(
            Mark(
                x,
                TOP + i * ROW_HEIGHT + MARK_Y,
                p.active,
                p.counted,
                f"poll {format_instant_us(p.ts_us)} {status}, {counted}",
            )
        )
    # The standard windows' edges only: an extra period's start is in the windows table (one
    # longer than the week starts before the chart's first row).
    labels = {"week": "week starts", "day": "day starts", "hour": "hour starts"}
    for name, label in labels.items():
        start = t.windows[name][0]
        i = row_of(start)
        x = x_of(i, start)
        # "hour starts" is close to "now": its label goes left of its line, "now"'s right of it.
        chart.edges.append(_edge(i, x, label, "end" if name == "hour" else "start"))
    i = row_of(now)
    x = x_of(i, now)
    chart.edges.append(_edge(i, x, "now", "start" if x < right - 30 else "end"))
    return chart


def _edge(i: int, x: float, label: str, anchor: str) -> Edge:
    y = TOP + i * ROW_HEIGHT
    return Edge(
        x=x,
        y1=y + 2,
        y2=y + BAND_TOP + BAND_HEIGHT + 4,
        label=label,
        label_x=x + (3 if anchor == "start" else -3),
        label_y=y + BAND_TOP + BAND_HEIGHT + 13,
        anchor=anchor,
    )


# --- the report page's histogram -------------------------------------------------------------

HIST_WIDTH, HIST_HEIGHT = 760, 170
HIST_PAD, HIST_GAP = 8, 4
HIST_TOP = 22  # room for the counts above the tallest bar
HIST_BOTTOM = 20  # room for the bin labels


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str
    count_y: float  # the count sits just above the bar
    label_y: float

    @property
    def middle(self) -> float:
        return self.x + self.width / 2


@dataclass
class Histogram:
    width: int
    height: int
    base_y: float
    bars: list[Bar]


def histogram_chart(bins: list[dict]) -> Histogram:
    """Bars for ``bins`` (``{"label", "count", "height"}``, height 0..100 % of the tallest), as
    SVG geometry: the page sets no inline style, so the bar heights are attributes. An empty
    bin is a 1-unit line, so every bin shows."""
    plot = HIST_HEIGHT - HIST_TOP - HIST_BOTTOM
    base = HIST_HEIGHT - HIST_BOTTOM
    width = (HIST_WIDTH - 2 * HIST_PAD - HIST_GAP * (len(bins) - 1)) / max(len(bins), 1)
    bars = []
    for k, b in enumerate(bins):
        height = max(plot * b["height"] / 100, 1.0)
        bars.append(
            Bar(
                x=round(HIST_PAD + k * (width + HIST_GAP), 2),
                y=round(base - height, 2),
                width=round(width, 2),
                height=round(height, 2),
                count=b["count"],
                label=b["label"],
                count_y=round(base - height - 4, 2),
                label_y=HIST_HEIGHT - 6,
            )
        )
    return Histogram(width=HIST_WIDTH, height=HIST_HEIGHT, base_y=base, bars=bars)
