"""The store page's week chart laid out (chart.py): rows, bands, segments, marks and edges in SVG
units, from a timeline read from the database or built by hand."""

from __future__ import annotations

import pytest
from helpers import special_days_timeline

from storemon.chart import BAND_HEIGHT, BAND_TOP, LABEL_WIDTH, RIGHT_PAD, SPECIAL_MARGIN, WIDTH, week_chart
from storemon.explain import load_timeline
from storemon.ingest import ingest_file
from storemon.times import to_us

SPAN = WIDTH - RIGHT_PAD - LABEL_WIDTH


def x_at(hours: float) -> float:
    """The x of a local time of day, in hours after midnight (a day without a DST change)."""
    return LABEL_WIDTH + SPAN * hours / 24


def test_week_chart_layout(engine, tmp_path):
    """Rows are local days; a 09:00-17:00 band sits at 9/24..17/24 of the plot on every row."""
    (tmp_path / "tz.csv").write_text("store_id,timezone_str\nk,America/New_York\n")
    (tmp_path / "hours.csv").write_text(
        "store_id,day,start_time_local,end_time_local\n" + "".join(f"k,{d},09:00,17:00\n" for d in range(7))
    )
    (tmp_path / "polls.csv").write_text(
        "store_id,status,timestamp_utc\nk,active,2023-01-24 15:00:00 UTC\nk,inactive,2023-01-25 15:00:00 UTC\n"
    )
    for kind, name in (("timezones", "tz"), ("hours", "hours"), ("status", "polls")):
        ingest_file(engine, kind, tmp_path / f"{name}.csv")
    t = load_timeline(engine, "k", to_us("2023-01-25 18:00"))  # 13:00 in New York
    chart = week_chart(t)
    span = WIDTH - RIGHT_PAD - LABEL_WIDTH
    assert [r.label for r in chart.rows] == [
        "Wed 18 Jan",
        "Thu 19 Jan",
        "Fri 20 Jan",
        "Sat 21 Jan",
        "Sun 22 Jan",
        "Mon 23 Jan",
        "Tue 24 Jan",
        "Wed 25 Jan",
    ]
    full = [b for b in chart.bands if b.y == chart.rows[1].y + 14]  # Thursday: a whole band
    assert len(full) == 1
    assert full[0].x == pytest.approx(LABEL_WIDTH + span * 9 / 24)
    assert full[0].width == pytest.approx(span * 8 / 24)
    # Wednesday the 18th: the band is cut by nothing (it overlaps the week), the up segment
    # starts at the week's start, 13:00 local.
    first = [s for s in chart.segments if s.y == chart.rows[0].y + 14]
    assert first[0].x == pytest.approx(LABEL_WIDTH + span * 13 / 24) and first[0].active
    now = next(e for e in chart.edges if e.label == "now")
    assert now.x == pytest.approx(LABEL_WIDTH + span * 13 / 24) and now.y1 == chart.rows[-1].y + 2
    # The down piece of the 25th runs from the midpoint of the polls (03:00 UTC, outside the
    # hours) -- so from 09:00 local -- to now.
    last = [s for s in chart.segments if s.y == chart.rows[-1].y + 14]
    assert [(round(s.x, 6), round(s.x + s.width, 6), s.active) for s in last] == [
        (round(LABEL_WIDTH + span * 9 / 24, 6), round(LABEL_WIDTH + span * 13 / 24, 6), False)
    ]
    assert [(m.counted, m.active) for m in chart.marks] == [(True, True), (True, False)]
    assert chart.special_bands == [] and chart.closed == []


def test_a_special_day_closed_all_day_covers_its_whole_row_and_names_its_date_and_file():
    chart = week_chart(special_days_timeline())
    monday = next(r for r in chart.rows if r.label == "Mon 23 Jan")
    # 2022-12-25 is closed too, but long before the chart's first row: nothing is drawn for it.
    assert [(c.date, c.closed) for c in chart.closed] == [("2023-01-23", True)]
    closed = chart.closed[0]
    assert closed.x == pytest.approx(LABEL_WIDTH) and closed.width == pytest.approx(SPAN)
    assert closed.y == monday.y + BAND_TOP - SPECIAL_MARGIN and closed.height == BAND_HEIGHT + 2 * SPECIAL_MARGIN
    assert closed.title == "closed (special day: 2023-01-23, from holidays.csv)"
    # No band of either kind on that row: the store is not open that date.
    on_monday = [b for b in chart.bands + chart.special_bands if monday.y <= b.y < monday.y + 50]
    assert on_monday == []


def test_a_special_days_hours_are_a_taller_band_of_their_own_and_one_past_midnight_is_two_pieces_of_that_date():
    chart = week_chart(special_days_timeline())
    rows = {r.label: r for r in chart.rows}
    special = [(b.date, b.y, round(b.x, 6), round(b.x + b.width, 6)) for b in chart.special_bands]
    raised = BAND_TOP - SPECIAL_MARGIN
    assert special == [
        # Friday 09:00 to Saturday 02:00: Friday's row from 09:00 to its end, Saturday's to 02:00.
        ("2023-01-20", rows["Fri 20 Jan"].y + raised, round(x_at(9), 6), round(x_at(24), 6)),
        ("2023-01-20", rows["Sat 21 Jan"].y + raised, round(x_at(0), 6), round(x_at(2), 6)),
        # Tuesday 10:00-14:00 instead of 09:00-17:00.
        ("2023-01-24", rows["Tue 24 Jan"].y + raised, round(x_at(10), 6), round(x_at(14), 6)),
    ]
    assert all(b.height == BAND_HEIGHT + 2 * SPECIAL_MARGIN and not b.closed for b in chart.special_bands)
    tuesday = chart.special_bands[2]
    assert tuesday.title == (
        "special hours 2023-01-24T10:00:00-05:00 to 2023-01-24T14:00:00-05:00 "
        "(special day: 2023-01-24, from holidays.csv)"
    )
    # The weekly hours stay plain bands: Wed, Thu, Sat, Sun and the 25th, 09:00-17:00.
    assert [(b.y - BAND_TOP, round(b.x, 6), round(b.x + b.width, 6)) for b in chart.bands] == [
        (rows[label].y, round(x_at(9), 6), round(x_at(17), 6))
        for label in ("Wed 18 Jan", "Thu 19 Jan", "Sat 21 Jan", "Sun 22 Jan", "Wed 25 Jan")
    ]
    assert all(b.title.startswith("business hours ") for b in chart.bands)
    # The up piece sits on the special band, inside it.
    (up,) = chart.segments
    assert up.y == tuesday.y + SPECIAL_MARGIN and up.x == pytest.approx(tuesday.x)
    assert up.width == pytest.approx(tuesday.width)


def test_an_extra_periods_window_draws_no_edge_of_its_own():
    """The 30d window starts long before the chart's first row: the edges are the week's, the
    day's, the hour's and now, as without periods."""
    chart = week_chart(special_days_timeline())
    assert [e.label for e in chart.edges] == ["week starts", "day starts", "hour starts", "now"]
    assert chart.edges[-1].x == pytest.approx(x_at(13))
