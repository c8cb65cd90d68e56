"""Self-checks for the brute-force reference report (tests/bruteforce.py)."""

import os
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from bruteforce import brute_force_report, business_time, counted_polls, local_to_utc, report_csv  # noqa: E402

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


def special_df(rows):
    """Special days: (store_id, date, start, end); both times "" for closed."""
    return pd.DataFrame(rows, columns=["store_id", "date", "start_time_local", "end_time_local"])


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


# --- special days ---------------------------------------------------------------------------------
# 2023-01-23 is a Monday, 2023-01-28 a Saturday; the figures below are worked out by hand.

EVERY_DAY_9_TO_17 = [(d, "09:00", "17:00") for d in range(7)]


def figures(rep, sid):
    """(up_hour, up_day, up_week, down_hour, down_day, down_week) in seconds."""
    r = row_of(rep, sid)
    return tuple(int(r[c]) for c in rep.columns[1:7])


def test_a_holiday_closes_the_store_for_its_whole_date():
    # Open 09:00-17:00 UTC every day, closed on Monday 23rd. The inactive poll on the holiday is
    # outside business hours and does not count; the Sunday poll is the only one that does.
    polls = polls_df([("h", U(2023, 1, 22, 12), "active"), ("h", U(2023, 1, 23, 12), "inactive")])
    hours = hours_df([("h", *row) for row in EVERY_DAY_9_TO_17])
    special = special_df([("h", "2023-01-23", "", "")])
    zones, now = tz_df([("h", "UTC")]), U(2023, 1, 24)
    rep = brute_force_report(polls, hours, zones, now, special=special)
    # day = Monday 23rd: no business time at all. week = Tue 17th ... Mon 23rd: 6 days x 8 h, up.
    assert figures(rep, "h") == (0, 0, 48 * 3600, 0, 0, 0)
    business = business_time(polls, hours, zones, now, special=special).iloc[0]
    assert (business.business_day, business.business_week, business.counted_polls) == (0, 48 * 3600, 1)
    assert counted_polls(polls, hours, zones, now, special=special)["t"].tolist() == [
        pd.Timestamp("2023-01-22 12:00Z").value // 1000
    ]
    # Without the holiday the Monday counts: 8 h, all down (nearest poll: Monday 12:00).
    assert figures(brute_force_report(polls, hours, zones, now), "h") == (0, 0, 48 * 3600, 0, 8 * 3600, 8 * 3600)


def test_a_store_open_24x7_is_closed_on_its_closed_date_only():
    # No weekly rows, Asia/Kolkata (UTC+05:30), closed on 2023-01-23 local: UTC Jan 22 18:30 to
    # Jan 23 18:30. Polls: Jan 20 00:00 UTC inactive (counted), Jan 23 12:00 UTC inactive (local
    # 17:30 on the closed date: not counted), Jan 23 20:00 UTC active (local Jan 24 01:30: counted).
    polls = polls_df(
        [("k", U(2023, 1, 20), "inactive"), ("k", U(2023, 1, 23, 12), "inactive"), ("k", U(2023, 1, 23, 20), "active")]
    )
    special = special_df([("k", "2023-01-23", "", "")])
    rep = brute_force_report(polls, hours_df([]), tz_df([("k", "Asia/Kolkata")]), U(2023, 1, 24), special=special)
    # The counted polls' midpoint: Jan 21 22:00 UTC.
    # hour: Jan 23 23:00-24:00 UTC, open, up.  day: Jan 23 18:30-24:00 UTC, 5.5 h, up.
    # week: Jan 17 00:00 - Jan 24 00:00 less the closed 24 h = 144 h; down Jan 17 00:00 - Jan 21
    # 22:00 (118 h), up Jan 21 22:00 - Jan 22 18:30 (20.5 h) and Jan 23 18:30 - 24:00 (5.5 h).
    assert figures(rep, "k") == (3600, 5.5 * 3600, 26 * 3600, 0, 0, 118 * 3600)


def test_a_store_open_24x7_opens_on_its_special_date_only_as_the_special_rows_say():
    # No weekly rows, UTC; on Monday 23rd open 10:00-12:00 and 11:00-13:00 (united: 10:00-13:00).
    polls = polls_df([("a", U(2023, 1, 23, 11), "active")])
    special = special_df([("a", "2023-01-23", "10:00", "12:00"), ("a", "2023-01-23", "11:00:00", "13:00:00")])
    business = business_time(polls, hours_df([]), tz_df([("a", "UTC")]), U(2023, 1, 24), special=special).iloc[0]
    # day = Monday 23rd: 3 h. week: Tue 17th ... Sun 22nd open all day (6 x 24 h) and the 3 h.
    assert (business.business_hour, business.business_day, business.business_week) == (0, 3 * 3600, 147 * 3600)
    rep = brute_force_report(polls, hours_df([]), tz_df([("a", "UTC")]), U(2023, 1, 24), special=special)
    assert figures(rep, "a") == (0, 3 * 3600, 147 * 3600, 0, 0, 0)


