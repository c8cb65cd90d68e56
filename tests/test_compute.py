"""The report arithmetic (docs/report-rules.md), rule by rule, and against an independent brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_report, business_time
from helpers import frames, random_stores

from storemon.compute import REPORT_COLUMNS, localize, report_from_frames
from storemon.times import KNOWN_TIMEZONES

HOUR, DAY, WEEK = 3600, 86400, 7 * 86400


def seconds_row(polls=(), hours=(), zones=(), now=None, store="s"):
    """The report row of one store, in exact seconds: (up_h, up_d, up_w, down_h, down_d, down_w)."""
    report = report_from_frames(*frames(polls, hours, zones), now=now, exact_seconds=True)
    row = report.set_index("store_id").loc[store]
    return tuple(float(v) for v in row[REPORT_COLUMNS[1:]])


# --- the worked example of docs/report-rules.md ----------------------------------------------


def test_worked_example():
    # Monday 2023-01-23, open 09:00-12:00 (zone UTC), polls 10:14 active and 11:15 inactive.
    polls = [("s", "active", "2023-01-23 10:14:00"), ("s", "inactive", "2023-01-23 11:15:00")]
    hours = [("s", 0, "09:00", "12:00")]
    report = report_from_frames(*frames(polls, hours, [("s", "UTC")]), now="2023-01-23 12:00:00Z")
    assert list(report.columns) == REPORT_COLUMNS
    assert report.iloc[0].tolist() == ["s", 0.0, 1.74, 1.74, 60.0, 1.26, 1.26]
    # Exactly: 1 h 44.5 min up, 1 h 15.5 min down; the last hour (11:00-12:00) all down.
    exact = seconds_row(polls, hours, [("s", "UTC")], now="2023-01-23 12:00:00Z")
    assert exact == (0, 6270, 6270, 3600, 4530, 4530)


# --- windows and now -------------------------------------------------------------------------


def test_now_is_the_latest_poll_and_as_of_ignores_later_polls():
    polls = [("s", "active", "2023-01-23 10:00:00"), ("s", "inactive", "2023-01-23 10:30:00")]
    # No hours: open 24x7. now = 10:30; up from -inf to the midpoint 10:15, down after it.
    up_h, up_d, up_w, down_h, down_d, down_w = seconds_row(polls)
    assert (up_h, down_h) == (2700, 900)
    assert (up_d, down_d) == (DAY - 900, 900)
    assert (up_w, down_w) == (WEEK - 900, 900)
    # as_of before the inactive poll: it is ignored, the store is up throughout.
    assert seconds_row(polls, now="2023-01-23 10:20:00Z") == (HOUR, DAY, WEEK, 0, 0, 0)


def test_windows_are_half_open_and_end_at_now():
    # Lengths are exact to the half microsecond, so the ends of the windows show: the hour is
    # [09:00, 10:00), which holds the instant 09:00 (now - 1 h) and not 10:00 (now).
    polls = [
        ("s", "active", "2023-01-23 08:59:59.999998"),
        ("s", "inactive", "2023-01-23 09:00:00.000000"),  # exactly now - 1 h
        ("s", "active", "2023-01-23 09:00:00.000002"),
        ("s", "inactive", "2023-01-23 10:00:00.000000"),  # exactly now: at or before now, so it counts
        ("s", "active", "2023-01-23 10:00:00.000001"),  # after now: ignored
    ]
    up_h, up_d, up_w, down_h, down_d, down_w = seconds_row(polls, now="2023-01-23 10:00:00Z")
    # Midpoints: 08:59:59.999999, 09:00:00.000001, and 09:30:00.000001 (between the third poll
    # and the one at now). Inside [09:00, 10:00): down 09:00-09:00:00.000001 (1 us, the poll at
    # now - 1 h), up until 09:30:00.000001 (1800 s), down until 10:00 (1800 s - 1 us).
    # A window closed at now would hold 0.5 us more of the last poll's status (down), one open
    # at now - 1 h 0.5 us less of the second poll's (down); without the poll at now, the last
    # half hour would be up.
    assert (up_h, down_h) == (1800, 1800)
    # The day adds 09:00 on the 22nd to 08:59:59.999999 up (23 h - 1 us) and the first
    # microsecond of the second poll's 2 us down.
    assert (up_d, down_d) == ((23 * HOUR * 10**6 - 1 + 1800 * 10**6) / 10**6, (1800 * 10**6 + 1) / 10**6)
    assert (up_w, down_w) == (up_d + 6 * DAY, down_d)
    # Open 24x7, single active poll exactly at now: it speaks for everything.
    assert seconds_row([("s", "active", "2023-01-23 10:00:00")]) == (HOUR, DAY, WEEK, 0, 0, 0)


def test_stores_listed_only_with_a_poll_at_or_before_now_sorted_by_id():
    polls = [
        ("b", "active", "2023-01-23 10:00:00"),
        ("007", "inactive", "2023-01-23 09:00:00"),
        ("a", "active", "2023-01-23 11:00:00"),  # after now: not listed
        ("10", "active", "2023-01-20 11:00:00"),
    ]
    report = report_from_frames(*frames(polls), now="2023-01-23 10:00:00Z")
    assert report["store_id"].tolist() == ["007", "10", "b"]


# --- business hours --------------------------------------------------------------------------


MONDAY_NOON = "2023-01-23 12:00:00Z"  # a Monday; the week window starts Monday 2023-01-16 12:00


def week_business(hours, zone="UTC", now=MONDAY_NOON):
    """Business seconds per window, measured with a counted poll at now (always up)."""
    polls = [("s", "active", str(pd.Timestamp(now).tz_convert(None)))]
    # The poll at `now` must be inside business hours to count; callers make sure it is.
    return seconds_row(polls, hours, [("s", zone)], now=now)[:3]


def test_no_hours_rows_means_open_24x7():
    assert week_business([]) == (HOUR, DAY, WEEK)


def test_days_without_rows_are_closed_and_rows_on_one_day_unite():
    now = "2023-01-23 11:00:00Z"  # Monday 11:00, inside the Monday rows
    hours = [("s", 0, "09:00", "12:00"), ("s", 0, "10:00", "14:00"), ("s", 0, "13:00", "13:30")]
    # Monday of the previous week (16th): 09:00-14:00 = 5 h, but the window starts at 11:00 -> 3 h.
    # This Monday: 09:00-11:00 = 2 h. No other day is open.
    assert week_business(hours, now=now) == (HOUR, 2 * HOUR, 5 * HOUR)


def test_overnight_rows_run_past_midnight():
    now = "2023-01-24 01:00:00Z"  # Tuesday 01:00, inside Monday's 22:00-02:00
    hours = [("s", 0, "22:00", "02:00")]
    # Day window Mon 01:00 - Tue 01:00: Mon 22:00 - Tue 01:00 = 3 h. The week window starts
    # Tue 17th 01:00, one hour before the previous Monday night ends (02:00): 3 h + 1 h.
    assert week_business(hours, now=now) == (HOUR, 3 * HOUR, 4 * HOUR)


def test_end_equal_to_start_is_open_24_hours():
    now = "2023-01-23 12:00:00Z"
    hours = [("s", 0, "10:00", "10:00")]  # Monday 10:00 to Tuesday 10:00
    # Week window Mon 16th 12:00 - Mon 23rd 12:00: (16th 12:00 - 17th 10:00) 22 h + (23rd 10-12) 2 h.
    assert week_business(hours, now=now) == (HOUR, 2 * HOUR, 24 * HOUR)


@pytest.mark.parametrize("end", ["23:59:59", "24:00:00", "23:59", "00:00"])
def test_end_of_day_spellings(end):
    now = "2023-01-24 00:00:00Z"  # Tuesday midnight, the end of Monday
    hours = [("s", 0, "00:00", end), ("s", 1, "00:00", "01:00")]
    expected_day = DAY - 60 if end == "23:59" else DAY  # 23:59 is just a minute early
    polls = [("s", "active", "2023-01-23 12:00:00")]
    up = seconds_row(polls, hours, [("s", "UTC")], now=now)
    assert up[1] == expected_day and up[4] == 0


def test_missing_and_unknown_zones_default_to_chicago():
    now = "2023-01-23 20:00:00Z"  # 14:00 in Chicago (UTC-6)
    hours = [("s", 0, "09:00", "17:00")]
    polls = [("s", "active", "2023-01-23 19:00:00")]
    chicago = seconds_row(polls, hours, [("s", "America/Chicago")], now=now)
    assert chicago[1] == 5 * HOUR  # 09:00-14:00 local today
    assert seconds_row(polls, hours, [], now=now) == chicago
    assert seconds_row(polls, hours, [("s", "Mars/Olympus_Mons")], now=now) == chicago
    assert seconds_row(polls, hours, [("s", "UTC")], now=now) != chicago


# --- interpolation ---------------------------------------------------------------------------


def test_polls_outside_business_hours_do_not_count():
    hours = [("s", 0, "09:00", "12:00")]
    polls = [
        ("s", "inactive", "2023-01-23 08:59:59"),  # before opening: ignored
        ("s", "active", "2023-01-23 10:00:00"),
        ("s", "inactive", "2023-01-23 12:00:00"),  # at closing (end is exclusive): ignored
    ]
    assert seconds_row(polls, hours, [("s", "UTC")], now=MONDAY_NOON)[1:6:3] == (3 * HOUR, 0)


def test_a_store_with_no_counted_poll_gets_zeros():
    hours = [("s", 0, "09:00", "12:00")]
    polls = [("s", "active", "2023-01-23 08:00:00")]
    assert seconds_row(polls, hours, [("s", "UTC")], now=MONDAY_NOON) == (0, 0, 0, 0, 0, 0)


def test_the_nearest_counted_poll_may_be_long_before_the_window():
    hours = [("s", 0, "09:00", "12:00")]
    polls = [
        ("s", "inactive", "2022-12-05 10:00:00"),  # a Monday, seven weeks back, counted
        ("s", "active", "2023-01-22 10:00:00"),  # Sunday: closed, not counted
    ]
    # Both Mondays in the week window (16th from 12:00: nothing; 23rd 09-12) are down.
    assert seconds_row(polls, hours, [("s", "UTC")], now=MONDAY_NOON) == (0, 0, 0, HOUR, 3 * HOUR, 3 * HOUR)


def test_at_an_exact_midpoint_the_later_poll_speaks():
    # Two polls 1 us apart: the midpoint is 10:00:00.0000005. The engine counts time in half
    # microseconds (docs/report-rules.md, "Exactness"): [10:00:00, 10:00:00.0000005) is nearer
    # the active poll, [10:00:00.0000005, 10:00:00.000001) starts at the midpoint -- equally near
    # both -- and the later poll (inactive) speaks for it: 0.5 us down. Were the earlier poll
    # to speak at the midpoint, that half microsecond would be up and the store never down.
    polls = [("s", "active", "2023-01-23 10:00:00.000000"), ("s", "inactive", "2023-01-23 10:00:00.000001")]
    up_h, up_d, up_w, down_h, down_d, down_w = seconds_row(polls, now="2023-01-23 10:00:00.000001Z")
    assert (down_h, down_d, down_w) == (0.5e-6, 0.5e-6, 0.5e-6)
    assert (up_h, up_d, up_w) == (
        (2 * HOUR * 10**6 - 1) / (2 * 10**6),
        (2 * DAY * 10**6 - 1) / (2 * 10**6),
        (2 * WEEK * 10**6 - 1) / (2 * 10**6),
    )
    # Polls on whole seconds, 2 s apart: the brute force (one sample a second) gives the sample
    # at the midpoint, 10:00:01, to the later poll; the engine agrees.
    polls = [("s", "active", "2023-01-23 10:00:00"), ("s", "inactive", "2023-01-23 10:00:02")]
    engine = seconds_row(polls, now="2023-01-23 10:00:02Z")
    brute = brute_force_report(*frames(polls), now=pd.Timestamp("2023-01-23 10:00:02Z")).iloc[0]
    assert engine == tuple(float(brute[c]) for c in REPORT_COLUMNS[1:]) == (HOUR - 1, DAY - 1, WEEK - 1, 1, 1, 1)


def test_rounding_to_two_decimals_in_minutes_and_hours():
    polls = [("s", "active", "2023-01-23 10:00:00"), ("s", "inactive", "2023-01-23 10:20:10")]
    report = report_from_frames(*frames(polls), now="2023-01-23 10:20:10Z")
    # Up until 10:10:05 -> last hour (09:20:10-10:20:10): 49 min 55 s = 49.92 min up.
    row = report.iloc[0]
    assert (row.uptime_last_hour, row.downtime_last_hour) == (49.92, 10.08)
    assert (row.uptime_last_day, row.downtime_last_day) == (23.83, 0.17)


# --- DST -------------------------------------------------------------------------------------


def test_localize_follows_the_spec_at_dst_edges():
    def utc(wall, zone):
        us = pd.Timestamp(wall).value // 1000
        return pd.Timestamp(int(localize(np.array([us]), zone)[0]), unit="us", tz="UTC")

    # Spring gap: 02:30 does not exist in New York -> 03:00 EDT = 07:00 UTC.
    assert utc("2023-03-12 02:30", "America/New_York") == pd.Timestamp("2023-03-12 07:00Z")
    # Autumn: 01:30 happens twice -> the first (EDT, UTC-4).
    assert utc("2023-11-05 01:30", "America/New_York") == pd.Timestamp("2023-11-05 05:30Z")
    # Where pandas' shift_forward misses the transition instant, we do not: Anchorage jumps
    # from 02:00 AKST to 03:00 AKDT at 11:00 UTC.
    assert utc("2023-03-12 02:30", "America/Anchorage") == pd.Timestamp("2023-03-12 11:00Z")
    # Lord Howe's half-hour shift: 02:00 -> 02:30 at 2023-09-30 15:30 UTC.
    assert utc("2023-10-01 02:10", "Australia/Lord_Howe") == pd.Timestamp("2023-09-30 15:30Z")


def test_localize_is_pandas_own_conversion_in_every_zone_to_the_microsecond():
    """Every known zone, 2022-2024: random wall times and those within a microsecond, a minute
    and two hours of each clock change. A wall time that exists converts as pandas'
    ``tz_localize(ambiguous=True)`` does; one in a spring gap becomes the first instant whose
    wall clock reads at or after it."""
    rng = np.random.default_rng(7)
    lo, hi = pd.Timestamp("2022-01-01").value // 1000, pd.Timestamp("2025-01-01").value // 1000
    quarters = np.arange(lo, hi, 15 * 60_000_000)  # clocks change on a quarter hour UTC
    for zone in sorted(KNOWN_TIMEZONES):
        walls = wall_clock(quarters, zone)
        offsets = walls - quarters
        changes = np.flatnonzero(offsets[1:] != offsets[:-1]) + 1
        edges = np.concatenate([walls[changes] + offsets[changes - 1] - offsets[changes], walls[changes]])
        near = [edges[:, None] + np.array([-1, 0, 1, -60_000_000, 60_000_000, -7_200_000_000, 7_200_000_000])]
        wall = np.concatenate([rng.integers(lo, hi, 300), *(n.ravel() for n in near)])
        got = localize(wall, zone)
        index = pd.DatetimeIndex(wall.astype("datetime64[us]"))
        expected = index.tz_localize(zone, ambiguous=np.ones(len(wall), bool), nonexistent="NaT")
        exists = ~np.asarray(expected.isna())
        assert np.array_equal(got[exists], expected[exists].as_unit("us").asi8), zone
        gap = ~exists
        assert np.all(wall_clock(got[gap], zone) >= wall[gap]), zone
        assert np.all(wall_clock(got[gap] - 1, zone) < wall[gap]), zone


def wall_clock(utc_us: np.ndarray, zone: str) -> np.ndarray:
    """UTC microseconds -> the zone's wall clock (microseconds, as if UTC), by pandas."""
    index = pd.DatetimeIndex(utc_us.astype("datetime64[us]")).tz_localize("UTC").tz_convert(zone)
    return index.tz_localize(None).as_unit("us").asi8


