"""The report cache (storemon/snapshot.py): a warm report equals a cold one, whatever changed.

Each step changes the database the way users do -- an hour of new polls, overwritten keys, new
stores, a backfill of old polls, new business hours, new time zones, files from other
processes, an emptied database -- then a report through the kept batches (warm) must be
byte-identical to one read from scratch (cold). Batches of a few stores, so that several
batches, a new store landing in the last one, and the look-back are all exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from helpers import random_stores

from storemon import storage
from storemon.extensions import db
from storemon.ingest import ingest_file, ingest_files
from storemon.reports import build_report, write_csv
from storemon.snapshot import ReportCache
from storemon.times import to_us

NOW = "2023-03-13 05:00:00Z"  # the week holds the US spring change
HOUR_US = 3_600_000_000
BATCH = 7


def feed_polls(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["store_id", "status", "timestamp_utc"])
    frame["timestamp_utc"] = pd.to_datetime(frame["timestamp_utc"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return frame


def write(tmp_path, name, frame: pd.DataFrame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def csv_bytes(result, tmp_path, name) -> bytes:
    return write_csv(result.frame, tmp_path / "out" / name).read_bytes()


class Checker:
    """Runs a warm and a cold report and compares them; counts what the cache did."""

    def __init__(self, engine, tmp_path):
        self.engine, self.tmp_path = engine, tmp_path
        self.cache = ReportCache(max_polls=1_000_000, batch_stores=BATCH)
        self.step = 0

    def same(self, as_of_us=None) -> dict:
        self.step += 1
        before = dict(self.cache.counts)
        warm = build_report(self.engine, as_of_us, cache=self.cache)
        cold = build_report(self.engine, as_of_us, batch_stores=1000)
        assert (warm.now_us, warm.latest_poll_us, warm.data_version, warm.store_count) == (
            cold.now_us,
            cold.latest_poll_us,
            cold.data_version,
            cold.store_count,
        )
        assert csv_bytes(warm, self.tmp_path, f"w{self.step}.csv") == csv_bytes(
            cold, self.tmp_path, f"c{self.step}.csv"
        )
        return {k: self.cache.counts[k] - before[k] for k in before}


@pytest.fixture
def loaded_random(engine, tmp_path):
    """40 random stores (all kinds of hours, zones, sparse and dense polls), up to NOW - 3 h."""
    rng = np.random.default_rng(7)
    polls, hours, zones = random_stores(rng, 40, NOW)
    polls = polls[pd.to_datetime(polls["timestamp_utc"], utc=True) <= pd.Timestamp(NOW) - pd.Timedelta(hours=3)]
    folder = tmp_path / "feeds"
    folder.mkdir()
    feed_polls(polls.values.tolist()).to_csv(folder / "store_status.csv", index=False)
    hours.to_csv(folder / "menu_hours.csv", index=False)
    zones.to_csv(folder / "timezones.csv", index=False)
    ingest_files(engine, folder)
    return polls


@pytest.fixture(params=["polls_recent", "folds"])
def recent_limit(request, monkeypatch):
    """New polls land in polls_recent (both databases): with its default limit, these small
    files all stay there; with a limit of a few polls, most files fold it into polls first."""
    if request.param == "folds":
        monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", 0)
        monkeypatch.setattr(storage.polls, "RECENT_POLLS_PER_STORE", 1)
    return request.param


def test_warm_report_equals_cold_after_every_kind_of_change(app, engine, tmp_path, recent_limit, loaded_random):
    check = Checker(engine, tmp_path)
    n = check.same()["built"]
    assert n == len(check.cache.batches) >= 4  # the stores with polls, in batches of 7
    assert check.same() == {"built": 0, "refreshed": 0, "reused": n}  # nothing changed: reused

    ids = sorted(loaded_random["store_id"].unique())
    now = pd.Timestamp(NOW)
    # An hour of new polls, one per store (some stores polled for the first time in weeks).
    hour = [
        (s, "active" if i % 4 else "inactive", now - pd.Timedelta(hours=2) + pd.Timedelta(seconds=7 * i))
        for i, s in enumerate(ids)
    ]
    ingest_file(engine, "status", write(tmp_path, "hour1.csv", feed_polls(hour)))
    assert check.same() == {"built": 0, "refreshed": n, "reused": 0}

    # Overwrites of existing keys (the status flips), inside the window.
    flipped = loaded_random.sort_values("timestamp_utc").tail(60).copy()
    flipped["status"] = np.where(flipped["status"] == "active", "inactive", "active")
    ingest_file(engine, "status", write(tmp_path, "flip.csv", feed_polls(flipped.values.tolist())))
    assert check.same()["refreshed"] == n

    # New stores (they land in the last batch) and another hour for some old ones.
    new = [(f"zz{i}", "active" if i % 2 else "inactive", now - pd.Timedelta(minutes=70 - i)) for i in range(9)]
    new += [(s, "inactive", now - pd.Timedelta(minutes=50)) for s in ids[::3]]
    ingest_file(engine, "status", write(tmp_path, "new.csv", feed_polls(new)))
    assert check.same()["built"] == 0

    # A backfill: old polls, before the window, and a few inside it, in one file.
    back = [(s, "inactive", now - pd.Timedelta(days=20, minutes=i)) for i, s in enumerate(ids[:5])]
    back += [(s, "active", now - pd.Timedelta(days=3, minutes=17 + i)) for i, s in enumerate(ids[5:12])]
    ingest_file(engine, "status", write(tmp_path, "back.csv", feed_polls(back)))
    assert check.same()["built"] == 0

    # Two files stored between two reports.
    ingest_file(
        engine, "status", write(tmp_path, "a.csv", feed_polls([(ids[1], "active", now - pd.Timedelta(minutes=30))]))
    )
    ingest_file(
        engine, "status", write(tmp_path, "b.csv", feed_polls([(ids[2], "inactive", now - pd.Timedelta(minutes=20))]))
    )
    assert check.same()["built"] == 0

    # Business hours change: batches are rebuilt (intervals, counted polls), same figures.
    hours = pd.DataFrame(
        {
            "store_id": [ids[0], ids[0], ids[3], "zz1"],
            "day": [0, 6, 0, 0],
            "start_time_local": ["00:00", "10:00", "04:00", "01:00"],
            "end_time_local": ["23:00", "02:00", "04:00", "03:30"],
        }
    )
    ingest_file(engine, "hours", write(tmp_path, "hours2.csv", hours))
    assert check.same()["built"] == n
    # Time zones change.
    zones = pd.DataFrame(
        {"store_id": [ids[0], ids[4], "zz2"], "timezone_str": ["Asia/Kolkata", "Australia/Lord_Howe", "Not/AZone"]}
    )
    ingest_file(engine, "timezones", write(tmp_path, "zones2.csv", zones))
    assert check.same()["built"] == n

    # The next hour; a report as of an earlier instant (the cache holds it too); the latest.
    nxt = [(s, "active", now + pd.Timedelta(minutes=10 + i % 5)) for i, s in enumerate(ids)]
    ingest_file(engine, "status", write(tmp_path, "hour2.csv", feed_polls(nxt)))
    check.same(to_us(now - pd.Timedelta(hours=5)))
    check.same(to_us(now - pd.Timedelta(days=2, minutes=13)))
    assert check.same()["built"] == 0


def test_files_from_other_processes_while_the_cache_is_warm(app, engine, tmp_path, loaded_random):
    """Two other processes ingest (at once: they take turns on the database) between reports."""
    check = Checker(engine, tmp_path)
    n = check.same()["built"]
    ids = sorted(loaded_random["store_id"].unique())
    now = pd.Timestamp(NOW)
    files = [
        write(
            tmp_path,
            "p1.csv",
            feed_polls([(s, "inactive", now - pd.Timedelta(minutes=90 - i)) for i, s in enumerate(ids)]),
        ),
        write(
            tmp_path,
            "p2.csv",
            feed_polls(
                [(s, "active", now - pd.Timedelta(minutes=45 + i)) for i, s in enumerate(ids[::2])]
                + [("other1", "active", now - pd.Timedelta(minutes=40))]
            ),
        ),
    ]
    env = {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REPORTS_DIR": str(tmp_path / "r")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "storemon", "ingest", "--status", str(f)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for f in files
    ]
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
    assert check.same() == {"built": 0, "refreshed": n, "reused": 0}


def test_an_emptied_database_is_not_mistaken_for_the_cached_one(app, engine, tmp_path, loaded_random):
    check = Checker(engine, tmp_path)
    check.same()
    with app.app_context():
        storage.empty_database()
    rows = [
        ("a", "active", "2023-03-13 04:00:00"),
        ("b", "inactive", "2023-03-13 04:30:00"),
        ("a", "inactive", "2023-03-12 22:00:00"),
    ]
    ingest_file(engine, "status", write(tmp_path, "fresh.csv", feed_polls(rows)))
    ingest_file(engine, "status", write(tmp_path, "fresh2.csv", feed_polls([("c", "active", "2023-03-13 04:40:00")])))
    assert check.same()["built"] >= 1


def test_batches_and_a_small_cache_give_the_same_report(engine, tmp_path, loaded_random):
    expected = csv_bytes(build_report(engine, batch_stores=1000), tmp_path, "all.csv")
    for size in (1, 3, 16):
        assert csv_bytes(build_report(engine, batch_stores=size), tmp_path, f"b{size}.csv") == expected
    tiny = ReportCache(max_polls=50, batch_stores=4)  # too small to keep anything
    assert csv_bytes(build_report(engine, cache=tiny), tmp_path, "tiny.csv") == expected
    assert tiny.batches == [] and csv_bytes(build_report(engine, cache=tiny), tmp_path, "tiny2.csv") == expected


def cached(cache) -> tuple:
    """What a cache's batches hold, whatever the batches: each poll (store key, instant, status,
    counted), each business interval (store key, start, end), and the batches' time span."""
    polls, intervals = [], []
    for b in cache.batches:
        polls += zip(b.keys[b.store].tolist(), b.ts.tolist(), b.active.tolist(), b.counted.tolist())
        which, start, end = b.intervals
        intervals += zip(b.keys[which].tolist(), start.tolist(), end.tolist())
    spans = {(b.version, b.from_us, b.to_us, b.horizon_us) for b in cache.batches}
    return sorted(polls), sorted(intervals), spans