def test_a_special_overnight_interval_on_a_saturday_runs_into_sunday():
    # Weekly Saturday 09:00-17:00 (UTC); Saturday 28th is special, 22:00-02:00. The Saturday noon
    # poll is in the replaced weekly hours and does not count; Sat 23:00 and Sun 01:00 do.
    polls = polls_df(
        [
            ("o", U(2023, 1, 28, 12), "inactive"),
            ("o", U(2023, 1, 28, 23), "active"),
            ("o", U(2023, 1, 29, 1), "inactive"),
        ]
    )
    hours = hours_df([("o", 5, "09:00", "17:00")])
    special = special_df([("o", "2023-01-28", "22:00", "02:00")])
    rep = brute_force_report(polls, hours, tz_df([("o", "UTC")]), U(2023, 1, 30), special=special)
    # Midpoint of 23:00 and 01:00: Sunday 00:00 (a tie there goes to the later, inactive, poll).
    # hour: Sun 23:00-24:00 closed. day = Sunday: 00:00-02:00 down. week: Sat 22:00-24:00 up too.
    assert figures(rep, "o") == (0, 0, 2 * 3600, 0, 2 * 3600, 2 * 3600)
    assert len(counted_polls(polls, hours, tz_df([("o", "UTC")]), U(2023, 1, 30), special=special)) == 2


def test_a_weekly_friday_night_runs_into_a_closed_saturday_until_two():
    # Weekly Friday 22:00-02:00 and Saturday 09:00-17:00 (UTC); Saturday 28th is closed. Friday's
    # interval starts on Friday, so it still runs to Saturday 02:00: the Sat 01:30 poll counts,
    # the Sat 12:00 one does not.
    polls = polls_df(
        [
            ("f", U(2023, 1, 27, 23), "active"),
            ("f", U(2023, 1, 28, 1, 30), "inactive"),
            ("f", U(2023, 1, 28, 12), "active"),
        ]
    )
    hours = hours_df([("f", 4, "22:00", "02:00"), ("f", 5, "09:00", "17:00")])
    special = special_df([("f", "2023-01-28", "", "")])
    rep = brute_force_report(polls, hours, tz_df([("f", "UTC")]), U(2023, 1, 29), special=special)
    # Midpoint of Fri 23:00 and Sat 01:30: Sat 00:15. hour: Sat 23:00-24:00 closed.
    # day = Saturday: 00:00-00:15 up (900 s), 00:15-02:00 down (6300 s).
    # week: Fri 22:00-00:15 up (8100 s), 00:15-02:00 down.
    assert figures(rep, "f") == (0, 900, 8100, 0, 6300, 6300)


@pytest.mark.parametrize(
    "start, end, poll, expected",
    [
        ("09:00", "17:00", U(2023, 3, 12, 17), 8 * 3600),  # 13:00 EDT; 09:00 EDT-17:00 EDT
        ("00:00", "05:00", U(2023, 3, 12, 7, 30), 4 * 3600),  # 03:30 EDT; 00:00 EST-05:00 EDT
    ],
    ids=["09-17 is 8 h", "00-05 is 4 h"],
)
def test_a_special_date_on_the_spring_change_in_new_york_lasts_its_real_time(start, end, poll, expected):
    # Sunday 2023-03-12, clocks go forward at 02:00. Weekly Sunday 10:00-11:00 is replaced that day;
    # the week to Tue 14th 00:00 UTC holds no other Sunday (Mar 5, 15:00 UTC, is before it).
    polls = polls_df([("ny", poll, "active")])
    hours = hours_df([("ny", 6, "10:00", "11:00")])
    special = special_df([("ny", "2023-03-12", start, end)])
    zones, now = tz_df([("ny", "America/New_York")]), U(2023, 3, 14)
    rep = brute_force_report(polls, hours, zones, now, special=special)
    assert figures(rep, "ny") == (0, 0, expected, 0, 0, 0)
    assert business_time(polls, hours, zones, now, special=special).iloc[0].business_week == expected