@pytest.mark.parametrize(
    "zone,spring,autumn",
    [
        ("America/New_York", "2023-03-12", "2023-11-05"),
        ("Europe/London", "2023-03-26", "2023-10-29"),
        ("Australia/Adelaide", "2023-10-01", "2023-04-02"),  # +9:30 / +10:30
    ],
)
def test_business_hours_follow_dst(zone, spring, autumn):
    for date in (spring, autumn):
        weekday = pd.Timestamp(date).day_of_week
        nine_to_five = [("s", weekday, "09:00", "17:00")]
        # An always-up store, asked at 18:00 local that day: 8 h open, in real time too.
        now = pd.Timestamp(f"{date} 18:00").tz_localize(zone).tz_convert("UTC")
        poll = [("s", "active", str((now - pd.Timedelta(hours=2)).tz_localize(None)))]
        assert seconds_row(poll, nine_to_five, [("s", zone)], now=now)[1] == 8 * HOUR
        # Midnight to 05:00 holds the change: 4 h of real time in spring, 6 h in autumn.
        early = [("s", weekday, "00:00", "05:00")]
        now = pd.Timestamp(f"{date} 06:00").tz_localize(zone).tz_convert("UTC")
        poll = [("s", "active", str((now - pd.Timedelta(hours=2)).tz_localize(None)))]
        got = seconds_row(poll, early, [("s", zone)], now=now)[1]
        assert got == (4 * HOUR if date == spring else 6 * HOUR)


