"""One store explained: GET /stores/<id>/timeline, ``flask explain``, and compute.explain_store.

The figures of a timeline are the store's report row for the same ``now``, and its pieces add
up to the brute force's seconds (tests/bruteforce.py): checked on every store of a demo data set
(plus hand-made special cases), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_report, counted_polls
from helpers import write_csv

from storemon.compute import REPORT_COLUMNS, Schedule, explain_store, report_windows
from storemon.demo import generate_demo_data
from storemon.explain import load_timeline
from storemon.ingest import ingest_file, ingest_files
from storemon.reports import build_report
from storemon.times import to_us

NOW = "2023-01-25T18:13:22.479220Z"  # the demo generator's last poll
ODD_ID = 'a/b <x>"&%20'


def url(store_id: str, as_of: str | None = None) -> str:
    path = f"/stores/{urllib.parse.quote(store_id, safe='')}/timeline"
    return path + (f"?as_of={urllib.parse.quote(as_of)}" if as_of else "")


# --- compute: the worked example, piece by piece ---------------------------------------------


def test_explain_store_worked_example():
    # Monday 2023-01-23, open 09:00-12:00 UTC; polls 10:14 active, 11:15 inactive, and 13:00
    # inactive (outside the hours: not counted). now = 13:30.
    hours = pd.DataFrame({"store": [0], "day": [0], "start_s": [9 * 3600], "end_s": [12 * 3600]})
    schedule = Schedule.build(1, hours, pd.Series(["UTC"], index=[0]))
    ts = [to_us(f"2023-01-23 {t}") for t in ("10:14", "11:15", "13:00")]
    polls = pd.DataFrame({"store": 0, "ts_us": ts, "active": [True, False, False]})
    found = explain_store("s", polls, schedule, to_us("2023-01-23 13:30"))

    assert [found.figures[c] for c in REPORT_COLUMNS] == ["s", 0.0, 1.74, 1.74, 0.0, 1.26, 1.26]
    assert found.poll_ts.tolist() == ts and found.poll_counted.tolist() == [True, True, False]
    # Two pieces: 09:00-10:44:30 up (by 10:14), 10:44:30-12:00 down (by 11:15); exact midpoint.
    assert (found.seg_start2 // 2).tolist() == [to_us("2023-01-23 09:00"), to_us("2023-01-23 10:44:30")]
    assert (found.seg_end2 // 2).tolist() == [to_us("2023-01-23 10:44:30"), to_us("2023-01-23 12:00")]
    assert found.seg_active.tolist() == [True, False]
    assert found.seg_poll.tolist() == ts[:2]
    assert (found.iv_start.tolist(), found.iv_end.tolist()) == (
        [to_us("2023-01-23 09:00")],
        [to_us("2023-01-23 12:00")],
    )


# --- the database: every store's figures are its report row ----------------------------------


def special_stores(folder):
    """Stores for each note: no counted poll, only an old counted poll, 24x7 without a zone,
    an unknown zone, and an awkward id."""
    write_csv(
        folder / "special_status.csv",
        f"""
store_id,status,timestamp_utc
closed-all,active,2023-01-24 03:00:00 UTC
closed-all,inactive,2023-01-25 03:00:00 UTC
old-only,inactive,2023-01-05 12:00:00 UTC
old-only,active,2023-01-24 03:00:00 UTC
always,active,2023-01-25 10:00:00 UTC
mars,inactive,2023-01-25 15:00:00 UTC
"{ODD_ID.replace('"', '""')}",active,2023-01-25 10:00:00 UTC
""",
    )
    write_csv(
        folder / "special_hours.csv",
        """
