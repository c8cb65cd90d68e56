"""Helpers shared by the test modules (fixtures are in conftest.py): paths, sample feeds, readers
of what the database holds, waiting for reports, random stores, and real gunicorn servers."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from storemon import storage

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# The public 2023 sample of the real feeds, kept in the repository so its tests always run.
REAL_SAMPLE = TESTS / "data" / "real-2023-sample"


# --- databases ------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("STOREMON_TEST_POSTGRES_URL")


@contextmanager
def postgres_database():
    """A fresh, empty PostgreSQL database on the test server; dropped afterwards."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: STOREMON_TEST_POSTGRES_URL is unset (.ci/run sets it)")
        pytest.skip("no PostgreSQL server: run `make test-all` (scripts/with-postgres.sh) to include these")
    import psycopg

    server = make_url(POSTGRES_URL)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"storemon_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(engine, sql):
    """The rows of a query."""
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql).all()


def polls(engine):
    """Every stored poll as (store_id, ts_us, active), by store and instant."""
    return table(
        engine,
        f"SELECT s.store_id, p.ts_us, p.active FROM {storage.ALL_POLLS} p JOIN stores s USING (store_key) "
        "ORDER BY s.store_id, p.ts_us",
    )


def hours(engine):
    """Every business-hours row as (store_id, day, start_s, end_s), by store and day."""
    return table(engine, "SELECT store_id, day, start_s, end_s FROM business_hours ORDER BY 1, 2")


def special(engine):
    """Every special-hours row as (store_id, date ``YYYY-MM-DD``, start_s, end_s, source), NULL
    start and end (a closed date) as None, by store, date and times."""
    from storemon.times import format_date

    rows = table(
        engine,
        "SELECT store_id, local_date, start_s, end_s, source FROM special_hours "
        "ORDER BY store_id, local_date, coalesce(start_s, -1), coalesce(end_s, -1)",
    )
    return [(store_id, format_date(day), start, end, source) for store_id, day, start, end, source in rows]


def snapshot(engine):
    """Everything the data database holds, to compare before and after."""
    return {
        "polls": polls(engine),
        "stores": table(engine, "SELECT store_id, first_poll_us, last_poll_us FROM stores ORDER BY store_id"),
        "hours": table(engine, "SELECT store_id, day, start_s, end_s FROM business_hours ORDER BY 1, 2, 3, 4"),
        "zones": table(engine, "SELECT store_id, timezone_str FROM store_timezones ORDER BY 1"),
        "special": special(engine),
    }


# --- feeds ----------------------------------------------------------------------------------------

STATUS_HEADER = "store_id,status,timestamp_utc\n"
SPECIAL_HEADER = "store_id,date,start_time_local,end_time_local\n"
# Polls of two stores: 007 (active at 10:14, inactive at 11:15) and one polled once, at now,
# Monday 2023-01-23 12:00 UTC. conftest's `loaded` adds 007's hours (Monday 09:00-12:00) and zone.
STATUS = (
    "store_id,status,timestamp_utc\n"
    "007,active,2023-01-23 10:14:00 UTC\n"
    "007,inactive,2023-01-23 11:15:00 UTC\n"
    "9204962793113048005,active,2023-01-23 12:00:00 UTC\n"
)
# The report of conftest's `loaded` at its now.
EXPECTED = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,downtime_last_hour,downtime_last_day,downtime_last_week\n"
    "007,0.00,1.74,1.74,60.00,1.26,1.26\n"
    "9204962793113048005,60.00,24.00,168.00,0.00,0.00,0.00\n"
)