@pytest.mark.parametrize(
    "start, end, expected_hours",
    [("09:00", "09:00", 24), ("18:00", "23:59:59", 6), ("18:00", "24:00:00", 6), ("22:00", "02:00", 4)],
    ids=["end equal to start is 24 h", "23:59:59 ends the day", "24:00:00 ends the day", "overnight"],
)
def test_special_rows_follow_the_end_rules_of_weekly_rows(start, end, expected_hours):
    # Weekly Monday 12:00-13:00 (UTC), replaced on Monday 23rd; the week to Wed 25th 00:00 holds no
    # other Monday and nothing else.
    polls = polls_df([("e", U(2023, 1, 23, 20), "active")])
    special = special_df([("e", "2023-01-23", start, end)])
    hours, zones = hours_df([("e", 0, "12:00", "13:00")]), tz_df([("e", "UTC")])
    business = business_time(polls, hours, zones, U(2023, 1, 25), special=special).iloc[0]
    assert business.business_week == expected_hours * 3600


# --- report periods -------------------------------------------------------------------------------


def test_periods_add_their_figures_in_seconds_and_in_hours_in_the_csv():
    # Open 09:00-17:00 UTC every day, closed Friday 20th; now = Tue 31st 10:00. Counted polls:
    # Jan 15 12:00 inactive, Jan 31 09:30 active; their midpoint is 190.75 h after the first: Jan 23 10:45.
    polls = polls_df([("p", U(2023, 1, 15, 12), "inactive"), ("p", U(2023, 1, 31, 9, 30), "active")])
    hours = hours_df([("p", *row) for row in EVERY_DAY_9_TO_17])
    special = special_df([("p", "2023-01-20", "", "")])
    rep = brute_force_report(
        polls, hours, tz_df([("p", "UTC")]), U(2023, 1, 31, 10), special=special, periods=("2h", "30d")
    )
    assert list(rep.columns[7:]) == ["uptime_last_2h", "downtime_last_2h", "uptime_last_30d", "downtime_last_30d"]
    r = row_of(rep, "p")
    # 2h = Jan 31 08:00-10:00: 09:00-10:00 is business time, up.
    assert (r["uptime_last_2h"], r["downtime_last_2h"]) == (3600, 0)
    # 30d = Jan 1 10:00 - Jan 31 10:00. Down: Jan 1 10:00-17:00 (7 h), Jan 2 ... 22 but the 20th
    # (20 x 8 h), Jan 23 09:00-10:45 (1.75 h) = 168.75 h. Up: Jan 23 10:45-17:00 (6.25 h),
    # Jan 24 ... 30 (7 x 8 h), Jan 31 09:00-10:00 (1 h) = 63.25 h.
    assert (r["uptime_last_30d"], r["downtime_last_30d"]) == (63.25 * 3600, 168.75 * 3600)
    # hour 09:00-10:00 up; day: Jan 30 10:00-17:00 and Jan 31 09:00-10:00 (8 h) up; week: Jan 24
    # 10:00-17:00, Jan 25 ... 30, Jan 31 09:00-10:00 (7 + 48 + 1 = 56 h) up.
    assert figures(rep, "p") == (3600, 8 * 3600, 56 * 3600, 0, 0, 0)
    assert report_csv(rep).splitlines() == [
        "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,downtime_last_hour,downtime_last_day,"
        "downtime_last_week,uptime_last_2h,downtime_last_2h,uptime_last_30d,downtime_last_30d",
        "p,60.00,8.00,56.00,0.00,0.00,0.00,1.00,0.00,63.25,168.75",
    ]


def test_periods_come_in_the_order_given_after_the_standard_seven():
    polls = polls_df([("s", U(2023, 1, 23, 10), "active")])
    rep = brute_force_report(polls, hours_df([]), tz_df([]), U(2023, 1, 23, 12), periods=("30d", "1h", "92d"))
    assert list(rep.columns) == [
        "store_id",
        "uptime_last_hour",
        "uptime_last_day",
        "uptime_last_week",
        "downtime_last_hour",
        "downtime_last_day",
        "downtime_last_week",
        "uptime_last_30d",
        "downtime_last_30d",
        "uptime_last_1h",
        "downtime_last_1h",
        "uptime_last_92d",
        "downtime_last_92d",
    ]
    # Open 24x7, one active poll: every window is all up.
    assert row_of(rep, "s")[7:].tolist() == [30 * 86400, 0, 3600, 0, 92 * 86400, 0]
