"""Special days and report periods (issue 19): the engine against the independent brute force
(tests/bruteforce.py), to the second, and the worked example of docs/report-rules.md with a
special day, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_report, report_csv
from helpers import frames, wait_for

from storemon.compute import REPORT_COLUMNS, report_from_frames, report_windows
from storemon.ingest import ingest_files, remove_special_date
from storemon.reports import build_report, write_csv
from storemon.snapshot import ReportCache
from storemon.times import to_us

DAY_S = 86_400
PERIODS = ("2h", "30d", "92d")
WINDOWS_S = [3600, DAY_S, 7 * DAY_S, 2 * 3600, 30 * DAY_S, 92 * DAY_S]  # hour, day, week, then PERIODS
ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]
CHANGES = {  # the local dates of 2023's clock changes: spring, autumn
    "America/New_York": ["2023-03-12", "2023-11-05"],
    "Europe/Berlin": ["2023-03-26", "2023-10-29"],
    "Australia/Sydney": ["2023-10-01", "2023-04-02"],
    "Asia/Kolkata": [],
}
# Wall times around the changes (02:00-03:00 is missing or doubled in all three zones that change;
# 01:30 is doubled in New York) and the end-of-day spellings.
STARTS = ["00:00", "01:30", "02:00", "02:30", "03:00", "09:00", "11:15", "17:00", "22:00"]
ENDS = STARTS + ["23:59:59", "24:00:00"]


def special_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["store_id", "date", "start_time_local", "end_time_local"])


def local_date(instant_s: int, zone: str) -> pd.Timestamp:
    return pd.Timestamp(instant_s, unit="s", tz="UTC").tz_convert(zone).normalize().tz_localize(None)


def random_special_stores(rng, now: str, n: int = 6):
    """``n`` stores over the 92 days before ``now``, the zones in turn: store 000 is open 24x7 with
    closed dates, store 001 has overnight specials only, the others random weekly rows (24x7 now
    and then) and random specials, closed or one or two rows a date. Every store has special dates
    on its zone's clock changes near ``now``, on the last day of the windows (when ``now`` falls),
    on the first day of one window (store i: the i-th of hour, day, week, 2h, 30d, 92d), and at
    random."""
    now_s = pd.Timestamp(now).value // 10**9
    polls, hours, zones, special = [], [], [], []
    for i in range(n):
        sid, zone = f"{i:03d}", ZONES[(i + int(rng.integers(4))) % 4]
        zones.append((sid, zone))
        if i != 0 and (i == 1 or rng.random() < 0.8):  # otherwise no rows: open 24x7
            for day in range(7):
                for _ in range(rng.integers(0, 3)):
                    start = STARTS[rng.integers(len(STARTS))]
                    end = ENDS[rng.integers(len(ENDS))] if rng.random() < 0.7 else start
                    hours.append((sid, day, start, end))
        dates = {local_date(now_s - WINDOWS_S[i % len(WINDOWS_S)], zone), local_date(now_s - 1, zone)}
        dates |= {
            pd.Timestamp(d) for d in CHANGES[zone] if -2 <= (local_date(now_s, zone) - pd.Timestamp(d)).days <= 93
        }
        dates |= {local_date(now_s - int(rng.integers(0, 93 * DAY_S)), zone) for _ in range(rng.integers(0, 5))}
        for d in sorted(dates):
            day = d.strftime("%Y-%m-%d")
            if i == 0 or (i > 1 and rng.random() < 0.35):
                special.append((sid, day, "", ""))  # closed
            elif i == 1:
                start = STARTS[rng.integers(5, len(STARTS))]  # 09:00 and later
                special.append((sid, day, start, STARTS[rng.integers(0, 5)]))  # ends before: overnight
            else:
                for _ in range(rng.integers(1, 3)):
                    start = (
                        f"{rng.integers(24):02d}:{rng.integers(60):02d}"
                        if rng.random() < 0.2
                        else STARTS[rng.integers(len(STARTS))]
                    )
                    end = ENDS[rng.integers(len(ENDS))] if rng.random() < 0.8 else start
                    special.append((sid, day, start, end))
        count = int(rng.choice([1, 3, 30, 300]))
        span = int(rng.choice([2, 35, 100])) * DAY_S  # 100 days: polls before the longest window too
        instants = now_s - rng.integers(-DAY_S // 2, span, size=count)  # some after now
        instants[0] = now_s - rng.integers(0, span)  # one at or before now: every store has a row
        instants -= instants % 2  # even seconds: midpoints fall on whole seconds
        status = np.where(rng.random(count) < 0.7, "active", "inactive")
        polls.extend((sid, s, pd.Timestamp(int(t), unit="s")) for t, s in zip(instants, status))
    return (*frames(polls, hours, zones), special_frame(special))


# now on a whole second, with the clock changes of the four zones inside the windows:
CASES = [
    (1, "2023-03-13 05:00:00Z"),  # New York spring the day before
    (2, "2023-03-27 12:00:00Z"),  # Berlin spring the day before, New York spring in the 30 days
    (3, "2023-04-03 02:00:00Z"),  # Sydney autumn the day before, both northern springs in the 30 days
    (4, "2023-10-02 03:00:00Z"),  # Sydney spring the day before
    (5, "2023-10-30 06:00:00Z"),  # Berlin autumn the day before, Sydney spring in the 30 days
    (6, "2023-11-06 09:30:00Z"),  # New York autumn the day before, Berlin autumn in the 30 days
]


@pytest.mark.parametrize("seed, now", CASES, ids=[now[:10] for _, now in CASES])
def test_engine_agrees_with_the_brute_force_on_special_dates_and_periods_to_the_second(seed, now):
    polls, hours, zones, special = random_special_stores(np.random.default_rng(seed), now)
    engine = report_from_frames(polls, hours, zones, now=now, exact_seconds=True, special=special, periods=PERIODS)
    brute = brute_force_report(polls, hours, zones, pd.Timestamp(now), special=special, periods=PERIODS)
    assert (
        list(engine.columns)
        == list(brute.columns)
        == REPORT_COLUMNS + [f"{kind}_last_{p}" for p in PERIODS for kind in ("uptime", "downtime")]
    )
    assert engine["store_id"].tolist() == brute["store_id"].tolist()
    assert (brute[brute.columns[1:]].sum(axis=1) > 0).sum() >= 3  # stores with business time and a counted poll
    for column in brute.columns[1:]:
        off = np.abs(engine[column].to_numpy(float) - brute[column].to_numpy(float)) > 1e-6
        assert not off.any(), (
            column,
            engine["store_id"][off].tolist(),
            engine[column][off].tolist(),
            brute[column][off].tolist(),
        )


@pytest.mark.parametrize("seed, now", CASES, ids=[now[:10] for _, now in CASES])
def test_random_stores_hold_what_the_comparison_is_about(seed, now):
    """The stores of the comparison: a 24x7 store with closed dates, overnight specials, special
    dates on clock changes and on the first and last day of every window."""
    polls, hours, zones, special = random_special_stores(np.random.default_rng(seed), now)
    assert (
        "000" not in set(hours["store_id"]) and (special[special["store_id"] == "000"]["start_time_local"] == "").all()
    )
    overnight = special[special["store_id"] == "001"]
    assert len(overnight) and (overnight["end_time_local"] < overnight["start_time_local"]).all()
    changes = {d for zone in ZONES for d in CHANGES[zone]}
    assert special["date"].isin(changes).any()
    zone_of = dict(zones.itertuples(index=False))
    now_s = pd.Timestamp(now).value // 10**9
    for i, window_s in enumerate(WINDOWS_S):  # store i: the first day of window i, and the last day
        sid = f"{i:03d}"
        first, last = (local_date(now_s - back, zone_of[sid]).strftime("%Y-%m-%d") for back in (window_s, 1))
        assert {first, last} <= set(special[special["store_id"] == sid]["date"]), sid


# --- the worked example of docs/report-rules.md, with a special day -------------------------------
# Open Monday 09:00-12:00 (zone UTC); polls on Monday 2023-01-23 at 10:14 (active) and 11:15
# (inactive); now = Monday 12:00.
EXAMPLE = frames(
    [("007", "active", "2023-01-23 10:14:00"), ("007", "inactive", "2023-01-23 11:15:00")],
    [("007", 0, "09:00", "12:00")],
    [("007", "UTC")],
)
EXAMPLE_NOW = "2023-01-23 12:00:00Z"


def both_reports(special=None, periods=()):
    """The example's row from the engine (in seconds and rounded) and from the brute force (in
    seconds and as CSV)."""
    engine_s = report_from_frames(*EXAMPLE, now=EXAMPLE_NOW, exact_seconds=True, special=special, periods=periods)
    engine = report_from_frames(*EXAMPLE, now=EXAMPLE_NOW, special=special, periods=periods)
    brute = brute_force_report(*EXAMPLE, pd.Timestamp(EXAMPLE_NOW), special=special, periods=periods)
    return engine_s.iloc[0].tolist(), engine.iloc[0].tolist(), brute.iloc[0].tolist(), report_csv(brute)


def test_worked_example_with_a_two_hour_period():
    # As documented: up 09:00-10:44:30 (6270 s), down 10:44:30-12:00 (4530 s); the last hour all
    # down. The last 2 hours, 10:00-12:00: up 10:00-10:44:30 (2670 s = 0.74 h), down 4530 s (1.26 h).
    engine_s, engine, brute, csv = both_reports(periods=("2h",))
    assert engine_s == brute == ["007", 0, 6270, 6270, 3600, 4530, 4530, 2670, 4530]
    assert engine == ["007", 0.0, 1.74, 1.74, 60.0, 1.26, 1.26, 0.74, 1.26]
    assert csv.splitlines()[1] == "007,0.00,1.74,1.74,60.00,1.26,1.26,0.74,1.26"


def test_worked_example_on_a_special_monday_open_only_from_nine_to_eleven():
    # Monday 2023-01-23 is a special date, open 09:00-11:00 only. The 11:15 poll is outside
    # business hours and does not count, so the 10:14 poll (active) speaks for all of it:
    #   last hour, 11:00-12:00: closed              -> 0 min up, 0 min down;
    #   last day, last week: 09:00-11:00, all up     -> 2 h = 7200 s up, 0 down
    #   (the week starts Monday 16th 12:00, when that Monday's 09:00-12:00 has ended);
    #   last 2 hours, 10:00-12:00: 10:00-11:00 up    -> 1 h = 3600 s up, 0 down.
    special = special_frame([("007", "2023-01-23", "09:00", "11:00")])
    engine_s, engine, brute, csv = both_reports(special=special)
    assert engine_s == brute == ["007", 0, 7200, 7200, 0, 0, 0]
    assert engine == ["007", 0.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    assert csv.splitlines() == [",".join(REPORT_COLUMNS), "007,0.00,2.00,2.00,0.00,0.00,0.00"]
    engine_s, engine, brute, csv = both_reports(special=special, periods=("2h",))
    assert engine_s == brute == ["007", 0, 7200, 7200, 0, 0, 0, 3600, 0]
    assert csv.splitlines()[1] == "007,0.00,2.00,2.00,0.00,0.00,0.00,1.00,0.00"


def test_worked_example_on_a_closed_monday_is_all_zeros():
    # Closed that Monday: neither poll counts, so the store's row is all zeros, its 2 hours too.
    special = special_frame([("007", "2023-01-23", "", "")])
    engine_s, engine, brute, csv = both_reports(special=special, periods=("2h",))
    assert engine_s == brute == ["007", 0, 0, 0, 0, 0, 0, 0, 0]
    assert engine == ["007"] + [0.0] * 8
    assert csv.splitlines()[1] == "007" + ",0.00" * 8


# --- through the database ----------------------------------------------------------------------


def feed_files(folder, polls, hours, zones, special):
    """The frames written as the four feeds, in a folder `ingest_files` recognises."""
    folder.mkdir(exist_ok=True)
    polls = polls.assign(timestamp_utc=pd.to_datetime(polls["timestamp_utc"]).dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
    polls.to_csv(folder / "store_status.csv", index=False)
    hours.to_csv(folder / "menu_hours.csv", index=False)
    zones.to_csv(folder / "timezones.csv", index=False)
    special.to_csv(folder / "holidays.csv", index=False)
    return folder


@pytest.mark.parametrize("seed, now", [CASES[0], CASES[4]], ids=[CASES[0][1][:10], CASES[4][1][:10]])
def test_ingested_special_days_give_the_brute_force_report_in_batches_threads_and_from_the_cache(
    engine, tmp_path, seed, now
):
    polls, hours, zones, special = random_special_stores(np.random.default_rng(seed), now)
    ingest_files(engine, feed_files(tmp_path / "feeds", polls, hours, zones, special))
    windows = report_windows(PERIODS)
    expected = report_csv(brute_force_report(polls, hours, zones, pd.Timestamp(now), special=special, periods=PERIODS))
    now_us = to_us(now)

    def csv(**options) -> str:
        frame = build_report(engine, now_us, windows=windows, **options).frame
        return write_csv(frame, tmp_path / "out.csv").read_text()

    assert csv(batch_stores=1000) == csv(batch_stores=2, parallel=2) == expected
    # The week-only report from the cache, before and after a special date is removed.
    week = brute_force_report(polls, hours, zones, pd.Timestamp(now), special=special)
    cache = ReportCache(max_polls=10**6, batch_stores=2)
    assert write_csv(build_report(engine, now_us, cache=cache).frame, tmp_path / "w.csv").read_text() == report_csv(
        week
    )
    store, date = special.iloc[-1][["store_id", "date"]]
    remove_special_date(engine, store, date)
    kept = special[(special["store_id"] != store) | (special["date"] != date)]
    after = report_csv(brute_force_report(polls, hours, zones, pd.Timestamp(now), special=kept))
    assert write_csv(build_report(engine, now_us, cache=cache).frame, tmp_path / "w2.csv").read_text() == after
    assert cache.counts["built"] > 0 and cache.counts["reused"] == 0


def test_special_days_uploaded_over_http_shape_the_report_with_periods(client, loaded):
    """conftest's `loaded` (the worked example), its Monday made a special day over HTTP."""
    answer = client.post(
        "/ingest/special_hours",
        data="store_id,date,start_time_local,end_time_local\n007,2023-01-23,09:00,11:00\n",
        content_type="text/csv",
    )
    assert answer.status_code == 200, answer.get_json()
    report_id = client.post("/trigger_report", json={"periods": "2h"}).get_json()["report_id"]
    lines = wait_for(client, report_id).get_data(as_text=True).splitlines()
    assert lines[1] == "007,0.00,2.00,2.00,0.00,0.00,0.00,1.00,0.00"
    timeline = client.get("/store/timeline?store_id=007&periods=2h").get_json()
    assert timeline["figures"] == {c: float(v) for c, v in zip(lines[0].split(",")[1:], lines[1].split(",")[1:])}
    assert timeline["special_days"][0]["date"] == "2023-01-23" and timeline["business_intervals"][0][
        "special_date"
    ] == ("2023-01-23")
    assert "Open 09:00:00-11:00:00 on 2023-01-23 (special day, from " in " ".join(timeline["notes"])
    assert client.delete("/special_hours?store_id=007&date=2023-01-23").status_code == 200
    report_id = client.post("/trigger_report").get_json()["report_id"]
    assert wait_for(client, report_id).get_data(as_text=True).splitlines()[1] == "007,0.00,1.74,1.74,60.00,1.26,1.26"


