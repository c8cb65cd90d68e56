"""Tests for the demo / benchmark data generator (storemon.demo)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from storemon.demo import DemoSummary, generate_demo_data

FILES = ("store_status.csv", "menu_hours.csv", "timezones.csv")
HEADERS = {
    "store_status.csv": "store_id,status,timestamp_utc",
    "menu_hours.csv": "store_id,day,start_time_local,end_time_local",
    "timezones.csv": "store_id,timezone_str",
}
DEFAULT_END = datetime(2023, 1, 25, 18, 13, 22, 479220, tzinfo=UTC)


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"  # does not exist yet
    summary = generate_demo_data(out, stores=50, days=2, seed=1)
    return out, summary


def test_files_and_headers(small):
    out, summary = small
    assert isinstance(summary, DemoSummary)
    assert summary.out_dir == Path(out)
    for name in FILES:
        path = out / name
        assert path.is_file()
        with open(path, encoding="utf-8", newline="") as fh:
            assert fh.readline() == HEADERS[name] + "\n"


def test_counts_match_summary(small):
    out, s = small
    status, hours, tz = (_read(out / n) for n in FILES)
    assert s.stores == 50
    assert s.polls == len(status) > 0
    assert s.hours_rows == len(hours) > 0
    assert s.timezone_rows == len(tz) > 0


def test_store_ids(small):
    out, s = small
    status = _read(out / "store_status.csv")
    ids = status["store_id"].drop_duplicates()
    assert len(ids) == s.stores  # every store polled, ids unique strings
    assert all(isinstance(i, str) and i for i in ids)
    assert "007" in set(ids)  # leading zeros kept
    numeric = ids[ids.str.fullmatch(r"[1-9][0-9]*")]
    assert len(numeric) >= s.stores - 3
    assert (numeric.str.len() >= 15).mean() > 0.9  # 19-digit-ish like the real feed
    assert ids.str.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").sum() >= 1
    # no duplicate poll keys
    assert not status.duplicated(["store_id", "timestamp_utc"]).any()


def test_polls(small):
    out, s = small
    status = _read(out / "store_status.csv")
    assert set(status["status"]) == {"active", "inactive"}
    assert (status["status"] == "active").mean() > 0.5
    assert status["timestamp_utc"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,6} UTC").all()
    ts = pd.to_datetime(status["timestamp_utc"].str.removesuffix(" UTC"), utc=True)
    assert not ts.isna().any()
    assert ts.max() == pd.Timestamp(s.end) == pd.Timestamp(DEFAULT_END)
    assert ts.min() == pd.Timestamp(s.start)
    assert s.start >= DEFAULT_END - timedelta(days=2)
    assert s.start.tzinfo is not None and s.end.tzinfo is not None
    # about hourly: 50 stores x 48 hours x ~0.69
    assert 0.45 * 50 * 48 < s.polls < 0.95 * 50 * 48
    # rows in rough time order, not grouped per store
    assert (ts.diff().dropna() > -pd.Timedelta(minutes=10)).all()


def test_hours_and_timezones(small):
    out, s = small
    ids = set(_read(out / "store_status.csv")["store_id"])
    hours = _read(out / "menu_hours.csv")
    tz = _read(out / "timezones.csv")

    assert set(hours["day"]) <= {str(d) for d in range(7)}
    for col in ("start_time_local", "end_time_local"):
        assert hours[col].str.fullmatch(r"\d\d:\d\d:\d\d").all()
    assert set(hours["store_id"]) < ids  # some stores have no hours (24x7)
    assert (hours["end_time_local"] < hours["start_time_local"]).any()  # overnight rows
    assert hours.groupby(["store_id", "day"]).size().max() >= 2  # split days

    assert tz["store_id"].is_unique
    assert set(tz["store_id"]) < ids  # some stores have no time zone
    assert (tz["timezone_str"] == "Mars/Olympus_Mons").sum() == 1
    assert tz["timezone_str"].str.startswith("America/").mean() > 0.8


def test_deterministic(tmp_path):
    a = generate_demo_data(tmp_path / "a", stores=30, days=1, seed=5)
    b = generate_demo_data(tmp_path / "b", stores=30, days=1, seed=5)
    generate_demo_data(tmp_path / "c", stores=30, days=1, seed=6)
    assert (a.polls, a.hours_rows, a.timezone_rows, a.start, a.end) == (
        b.polls,
        b.hours_rows,
        b.timezone_rows,
        b.start,
        b.end,
    )
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "store_status.csv").read_bytes() != (tmp_path / "c" / "store_status.csv").read_bytes()


def test_custom_end(tmp_path):
    end = datetime(2024, 3, 10, 8, 0, 0, tzinfo=UTC)
    s = generate_demo_data(tmp_path, stores=10, days=1, seed=0, end=end)
    assert s.end == end
    assert end - timedelta(days=1) <= s.start < end
    status = _read(tmp_path / "store_status.csv")
    ts = pd.to_datetime(status["timestamp_utc"].str.removesuffix(" UTC"), utc=True)
    assert ts.max() == pd.Timestamp(end)


def test_demo_data_command(tmp_path):
    from storemon import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path / "r")})
    result = app.test_cli_runner().invoke(
        args=["demo-data", "--stores", "20", "--days", "2", "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert "for 20 stores to" in result.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "demo.json",
        "menu_hours.csv",
        "store_status.csv",
        "timezones.csv",
    ]


def test_demo_data_refuses_zero_stores(runner, tmp_path):
    result = runner.invoke(args=["demo-data", "--stores", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--stores" in result.output and result.exception.__class__ is SystemExit