# Five small stores beside the demo's, whose report rows are worked out by hand. now is the
# latest poll: hand-1's, Wednesday 2023-01-25 19:00:00 UTC (the demo's polls end before).
HAND_STATUS = """store_id,status,timestamp_utc
hand-1,active,2023-01-25 19:00:00 UTC
hand-2,active,2023-01-25 17:14:00 UTC
hand-2,inactive,2023-01-25 18:15:00 UTC
hand-3,active,2023-01-25 18:59:50 UTC
hand-3,inactive,2023-01-25 18:59:55 UTC
hand-4,active,2023-01-19 15:00:00 UTC
hand-4,inactive,2023-01-25 06:00:00 UTC
hand-5,active,2023-01-25 12:00:00 UTC
"""
HAND_HOURS = """store_id,day,start_time_local,end_time_local
hand-2,2,16:00,19:00
hand-4,1,22:00,02:00
hand-4,3,09:00,17:00
hand-5,0,09:00,10:00
"""
HAND_ZONES = """store_id,timezone_str
hand-2,UTC
hand-4,America/New_York
hand-5,UTC
"""
HAND_ROWS = [
    # Open 24x7 (no hours), one active poll at now: up throughout. 60 min, 24 h, 168 h.
    "hand-1,60.00,24.00,168.00,0.00,0.00,0.00",
    # The worked example of docs/report-rules.md on Wednesday 16:00-19:00 UTC: midpoint 17:44:30;
    # 16:00-17:44:30 up = 104.5 min = 1.7417 h, 17:44:30-19:00 down = 75.5 min = 1.2583 h; the
    # hour 18:00-19:00 all down. Last Wednesday's 16:00-19:00 ends as the week starts (19:00).
    "hand-2,0.00,1.74,1.74,60.00,1.26,1.26",
    # 24x7, midpoint 18:59:52.5: down 7.5 s = 0.125 min -> 0.12 (a tie: to the even digit), up
    # 3592.5 s = 59.875 min -> 59.88 (even); the day: 86392.5 s = 23.998 h -> 24.00, 7.5 s ->
    # 0.00; the week: 604792.5 s = 167.998 h -> 168.00.
    "hand-3,59.88,24.00,168.00,0.12,0.00,0.00",
    # New York (UTC-5): Tuesday 22:00-02:00 is Wednesday 03:00-07:00 UTC, Thursday 09:00-17:00
    # is 14:00-22:00 UTC. Polls Thu 19th 15:00 (active) and Wed 25th 06:00 (inactive), both
    # inside; midpoint Sun 22nd 10:30. Thursday 19th: 8 h up; Wednesday 25th 03:00-07:00: 4 h
    # down (in the day too); the hour, Wed 13:00-14:00 local, is closed. The Wednesday 18th
    # night (03:00-07:00 UTC) is before the week (from 18th 19:00).
    "hand-4,0.00,0.00,8.00,0.00,4.00,4.00",
    # Open Monday 09:00-10:00 UTC, polled only on Wednesday: no counted poll, every figure 0.
    "hand-5,0.00,0.00,0.00,0.00,0.00,0.00",
]

# Ids the ingest accepts that a path-built link would resolve to another page: dot segments,
# a scheme-relative "//host", URL delimiters, a backslash (a "/" to browsers), the timeline
# suffix. "b", "evil.com" and "x" exist too, so a link that lands on the wrong store shows it.
HOSTILE_IDS = [
    "a/../b",
    "..",
    ".",
    "//evil.com",
    "/lead",
    "x/timeline",
    "a?b=1",
    "a#b",
    "50%",
    "100%25",
    "a b",
    "a+b",
    "a&b=c",
    "a\\b",
    "\\\\evil.com",
    "./b",
    "b",
    "evil.com",
    "x",
]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def frames(polls=(), hours=(), zones=()):
    """Feed-shaped frames from tuples: polls (id, status, ts), hours (id, day, start, end), zones (id, tz)."""
    return (
        pd.DataFrame(list(polls), columns=["store_id", "status", "timestamp_utc"]),
        pd.DataFrame(list(hours), columns=["store_id", "day", "start_time_local", "end_time_local"]),
        pd.DataFrame(list(zones), columns=["store_id", "timezone_str"]),
    )


def local_us(text: str, zone: str = "America/New_York") -> int:
    """A local wall-clock time (``2023-01-24 10:00``) in ``zone`` -> UTC microseconds."""
    return pd.Timestamp(text, tz=zone).value // 1000


