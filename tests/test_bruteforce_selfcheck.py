"""Self-checks for the brute-force reference report (tests/bruteforce.py)."""

import os
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from bruteforce import brute_force_report, local_to_utc  # noqa: E402

UTC = UTC


def U(*a):
    return datetime(*a, tzinfo=UTC)


def polls_df(rows):
    return pd.DataFrame(rows, columns=["store_id", "timestamp_utc", "status"]).assign(
        timestamp_utc=lambda d: pd.to_datetime(d["timestamp_utc"], utc=True)
    )


def hours_df(rows):
    return pd.DataFrame(rows, columns=["store_id", "day", "start_time_local", "end_time_local"])


def tz_df(rows):
    return pd.DataFrame(rows, columns=["store_id", "timezone_str"])


def row_of(rep, sid):
    r = rep[rep["store_id"] == sid]
    assert len(r) == 1, rep
    return r.iloc[0]


# --- worked example -------------------------------------------------------------------------------


def test_spec_worked_example():
    # 2023-01-23 is a Monday.
    polls = polls_df([("s1", U(2023, 1, 23, 10, 14), "active"), ("s1", U(2023, 1, 23, 11, 15), "inactive")])
    hours = hours_df([("s1", 0, "09:00:00", "12:00:00")])
    rep = brute_force_report(polls, hours, tz_df([("s1", "UTC")]), U(2023, 1, 23, 12, 0))
    r = row_of(rep, "s1")
    assert r["uptime_last_day"] == 6270 and r["downtime_last_day"] == 4530
    assert r["uptime_last_week"] == 6270 and r["downtime_last_week"] == 4530
    assert r["uptime_last_hour"] == 0 and r["downtime_last_hour"] == 3600
    assert list(rep.columns) == [
        "store_id",
        "uptime_last_hour",
        "uptime_last_day",
        "uptime_last_week",
        "downtime_last_hour",
        "downtime_last_day",
        "downtime_last_week",
    ]


def test_tie_goes_to_later_poll():
    polls = polls_df([("s", U(2023, 1, 23, 10, 0, 0), "active"), ("s", U(2023, 1, 23, 10, 0, 2), "inactive")])
    rep = brute_force_report(polls, hours_df([]), tz_df([("s", "UTC")]), U(2023, 1, 23, 10, 0, 2))
    r = row_of(rep, "s")
    # samples 09:00:02 .. 10:00:01; 10:00:01 is equidistant -> later (inactive)
    assert r["uptime_last_hour"] == 3599 and r["downtime_last_hour"] == 1


# --- defaults -------------------------------------------------------------------------------------


def test_no_hours_rows_is_24x7_and_no_counted_poll_is_zero():
    now = U(2023, 1, 25, 12, 0)
    polls = polls_df(
        [
            ("always", now - timedelta(minutes=30), "active"),
            # closed-store: Monday-only hours, its only poll is on a Wednesday -> not counted
            ("closed", now - timedelta(minutes=30), "active"),
            # only a poll after now -> no row at all
            ("future", now + timedelta(minutes=1), "active"),
        ]
    )
    hours = hours_df([("closed", 0, "09:00", "17:00")])
    rep = brute_force_report(polls, hours, tz_df([("always", "UTC"), ("closed", "UTC")]), now)
    assert list(rep["store_id"]) == ["always", "closed"]
    a = row_of(rep, "always")
    assert (a["uptime_last_hour"], a["uptime_last_day"], a["uptime_last_week"]) == (3600, 86400, 604800)
    assert (a["downtime_last_hour"], a["downtime_last_day"], a["downtime_last_week"]) == (0, 0, 0)
    c = row_of(rep, "closed")
    assert all(c[col] == 0 for col in rep.columns[1:])


def test_unknown_and_missing_zone_default_to_chicago():
    # Wednesday 2023-01-25; Chicago is UTC-6 in January: 09:00-12:00 local = 15:00-18:00 UTC.
    now = U(2023, 1, 25, 20, 0)
    stores = ["chi", "unknown", "missing", "empty"]
    polls = polls_df([(s, U(2023, 1, 25, 16, 0), "active") for s in stores])
    hours = hours_df([(s, 2, "09:00:00", "12:00:00") for s in stores])
    tz = tz_df([("chi", "America/Chicago"), ("unknown", "Mars/Olympus_Mons"), ("empty", "")])
    rep = brute_force_report(polls, hours, tz, now)
    for s in stores:
        r = row_of(rep, s)
        assert r["uptime_last_day"] == 3 * 3600, s
        assert r["uptime_last_hour"] == 0 and r["downtime_last_day"] == 0, s
    # and a UTC store with the same rows would differ (09-12 UTC, poll at 16:00 not counted)
    rep2 = brute_force_report(polls.assign(store_id="u"), hours.assign(store_id="u"), tz_df([("u", "UTC")]), now)
    assert row_of(rep2, "u")["uptime_last_day"] == 0


