"""The store page's week chart laid out (chart.py): rows, bands, segments, marks and edges in SVG
units."""

from __future__ import annotations

import pytest

from storemon.chart import LABEL_WIDTH, RIGHT_PAD, WIDTH, week_chart
from storemon.explain import load_timeline
from storemon.ingest import ingest_file
from storemon.times import to_us


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