store_id,day,start_time_local,end_time_local
closed-all,0,09:00,10:00
old-only,0,09:00,17:00
old-only,1,09:00,17:00
old-only,2,09:00,17:00
old-only,3,09:00,17:00
old-only,4,09:00,17:00
mars,2,08:00,20:00
""",
    )
    write_csv(
        folder / "special_tz.csv", "store_id,timezone_str\nclosed-all,UTC\nold-only,UTC\nmars,Mars/Olympus_Mons\n"
    )


@pytest.fixture
def demo(engine, tmp_path):
    generate_demo_data(tmp_path / "feeds", stores=200, days=8, seed=5)
    ingest_files(engine, tmp_path / "feeds")
    special_stores(tmp_path)
    ingest_file(engine, "timezones", tmp_path / "special_tz.csv")
    ingest_file(engine, "hours", tmp_path / "special_hours.csv")
    ingest_file(engine, "status", tmp_path / "special_status.csv")
    return engine


@pytest.mark.parametrize("as_of", [None, "2023-01-22 07:30:00 UTC"])
def test_timeline_figures_equal_the_report_row_for_every_store(demo, as_of):
    from storemon.times import parse_instant

    as_of_us = parse_instant(as_of) if as_of else None
    report = build_report(demo, as_of_us).frame
    assert len(report) > 200 if as_of is None else len(report) > 150
    for row in report.itertuples(index=False):
        timeline = load_timeline(demo, row.store_id, as_of_us)
        assert timeline.now_us == (as_of_us or to_us(NOW))
        assert [timeline.figures[c] for c in REPORT_COLUMNS] == list(row), row.store_id
        # The pieces add up to the figures: the week's up and down segments, to the rounding.
        up = sum(s.seconds for s in timeline.segments if s.active) / 3600
        down = sum(s.seconds for s in timeline.segments if not s.active) / 3600
        assert (round(up, 2), round(down, 2)) == (row.uptime_last_week, row.downtime_last_week), row.store_id
        assert all(timeline.windows["week"][0] <= s.start_us < s.end_us <= timeline.now_us for s in timeline.segments)


def test_timeline_figures_with_periods_equal_the_report_row_for_every_store(demo):
    report = build_report(demo, windows=report_windows("2h,10d")).frame
    assert list(report.columns[-4:]) == ["uptime_last_2h", "downtime_last_2h", "uptime_last_10d", "downtime_last_10d"]
    for row in report.itertuples(index=False):
        timeline = load_timeline(demo, row.store_id, periods="2h,10d")
        assert [timeline.figures[c] for c in report.columns] == list(row), row.store_id


def demo_feeds(tmp_path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The feeds the `demo` fixture loaded, as frames (polls, hours, zones)."""

    def read(*paths):
        return pd.concat([pd.read_csv(p, dtype={"store_id": str}) for p in paths], ignore_index=True)

    feeds = tmp_path / "feeds"
    polls = read(feeds / "store_status.csv", tmp_path / "special_status.csv")
    polls["timestamp_utc"] = pd.to_datetime(polls["timestamp_utc"].str.removesuffix(" UTC"), format="ISO8601", utc=True)
    return (
        polls,
        read(feeds / "menu_hours.csv", tmp_path / "special_hours.csv"),
        read(feeds / "timezones.csv", tmp_path / "special_tz.csv"),
    )


_BRUTE: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}  # as_of -> (figures, counted polls): same demo each time


@pytest.mark.parametrize("as_of", ["2023-01-25 18:13:22 UTC", "2023-01-22 07:30:00 UTC"])
def test_timeline_figures_are_the_brute_force_ones_for_every_store(demo, tmp_path, as_of):
    """Every store's timeline against the brute force (tests/bruteforce.py): its pieces of
    business hours add up, in each window, to the brute force's seconds, and its figures are
    those seconds rounded.

    `now` is on a whole second, so the brute force's samples (one a second, on the grid of
    now) meet every window and business-hours edge exactly; a midpoint of two counted polls of
    different status (the demo's polls have microseconds) may fall between two samples and
    make the brute force up to a second off. So in each window the pieces may differ from the
    brute force by less than a second per such midpoint inside it, and a figure must be the
    rounded brute force wherever rounding the two ends of that margin agrees."""
    from storemon.times import parse_instant

    now_us = parse_instant(as_of)
    now = pd.Timestamp(now_us, unit="us", tz="UTC").to_pydatetime()
    if as_of not in _BRUTE:
        polls, hours, zones = demo_feeds(tmp_path)
        _BRUTE[as_of] = (
            brute_force_report(polls, hours, zones, now).set_index("store_id"),
            counted_polls(polls, hours, zones, now),
        )
    brute, counted = _BRUTE[as_of]
    assert len(brute) > 150
    decided = undecided = 0
    for store_id, expected in brute.iterrows():
        timeline = load_timeline(demo, store_id, now_us)
        mine = counted[counted["store_id"] == store_id]
        t, active = mine["t"].to_numpy(np.int64), mine["active"].to_numpy(bool)
        change2 = (t[:-1] + t[1:])[active[:-1] != active[1:]]  # doubled midpoints where the status changes
        for window, (start_us, end_us) in timeline.windows.items():
            lo2, hi2 = 2 * start_us, 2 * end_us
            margin = int(((change2 >= lo2) & (change2 < hi2)).sum())  # seconds
            unit = 60 if window == "hour" else 3600
            for kind, is_active in (("uptime", True), ("downtime", False)):
                column = f"{kind}_last_{window}"
                pieces = (
                    sum(
                        max(0, min(s.end2, hi2) - max(s.start2, lo2))
                        for s in timeline.segments
                        if s.active == is_active
                    )
                    / 2_000_000
                )
                seconds = expected[column]
                assert abs(pieces - seconds) < max(margin, 1e-9), (store_id, column, pieces, seconds, margin)
                low = np.round(max(seconds - margin, 0) / unit, 2)
                high = np.round((seconds + margin) / unit, 2)
                figure = timeline.figures[column]
                if low == high:
                    assert (store_id, column, figure) == (store_id, column, low)
                    decided += 1
                else:
                    assert low <= figure <= high, (store_id, column, figure, seconds, margin)
                    undecided += 1
    assert decided >= 0.9 * (decided + undecided), (decided, undecided)