def test_now_not_on_whole_second():
    now = U(2023, 1, 25, 12, 0, 0) + timedelta(microseconds=500_000)
    polls = polls_df([("s", now - timedelta(minutes=10), "inactive")])
    rep = brute_force_report(polls, hours_df([]), tz_df([]), now)
    r = row_of(rep, "s")
    assert (r["downtime_last_hour"], r["downtime_last_day"], r["uptime_last_week"]) == (3600, 86400, 0)


def test_overnight_and_multiple_rows():
    # Monday 22:00-02:00 (into Tuesday) plus Tuesday 10:00-11:00 and 10:30-12:00 (merge)
    now = U(2023, 1, 25, 0, 0)  # Wednesday 00:00 UTC
    polls = polls_df([("s", U(2023, 1, 24, 10, 45), "active")])
    hours = hours_df(
        [
            ("s", 0, "22:00", "02:00"),
            ("s", 1, "10:00", "11:00"),
            ("s", 1, "10:30:00", "12:00:00"),
            ("s", 6, "05:00", "05:00"),
        ]
    )
    rep = brute_force_report(polls, hours, tz_df([("s", "UTC")]), now)
    r = row_of(rep, "s")
    assert r["uptime_last_day"] == 4 * 3600  # Tue 00-02 (Monday's overnight row) + Tue 10-12
    # week [Wed 18 00:00, Wed 25 00:00): Sun 22 05:00 -> Mon 23 05:00 (24 h),
    # Mon 23 22:00 -> Tue 02:00 (4 h), Tue 10-12 (2 h); the 24 h row overlaps nothing else
    assert r["uptime_last_week"] == (24 + 4 + 2) * 3600
    assert r["uptime_last_week"] + r["downtime_last_week"] == (24 + 4 + 2) * 3600


# --- DST ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sunday", [U(2023, 3, 12), U(2023, 11, 5)])  # spring / autumn, US
def test_dst_days_are_8h_local(sunday):
    day = sunday.date()
    now = sunday + timedelta(days=2, hours=12)
    polls = polls_df([("ny", sunday + timedelta(hours=16), "active")])  # ~11/12 local: inside
    hours = hours_df([("ny", 6, "09:00:00", "17:00:00")])
    rep = brute_force_report(polls, hours, tz_df([("ny", "America/New_York")]), now)
    r = row_of(rep, "ny")
    assert r["uptime_last_week"] == 8 * 3600 and r["downtime_last_week"] == 0
    # and the interval is 09:00-17:00 local on that day
    zi = ZoneInfo("America/New_York")
    start = local_to_utc(datetime(day.year, day.month, day.day, 9), zi)
    assert datetime.fromtimestamp(start / 1e6, zi).hour == 9


def test_dst_across_transition_and_gap_and_ambiguous():
    zi = "America/New_York"
    cases = [
        # (sunday, start, end, expected business seconds that day)
        (U(2023, 3, 12), "00:00", "05:00", 4 * 3600),  # spring: 5 h wall = 4 h real
        (U(2023, 11, 5), "00:00", "05:00", 6 * 3600),  # autumn: 5 h wall = 6 h real
        (U(2023, 3, 12), "02:30", "04:00", 3600),  # 02:30 missing -> 03:00 EDT
        (U(2023, 11, 5), "01:30", "03:00", 9000),  # 01:30 first occurrence (EDT)
    ]
    for sunday, st, en, expected in cases:
        polls = polls_df([("s", sunday + timedelta(hours=7, minutes=30), "inactive")])
        hours = hours_df([("s", 6, st, en)])
        rep = brute_force_report(polls, hours, tz_df([("s", zi)]), sunday + timedelta(days=1))
        r = row_of(rep, "s")
        assert r["downtime_last_day"] == expected, (sunday, st, en, r.to_dict())
        assert r["uptime_last_day"] == 0