# --- against the brute force -----------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,now",
    [
        (1, "2023-01-25 18:13:20Z"),
        (2, "2023-03-13 05:00:00Z"),  # the week holds the US spring change
        (3, "2023-11-06 09:30:00Z"),  # the US autumn change
        (4, "2023-10-02 03:00:00Z"),  # Adelaide / Lord Howe spring
        (5, "2023-03-27 12:00:00Z"),  # Europe spring
    ],
)
def test_engine_agrees_with_brute_force(seed, now):
    rng = np.random.default_rng(seed)
    polls, hours, zones = random_stores(rng, 30, now)
    polls = polls.drop_duplicates(["store_id", "timestamp_utc"], keep="last")
    engine = report_from_frames(polls, hours, zones, now=now, exact_seconds=True)
    brute = brute_force_report(polls, hours, zones, pd.Timestamp(now).to_pydatetime())
    assert engine["store_id"].tolist() == brute["store_id"].tolist()
    for column in REPORT_COLUMNS[1:]:
        mismatch = engine[column].to_numpy() != brute[column].to_numpy().astype(float)
        assert not mismatch.any(), (column, engine[mismatch]["store_id"].tolist())


def test_uptime_plus_downtime_is_the_business_time():
    """Every store: with a counted poll, up + down is its business time in each window; with
    none, every figure is 0. Business time and counted polls come from the brute force."""
    rng = np.random.default_rng(7)
    now = "2023-03-13 05:00:00Z"
    polls, hours, zones = random_stores(rng, 40, now)
    report = report_from_frames(polls, hours, zones, now=now, exact_seconds=True).set_index("store_id")
    business = business_time(polls, hours, zones, pd.Timestamp(now).to_pydatetime()).set_index("store_id")
    assert list(report.index) == list(business.index)
    for sid, row in report.iterrows():
        total = business.loc[sid]
        for window in ("hour", "day", "week"):
            expected = total[f"business_{window}"] if total.counted_polls else 0
            assert (row[f"uptime_last_{window}"] + row[f"downtime_last_{window}"], sid) == (expected, sid)
        if not total.counted_polls:
            assert (row == 0).all(), sid
    # Both kinds occur, and stores with business time in each window.
    assert (business.counted_polls == 0).sum() >= 2 and (business.counted_polls > 0).sum() >= 20
    assert ((business.counted_polls > 0) & (business.business_hour > 0)).sum() >= 5