def test_timeline_json(client, demo):
    answer = client.get(url("closed-all"))
    assert answer.status_code == 200
    t = answer.get_json()
    assert t["store_id"] == "closed-all" and t["now"] == NOW
    assert t["windows"]["week"] == {"start": "2023-01-18T18:13:22.479220Z", "end": NOW}
    assert t["windows"]["hour"]["start"] == "2023-01-25T17:13:22.479220Z"
    assert (t["timezone"], t["timezone_source"]) == ("UTC", "given")
    assert t["business_hours"] == [
        {"day": 0, "day_name": "Monday", "start_time_local": "09:00:00", "end_time_local": "10:00:00"}
    ]
    assert t["business_intervals"] == [
        {
            "start": "2023-01-23T09:00:00.000000Z",
            "end": "2023-01-23T10:00:00.000000Z",
            "local_start": "2023-01-23T09:00:00+00:00",
            "local_end": "2023-01-23T10:00:00+00:00",
            "special_date": None,
        }
    ]
    assert t["special_days"] == []
    assert [(p["timestamp"], p["status"], p["counted"], p["reason"]) for p in t["polls"]] == [
        ("2023-01-24T03:00:00.000000Z", "active", False, "outside business hours"),
        ("2023-01-25T03:00:00.000000Z", "inactive", False, "outside business hours"),
    ]
    assert t["segments"] == []
    assert t["figures"] == {c: 0.0 for c in REPORT_COLUMNS[1:]}
    assert t["notes"] == [
        "No poll of this store falls inside its business hours (2 in the week, none counted, "
        "and none earlier): there is no status to interpolate, so every figure is 0."
    ]


def test_timeline_notes_for_the_special_cases(client, demo):
    old = client.get(url("old-only")).get_json()
    # The only counted poll is 13 days before the week: it speaks for the whole week (down).
    assert old["polls"][0] == {
        "timestamp": "2023-01-05T12:00:00.000000Z",
        "status": "inactive",
        "counted": True,
        "reason": None,
        "in_week": False,
    }
    assert old["figures"]["downtime_last_week"] == 40.0 and old["figures"]["uptime_last_week"] == 0.0
    assert old["segments"][0]["poll"] == "2023-01-05T12:00:00.000000Z"
    assert old["notes"] == [
        "No poll in the week falls inside business hours: the whole week takes the status "
        "(inactive) of the nearest counted poll, at 2023-01-05T12:00:00.000000Z, 13.3 days "
        "before the week starts."
    ]
    always = client.get(url("always")).get_json()
    assert (always["timezone"], always["timezone_source"]) == ("America/Chicago", "default: missing")
    assert always["notes"] == [
        "No business hours are stored for this store: it is open 24x7.",
        "No time zone is stored for this store: America/Chicago is used.",
    ]
    assert always["business_intervals"] == [
        {
            "start": "2023-01-18T18:13:22.479220Z",
            "end": NOW,
            "local_start": "2023-01-18T12:13:22.479220-06:00",
            "local_end": "2023-01-25T12:13:22.479220-06:00",
            "special_date": None,
        }
    ]
    assert always["figures"]["uptime_last_week"] == 168.0
    mars = client.get(url("mars")).get_json()
    assert (mars["timezone"], mars["timezone_source"], mars["timezone_given"]) == (
        "America/Chicago",
        "default: unknown name",
        "Mars/Olympus_Mons",
    )
    assert mars["notes"] == [
        "The stored time zone 'Mars/Olympus_Mons' is not a known zone name: America/Chicago is used."
    ]
    # Wednesday 08:00-20:00 Chicago = 14:00-02:00 UTC; the poll at 15:00 speaks for it all.
    assert mars["business_intervals"][-1]["local_start"] == "2023-01-25T08:00:00-06:00"
    assert mars["figures"]["downtime_last_day"] == 4.22  # 14:00 -> now 18:13:22 on Wednesday