@pytest.mark.parametrize("parallel", [2, 3])
def test_parallel_batches_give_the_one_core_report(engine, tmp_path, loaded_random, parallel):
    expected = csv_bytes(build_report(engine, batch_stores=1000), tmp_path, "all.csv")
    for size in (1, 7):
        built = build_report(engine, batch_stores=size, parallel=parallel)
        assert csv_bytes(built, tmp_path, f"p{size}.csv") == expected
    cache = ReportCache(max_polls=10**6, batch_stores=5)
    cold = build_report(engine, cache=cache, parallel=parallel)
    kept = len(cache.batches)
    assert kept > 1 and csv_bytes(cold, tmp_path, "cold.csv") == expected
    one = ReportCache(max_polls=10**6, batch_stores=5)
    build_report(engine, cache=one)  # one thread keeps the same, in batches of its own sizes
    assert cached(cache) == cached(one) and len(cached(one)[0]) > 100
    polls = feed_polls([(f"{i:03d}", "inactive", pd.Timestamp(NOW) - pd.Timedelta(hours=2)) for i in range(40)])
    ingest_file(engine, "status", write(tmp_path, "hour.csv", polls))
    warm = build_report(engine, cache=cache, parallel=parallel)
    assert cache.counts["refreshed"] == kept
    assert csv_bytes(warm, tmp_path, "warm.csv") == csv_bytes(build_report(engine), tmp_path, "again.csv")