def special_days_timeline():
    """A store's Timeline built by hand (no database): New York, 09:00-17:00 every day, now
    2023-01-25 18:00 UTC (13:00 local); special days from holidays.csv: Sunday 2022-12-25 closed
    (before the week), Monday 2023-01-23 closed, Tuesday 2023-01-24 open 10:00-14:00 only, and
    Friday 2023-01-20 open 09:00 to 02:00 the next morning (an interval over local midnight)."""
    from storemon.explain import Interval, PollMark, Segment, SpecialDay, Timeline
    from storemon.times import format_local

    zone = "America/New_York"
    now = local_us("2023-01-25 13:00")
    hour, day = 3_600_000_000, 86_400_000_000

    def interval(start: str, end: str, special: str | None = None) -> Interval:
        a, b = local_us(start), local_us(end)
        return Interval(a, b, format_local(a, zone), format_local(b, zone), special_date=special)

    def span(date: str) -> tuple[int, int]:
        midnight = pd.Timestamp(date, tz=zone)
        return midnight.value // 1000, (midnight + pd.Timedelta(days=1)).value // 1000

    intervals = [interval(f"2023-01-{d} 09:00", f"2023-01-{d} 17:00") for d in (18, 19, 21, 22)] + [
        interval("2023-01-20 09:00", "2023-01-21 02:00", "2023-01-20"),
        interval("2023-01-24 10:00", "2023-01-24 14:00", "2023-01-24"),
        interval("2023-01-25 09:00", "2023-01-25 17:00"),
    ]
    polls = [PollMark(local_us("2023-01-24 11:00"), True, True, True)]
    segments = [Segment(2 * local_us("2023-01-24 10:00"), 2 * local_us("2023-01-24 14:00"), True, polls[0].ts_us)]
    figures = {
        "store_id": "holiday",
        "uptime_last_hour": 60.0,
        "uptime_last_day": 4.0,
        "uptime_last_week": 40.0,
        "downtime_last_hour": 0.0,
        "downtime_last_day": 0.0,
        "downtime_last_week": 1.5,
        "uptime_last_30d": 1234.5,
        "downtime_last_30d": 0.25,
    }
    return Timeline(
        store_id="holiday",
        now_us=now,
        windows={
            "hour": (now - hour, now),
            "day": (now - day, now),
            "week": (now - 7 * day, now),
            "30d": (now - 30 * day, now),
        },
        timezone=zone,
        timezone_source="given",
        timezone_given=zone,
        hours_rows=[(d, 9 * 3600, 17 * 3600) for d in range(7)],
        intervals=intervals,
        polls=polls,
        segments=segments,
        figures=figures,
        special_days=[
            SpecialDay("2022-12-25", *span("2022-12-25"), [], "holidays.csv"),
            SpecialDay("2023-01-20", *span("2023-01-20"), [(9 * 3600, 2 * 3600)], "holidays.csv"),
            SpecialDay("2023-01-23", *span("2023-01-23"), [], "holidays.csv"),
            SpecialDay("2023-01-24", *span("2023-01-24"), [(10 * 3600, 14 * 3600)], "holidays.csv"),
        ],
    )


DAY = 86_400
RANDOM_ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Denver",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Europe/London",
    "UTC",
    "America/Anchorage",
    "Mars/Olympus_Mons",
    None,
]
RANDOM_TIMES = ["00:00", "02:00", "02:30", "01:30", "09:00", "11:15", "17:00", "22:00", "23:59:59", "24:00:00"]