def test_timeline_of_an_awkward_id_and_errors(client, demo):
    odd = client.get(url(ODD_ID))
    assert odd.status_code == 200 and odd.get_json()["store_id"] == ODD_ID
    # A slash left as it is (the path converter) reaches the same store.
    assert client.get(f"/stores/{urllib.parse.quote(ODD_ID, safe='/')}/timeline").get_json()["store_id"] == ODD_ID
    missing = client.get(url("no-such-store"))
    assert missing.status_code == 404
    assert missing.get_json() == {
        "error": "Not Found",
        "message": "no store 'no-such-store' (no poll of it was ever ingested)",
    }
    early = client.get(url("always", "2023-01-20T00:00:00Z"))
    assert (
        early.status_code == 404 and "no poll at or before 2023-01-20T00:00:00.000000Z" in early.get_json()["message"]
    )
    bad = client.get(url("always", "yesterday"))
    assert bad.status_code == 400 and bad.get_json()["message"].startswith("as_of: cannot read 'yesterday'")


def test_timeline_with_as_of_matches_the_report_as_of(client, demo, tmp_path):
    report = build_report(demo, to_us("2023-01-24 12:00")).frame.set_index("store_id")
    t = client.get(url("old-only", "2023-01-24T12:00:00Z")).get_json()
    assert t["now"] == "2023-01-24T12:00:00.000000Z"
    # Open Mon-Fri 09:00-17:00 UTC; the only counted poll (Thu 5th 12:00) is inactive, so every
    # open hour is down. now = Tue 24th 12:00. Hour: 11:00-12:00, 60 min. Day: Mon 23rd
    # 12:00-17:00 and Tue 09:00-12:00, 5 + 3 = 8 h. Week from Tue 17th 12:00: 5 h that
    # Tuesday, 3 x 8 h Wed-Fri, 8 h Monday, 3 h Tuesday = 40 h.
    expected = {
        "uptime_last_hour": 0.0,
        "uptime_last_day": 0.0,
        "uptime_last_week": 0.0,
        "downtime_last_hour": 60.0,
        "downtime_last_day": 8.0,
        "downtime_last_week": 40.0,
    }
    assert t["figures"] == expected == report.loc["old-only"].to_dict()
    polls, hours, zones = (frame[frame["store_id"] == "old-only"] for frame in demo_feeds(tmp_path))
    brute = brute_force_report(polls, hours, zones, pd.Timestamp("2023-01-24 12:00Z").to_pydatetime()).iloc[0]
    assert {c: brute[c] / (60 if c.endswith("hour") else 3600) for c in expected} == expected
    # The poll at 03:00 on the 24th is before now: in the week, outside the hours.
    assert [(p["timestamp"], p["counted"], p["in_week"]) for p in t["polls"]] == [
        ("2023-01-05T12:00:00.000000Z", True, False),
        ("2023-01-24T03:00:00.000000Z", False, True),
    ]