def test_local_to_utc_matches_pandas_rule():
    # Cross-check the zoneinfo conversion against the pandas formulation of docs/report-rules.md, in zones
    # where pandas' shift_forward is right (see test_gap_maps_to_transition_instant).
    for zone in [
        "America/New_York",
        "Europe/London",
        "America/Chicago",
        "Europe/Berlin",
        "Australia/Sydney",
        "America/Santiago",
    ]:
        zi = ZoneInfo(zone)
        for base in [
            datetime(2023, 3, 12),
            datetime(2023, 11, 5),
            datetime(2023, 3, 26),
            datetime(2023, 10, 29),
            datetime(2023, 4, 2),
            datetime(2023, 10, 1),
            datetime(2023, 9, 3),
            datetime(2023, 4, 1),
        ]:
            for minutes in range(0, 24 * 60, 15):
                naive = base + timedelta(minutes=minutes)
                ours = local_to_utc(naive, zi)
                ref = pd.Timestamp(naive).tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
                ref_us = ref.value // 1000
                assert ours == ref_us, (zone, naive, ours, ref)


@pytest.mark.parametrize(
    "zone, naive, expected_utc",
    [
        # (pandas 3.1 shift_forward disagrees on all four: it gives 12:00, 16:00, 13:15, 00:00 UTC)
        ("America/Anchorage", datetime(2023, 3, 12, 2, 0), U(2023, 3, 12, 11, 0)),  # 1 h gap
        ("Australia/Lord_Howe", datetime(2023, 10, 1, 2, 0), U(2023, 9, 30, 15, 30)),  # 30 min gap
        ("Pacific/Chatham", datetime(2023, 9, 24, 2, 50), U(2023, 9, 23, 14, 0)),  # gap at :45
        ("Antarctica/Troll", datetime(2023, 3, 26, 1, 30), U(2023, 3, 26, 1, 0)),  # 2 h gap
        ("America/New_York", datetime(2023, 3, 12, 2, 30), U(2023, 3, 12, 7, 0)),
        ("America/New_York", datetime(2023, 11, 5, 1, 30), U(2023, 11, 5, 5, 30)),  # ambiguous: 1st
    ],
)
def test_gap_maps_to_transition_instant(zone, naive, expected_utc):
    # docs/report-rules.md: a non-existent wall time moves to the first instant after the gap.
    us = local_to_utc(naive, ZoneInfo(zone))
    assert us == (expected_utc - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_a_week_of_hourly_polls():
    # now = Wed 2023-01-25 12:00 UTC = 05:00 in Denver (MST, UTC-7). Polls every hour for 8 days,
    # h hours before now, inactive when h % 3 == 0. Open 08:00-22:00 daily and Fri 23:00-01:00.
    now = U(2023, 1, 25, 12, 0)
    polls = polls_df([("s", now - timedelta(hours=h), "active" if h % 3 else "inactive") for h in range(0, 24 * 8)])
    hours = hours_df([("s", d, "08:00", "22:00") for d in range(7)] + [("s", 4, "23:00", "01:00")])
    rep = brute_force_report(polls, hours, tz_df([("s", "America/Denver")]), now)
    r = row_of(rep, "s")
    # Counted polls: local 08:00 ... 21:00 each day, Fri 23:00 and Sat 00:00. Each speaks for
    # an hour centred on it, cut to business hours: 08:00 for 0.5 h, 09:00 ... 20:00 for 1 h,
    # 21:00 for 1.5 h; Fri 23:00 for 0.5 h (23:00-23:30), Sat 00:00 for 1.5 h (23:30-01:00).
    # A poll at local hour k is h = 24 * days + 5 - k hours before now: inactive when
    # (5 - k) % 3 == 0, i.e. k = 8, 11, 14, 17, 20 (4.5 h down a day, 9.5 h up) and Fri 23:00.
    # The hour (04:00-05:00 Wed) is closed; the day holds Tuesday 08:00-22:00; the week holds
    # Wed 18th ... Tue 24th (7 days) and the Friday night.
    assert (r["uptime_last_hour"], r["downtime_last_hour"]) == (0, 0)
    assert (r["uptime_last_day"], r["downtime_last_day"]) == (9.5 * 3600, 4.5 * 3600)
    assert r["uptime_last_week"] == (7 * 9.5 + 1.5) * 3600  # 68 h
    assert r["downtime_last_week"] == (7 * 4.5 + 0.5) * 3600  # 32 h
