"""End to end: real gunicorn processes on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import postgres_database

from storemon import create_app, storage
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_files
from storemon.models import Report

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


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
        self.env = {**os.environ, **env, "STOREMON_BIND": f"{host}:{self.port}",
                    "STOREMON_WEB_WORKERS": str(workers)}
        self.upload_dir = Path(env.get("UPLOAD_DIR", ROOT / "instance" / "uploads"))
        self.log = open(Path(env["REPORTS_DIR"]).parent / f"gunicorn-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
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


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    """Demo feeds with a few hundred thousand polls and five hand-made stores, and the
    CLI-equivalent report of them."""
    folder = tmp_path_factory.mktemp("server")
    generate_demo_data(folder / "feeds", stores=1500, days=8, seed=3)
    (folder / "feeds" / "store_status_hand.csv").write_text(HAND_STATUS)
    (folder / "feeds" / "menu_hours_hand.csv").write_text(HAND_HOURS)
    (folder / "feeds" / "timezones_hand.csv").write_text(HAND_ZONES)
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'storemon.db'}", "REPORTS_DIR": str(folder / "cli")})
    with app.app_context():
        ingest_files(db.engine, folder / "feeds")
        storage.dispose_all()
    # The expected CSV is what the command line writes.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'storemon.db'}", "REPORTS_DIR": str(folder / "cli")}
    subprocess.run([sys.executable, "-m", "flask", "--app", "storemon", "report", "--out", str(folder / "cli.csv")],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    expected = (folder / "cli.csv").read_bytes()
    return {"folder": folder / "feeds", "database": folder / "storemon.db", "expected": expected}


@pytest.fixture(params=["sqlite", "postgresql"])
def dataset(request, feeds, tmp_path):
    """The feeds loaded into a private database of the kind given, and the expected report."""
    env = {"REPORTS_DIR": str(tmp_path / "reports")}
    if request.param == "sqlite":
        copy = tmp_path / "storemon.db"
        shutil.copyfile(feeds["database"], copy)
        yield {**env, "DATABASE_URL": f"sqlite:///{copy}", "expected": feeds["expected"]}
        return
    with postgres_database() as url:
        app = create_app({"DATABASE_URL": url, "REPORTS_DIR": env["REPORTS_DIR"]})
        with app.app_context():
            ingest_files(db.engine, feeds["folder"])
            storage.dispose_all()
        yield {**env, "DATABASE_URL": url, "expected": feeds["expected"]}


def server_env(dataset, tmp_path) -> dict:
    return {k: v for k, v in dataset.items() if k != "expected"}


def poll_until_done(server: Server, report_id: str, timeout=120):
    """The report's CSV, the headers it came with, and every answer's (headers, body) on the way."""
    answers = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, headers, body = server.get(f"/get_report?report_id={report_id}")
        answers.append((headers, body))
        assert status == 200, body
        if headers.get("X-Report-Status") == "Complete":
            return body, headers, answers
        state = json.loads(body)
        assert state["status"] in ("Running", "Failed")
        if state["status"] == "Failed":
            raise AssertionError(state)
        time.sleep(0.05)
    raise AssertionError(f"report {report_id} not complete after {timeout} s")


def test_two_workers_several_reports_at_once(dataset, tmp_path):
    server = Server(server_env(dataset, tmp_path), workers=2)
    try:
        ids: list[str] = []
        answers: list[tuple[dict, bytes]] = []  # every answer's headers and body

        def trigger():
            status, headers, body = server.request("POST", "/trigger_report")
            assert status == 200
            answers.append((headers, body))
            ids.append(json.loads(body)["report_id"])

        threads = [threading.Thread(target=trigger) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 4
        for report_id in ids:
            body, headers, polled = poll_until_done(server, report_id)
            answers += polled
            assert body == dataset["expected"]
            rows = body.decode().splitlines()
            assert [row for row in rows if row.startswith("hand-")] == HAND_ROWS
            assert headers["Content-Type"].startswith("text/csv")
            assert headers["Content-Disposition"] == f"attachment; filename=report_{report_id}.csv"
        answers += [server.get(path)[1:] for path in ("/health", "/", "/ingests", f"/reports/{ids[0]}") * 4]
        # Four identical triggers at once, in two processes: computed once, three reuse it.
        app = create_app({"DATABASE_URL": dataset["DATABASE_URL"], "REPORTS_DIR": dataset["REPORTS_DIR"]})
        with app.app_context():
            rows = db.session.execute(db.select(Report.reuse_of, Report.attempts, Report.worker)).all()
            db.session.remove()
            storage.dispose_all()
        computed = [r for r in rows if r.reuse_of is None]
        assert [r.attempts for r in computed] == [1] and len(rows) == 4
        # The workers' ids (host:pid:token, kept in the jobs table) are in no answer's headers
        # or body, whole or as host:pid or pid:token.
        for worker in {r.worker for r in rows}:
            host, pid, token = worker.split(":")
            assert pid.isdigit() and len(token) == 8, worker
            parts = (worker, f"{host}:{pid}", f"{pid}:{token}")
            for headers, body in answers:
                for name, value in headers.items():
                    assert not any(part in value for part in parts), (worker, name, value)
                assert not any(part.encode() in body for part in parts), (worker, body[:200])
        # An ingest arriving over HTTP while reports run: no "database is locked".
        report_id = json.loads(server.request("POST", "/trigger_report")[2])["report_id"]
        status, _, body = server.request(
            "POST", "/ingest/status",
            data=b"store_id,status,timestamp_utc\nlate-store,active,2023-01-25 18:13:22 UTC\n", content_type="text/csv",
        )
        assert status == 200, body
        poll_until_done(server, report_id)
        status, _, body = server.get("/get_report/../../etc/passwd")
        assert status in (400, 404) and json.loads(body)["error"]
    finally:
        server.stop()


def test_a_report_killed_mid_run_is_rerun_after_restart(dataset, tmp_path):
    env = server_env(dataset, tmp_path)
    slow = Server({**env, "REPORT_START_DELAY": "60"}, workers=1)
    try:
        report_id = json.loads(slow.request("POST", "/trigger_report")[2])["report_id"]
        deadline = time.monotonic() + 30
        while json.loads(slow.get(f"/get_report/{report_id}")[2]).get("state") != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        slow.stop(signal.SIGKILL)  # master and worker die mid-report
    server = Server(env, workers=2)
    try:
        body, _, _ = poll_until_done(server, report_id)
        assert body == dataset["expected"]
    finally:
        server.stop()


def test_several_hosts_share_one_postgresql_database(feeds, tmp_path):
    """Two separate servers (as on two hosts) on one PostgreSQL database: a report triggered on
    one is answered by the other, and each report is computed exactly once."""
    with postgres_database() as url:
        app = create_app({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "shared-reports")})
        with app.app_context():
            ingest_files(db.engine, feeds["folder"])
            storage.dispose_all()
        # Separate REPORTS_DIRs, as on separate hosts: a report computed on one is handed out
        # by the other from the copy kept in the database.
        first = Server({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "host-a")}, workers=2)
        second = Server({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "host-b")}, workers=2)
        try:
            ids = [json.loads((first if i % 2 else second).request("POST", "/trigger_report")[2])["report_id"]
                   for i in range(4)]
            for i, report_id in enumerate(ids):
                body, _, _ = poll_until_done(second if i % 2 else first, report_id)
                assert body == feeds["expected"]
        finally:
            first.stop()
            second.stop()
        with app.app_context():
            rows = db.session.execute(db.select(Report.reuse_of, Report.attempts)).all()
            db.session.remove()
            storage.dispose_all()
        # Identical reports (same now, same data): computed exactly once, by one host.
        assert sorted(r.attempts for r in rows if r.reuse_of is None) == [1]
        assert len(rows) == 4