def test_parallel_progress_never_goes_back(engine, loaded_random):
    told = []
    build_report(engine, batch_stores=3, parallel=3, progress=lambda fraction, stage: told.append(fraction))
    assert told == sorted(told) and told[0] == 0.02 and told[-1] == 0.95 and len(told) > 14


def test_report_jobs_use_the_cache_and_match_a_cold_report(app, client, engine, tmp_path, loaded_random):
    from storemon import jobs

    def run(timeout: float = 60) -> bytes:
        report_id = client.post("/trigger_report").get_json()["report_id"]
        deadline = time.monotonic() + timeout
        while True:
            with client.get(f"/get_report?report_id={report_id}") as response:
                if response.headers.get("X-Report-Status") == "Complete":
                    return response.get_data()
                assert response.get_json()["status"] == "Running", response.get_json()
            assert time.monotonic() < deadline, f"report {report_id} not complete after {timeout:g} s"
            time.sleep(0.02)

    cache = jobs.report_cache(app)
    first = run()
    assert first == csv_bytes(build_report(engine), tmp_path, "cold1.csv")
    built = cache.counts["built"]
    ids = sorted(loaded_random["store_id"].unique())
    hour = [(s, "inactive", pd.Timestamp(NOW) - pd.Timedelta(minutes=100 - i)) for i, s in enumerate(ids)]
    ingest_file(engine, "status", write(tmp_path, "h.csv", feed_polls(hour)))
    refreshed = cache.counts["refreshed"]
    assert run() == csv_bytes(build_report(engine), tmp_path, "cold2.csv")
    assert cache.counts["built"] == built and cache.counts["refreshed"] > refreshed
    with app.app_context():
        db.session.remove()