def test_cli_explain(runner, demo):
    result = runner.invoke(args=["explain", "closed-all"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == ["store closed-all", f"now       {NOW}", "time zone UTC"]
    assert "  Monday    09:00:00-10:00:00" in lines
    assert "  2023-01-24T03:00:00.000000Z active   not counted: outside business hours" in lines
    assert "  uptime_last_week     0.00" in lines
    assert lines[-1].startswith("  - No poll of this store falls inside its business hours")
    as_json = runner.invoke(args=["explain", "old-only", "--as-of", "2023-01-24 12:00:00 UTC", "--json"])
    assert json.loads(as_json.output)["now"] == "2023-01-24T12:00:00.000000Z"
    missing = runner.invoke(args=["explain", "no-such-store"])
    assert missing.exit_code == 1 and "no store 'no-such-store'" in missing.output


def test_timeline_ignores_other_stores_and_counts_polls_at_now(engine, tmp_path):
    """A poll exactly at now is in the week (shown) though it speaks for no time."""
    write_csv(
        tmp_path / "s.csv",
        """
store_id,status,timestamp_utc
x,active,2023-01-25 10:00:00 UTC
x,inactive,2023-01-25 12:00:00 UTC
y,active,2023-01-25 13:00:00 UTC
""",
    )
    ingest_file(engine, "status", tmp_path / "s.csv")
    t = load_timeline(engine, "x", to_us("2023-01-25 12:00"))
    assert [(p.ts_us, p.counted) for p in t.polls] == [
        (to_us("2023-01-25 10:00"), True),
        (to_us("2023-01-25 12:00"), True),
    ]
    assert [(s.start_us, s.end_us, s.active) for s in t.segments] == [
        (to_us("2023-01-18 12:00"), to_us("2023-01-25 11:00"), True),
        (to_us("2023-01-25 11:00"), to_us("2023-01-25 12:00"), False),
    ]
    assert t.figures["uptime_last_hour"] == 0.0 and t.figures["downtime_last_hour"] == 60.0
    assert np.isclose(sum(s.hours for s in t.segments), 168.0)


def test_timeline_of_special_days_across_a_clock_change(engine, tmp_path):
    """Through the database: a store in New York with weekly hours, a special Saturday (10:00-12:00)
    and a closed Sunday, the 23-hour day clocks go forward; a 24x7 store closed that Sunday.
    The timeline gives each special date's span in UTC, the business interval it shaped, its
    notes, and `explain`'s text names it."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    polls = "".join(
        f"{s},active,2023-03-{d:02d} {h:02d}:00:00 UTC\n" for s in ("ny", "all") for d in range(6, 14) for h in (3, 15)
    )
    write_csv(feeds / "store_status.csv", "store_id,status,timestamp_utc\n" + polls)
    week = "".join(f"ny,{day},09:00,17:00\n" for day in range(7))
    write_csv(feeds / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n" + week)
    write_csv(feeds / "timezones.csv", "store_id,timezone_str\nny,America/New_York\nall,America/New_York\n")
    write_csv(
        feeds / "holidays.csv",
        "store_id,date,start_time_local,end_time_local\nny,2023-03-11,10:00,12:00\nny,2023-03-12,,\nall,2023-03-12,,\n",
    )
    ingest_files(engine, feeds)
    t = load_timeline(engine, "ny", to_us("2023-03-13 12:00"))
    days = t.to_dict()["special_days"]
    assert [(d["date"], d["closed"], d["start"], d["end"]) for d in days] == [
        ("2023-03-11", False, "2023-03-11T05:00:00.000000Z", "2023-03-12T05:00:00.000000Z"),
        ("2023-03-12", True, "2023-03-12T05:00:00.000000Z", "2023-03-13T04:00:00.000000Z"),  # 23 hours
    ]
    assert days[0]["hours"] == [{"start_time_local": "10:00:00", "end_time_local": "12:00:00"}]
    shaped = [(i["start"], i["end"]) for i in t.to_dict()["business_intervals"] if i["special_date"] == "2023-03-11"]
    assert shaped == [("2023-03-11T15:00:00.000000Z", "2023-03-11T17:00:00.000000Z")]
    assert not [i for i in t.intervals if to_us("2023-03-12 05:00") <= i.start_us < to_us("2023-03-13 04:00")]
    assert "Closed on 2023-03-12 (special day, from holidays.csv): no business hours that date." in t.notes
    assert (
        "Open 10:00:00-12:00:00 on 2023-03-11 (special day, from holidays.csv) instead of the weekly hours." in t.notes
    )
    text = t.to_text()
    assert "special days (local dates)\n  2023-03-11 10:00:00-12:00:00  (holidays.csv)\n  2023-03-12 closed" in text
    assert "| 2023-03-11T10:00:00-05:00 .. 2023-03-11T12:00:00-05:00  (special day 2023-03-11)\n" in text
    always = load_timeline(engine, "all", to_us("2023-03-13 12:00"))
    assert "No business hours are stored for this store: it is open 24x7, except on its special days." in always.notes
    assert not [i for i in always.intervals if to_us("2023-03-12 05:00") <= i.start_us < to_us("2023-03-13 04:00")]