def test_a_special_row_with_one_time_empty_is_refused_in_frames_as_the_feed_refuses_it():
    polls = pd.DataFrame({"store_id": ["a"], "status": ["active"], "timestamp_utc": ["2023-01-23 10:00:00"]})
    hours = pd.DataFrame(columns=["store_id", "day", "start_time_local", "end_time_local"])
    zones = pd.DataFrame({"store_id": ["a"], "timezone_str": ["UTC"]})
    for start, end in [("", "12:00"), ("09:00", ""), ("09:00", "9 o'clock")]:
        with pytest.raises(ValueError, match="one time empty or unreadable"):
            report_from_frames(polls, hours, zones, special=special_frame([("a", "2023-01-23", start, end)]))
    polls = pd.DataFrame(
        {
            "store_id": ["a", "a"],
            "status": ["active"] * 2,
            "timestamp_utc": ["2023-01-22 12:00:00", "2023-01-23 10:00:00"],
        }
    )
    row = report_from_frames(polls, hours, zones, special=special_frame([("a", "2023-01-23", "", " ")])).iloc[0]
    # open 24x7 but closed on the 23rd: the last hour has no business time, the last day 14 hours
    assert (row["uptime_last_hour"], row["downtime_last_hour"], row["uptime_last_day"]) == (0.0, 0.0, 14.0)