def random_stores(rng, n, now):
    """Random stores: all kinds of hours, zones, sparse and dense polls, polls after now."""
    polls, hours, zones = [], [], []
    now_s = pd.Timestamp(now).value // 10**9
    for i in range(n):
        sid = f"{i:03d}"
        zone = RANDOM_ZONES[rng.integers(len(RANDOM_ZONES))]
        if zone is not None:
            zones.append((sid, zone))
        kind = rng.integers(5)
        if kind > 0:  # kind 0: no rows, 24x7
            for day in range(7):
                for _ in range(rng.integers(0, 3)):  # 0 rows: closed that day
                    start = RANDOM_TIMES[rng.integers(len(RANDOM_TIMES) - 2)]
                    end = RANDOM_TIMES[rng.integers(len(RANDOM_TIMES))] if rng.random() < 0.6 else start
                    if rng.random() < 0.3:
                        start = f"{rng.integers(24):02d}:{rng.integers(60):02d}"
                    hours.append((sid, day, start, end))
        count = int(rng.choice([0, 1, 3, 30, 200]))
        span = int(rng.choice([2, 9, 30])) * DAY
        instants = now_s - rng.integers(-DAY // 2, span, size=count)  # some after now
        instants -= instants % 2  # even seconds: midpoints fall on whole seconds
        status = np.where(rng.random(count) < 0.7, "active", "inactive")
        for t, s in zip(instants, status):
            polls.append((sid, s, pd.Timestamp(int(t), unit="s")))
    return frames(polls, hours, zones)


# --- the API through the Flask test client --------------------------------------------------------


def upload(client, kind: str, text: str | bytes) -> dict:
    """A feed posted as text/csv; its summary (the upload must be accepted)."""
    answer = client.post(f"/ingest/{kind}", data=text, content_type="text/csv")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def as_of(hour: int, minute: int = 0) -> dict:
    """A trigger's JSON body for that time on Monday 2023-01-23 (UTC), the day of helpers.STATUS."""
    return {"as_of": f"2023-01-23T{hour:02d}:{minute:02d}:00Z"}


def wait_for(client, report_id, timeout=30):
    """The answer to a report once it is complete (the CSV) or failed (JSON)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/get_report?report_id={report_id}", buffered=True)
        if response.mimetype == "text/csv" or response.get_json().get("status") == "Failed":
            return response
        time.sleep(0.02)
    raise AssertionError(f"report {report_id} did not finish in {timeout} s")


def fetch_report(client, as_of: str | None = None, timeout: float = 60) -> str:
    """A report triggered and fetched over HTTP: its CSV text (it must not fail)."""
    report_id = client.post("/trigger_report", json={"as_of": as_of} if as_of else None).get_json()["report_id"]
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/get_report/{report_id}", buffered=True)
        if answer.mimetype == "text/csv":
            return answer.get_data(as_text=True)
        assert answer.get_json()["status"] == "Running", answer.get_json()
        assert time.monotonic() < deadline, f"report {report_id} not complete after {timeout:g} s"
        time.sleep(0.02)


def wait_for_jobs(timeout: float = 60) -> None:
    """Let report jobs a test started (and did not wait for) finish before its database goes;
    fails the test when some are still running after `timeout` seconds."""
    from storemon import jobs

    deadline = time.monotonic() + timeout
    while True:
        with jobs._lock:
            running = sorted(jobs._mine)
        if not running:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"report jobs still running {timeout:g} s after the test: {', '.join(running)}")
        time.sleep(0.02)


# --- real servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn -c gunicorn.conf.py wsgi:app (or another app), in its own process group."""

    def __init__(self, env: dict, workers: int = 2, app: str = "wsgi:app"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        host = env.get("STOREMON_BIND_HOST", "127.0.0.1")
        self.env = {**os.environ, **env, "STOREMON_BIND": f"{host}:{self.port}", "STOREMON_WEB_WORKERS": str(workers)}
        self.upload_dir = Path(env.get("UPLOAD_DIR", ROOT / "instance" / "uploads"))
        self.log = open(Path(env["REPORTS_DIR"]).parent / f"gunicorn-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {self.log.name}")

    def request(self, method: str, path: str, data: bytes | None = None, content_type: str | None = None):
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get(self, path):
        return self.request("GET", path)

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.log.close()


def start_and_wait(env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """gunicorn started with these settings and waited for: for settings that must stop it."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def gated_app():
    """wsgi:app, whose report jobs wait before computing until a ``/get_report`` has answered
    "Running" (in any worker: the gate is the file named by ``STOREMON_TEST_GATE``). So a
    client polling a report it just triggered sees "Running" first, however fast or slow it is.
    Served as ``Server(env, app="helpers:gated_app()")`` with tests/ on PYTHONPATH."""
    from flask import request

    import wsgi
    from storemon import jobs

    gate = Path(os.environ["STOREMON_TEST_GATE"])
    build = jobs.build_report

    def gated(*args, **kwargs):
        deadline = time.monotonic() + 120
        while not gate.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no /get_report answered Running within 120 s")
            time.sleep(0.02)
        return build(*args, **kwargs)

    jobs.build_report = gated

    @wsgi.app.after_request
    def open_gate(response):
        # The Running answer is small JSON; a report (a file, or streamed) is not read here.
        if (
            request.endpoint == "api.get_report"
            and response.is_json
            and not response.direct_passthrough
            and not response.is_streamed
        ):
            body = response.get_json(silent=True)
            if isinstance(body, dict) and body.get("status") == "Running":
                gate.touch()
        return response

    return wsgi.app


def add_report(app, beat_seconds_ago: float = 0, **values) -> str:
    """A report row written straight into the jobs table (as another process would have left it):
    running, claimed and beating ``beat_seconds_ago`` ago unless ``values`` say otherwise."""
    from datetime import UTC, datetime, timedelta

    from storemon import jobs
    from storemon.extensions import db
    from storemon.models import Report

    report_id = jobs.new_report_id()
    beat = datetime.now(UTC) - timedelta(seconds=beat_seconds_ago)
    row = dict(status="running", created_at=beat, started_at=beat, heartbeat_at=beat, progress=0.1, attempts=1)
    with app.app_context():
        db.session.add(Report(id=report_id, **{**row, **values}))
        db.session.commit()
    return report_id
