"""End to end: real gunicorn processes on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import HAND_HOURS, HAND_ROWS, HAND_STATUS, HAND_ZONES, ROOT, Server, postgres_database

from storemon import create_app, storage
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_files
from storemon.models import Report

pytestmark = pytest.mark.slow


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
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "storemon", "report", "--out", str(folder / "cli.csv")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
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
            "POST",
            "/ingest/status",
            data=b"store_id,status,timestamp_utc\nlate-store,active,2023-01-25 18:13:22 UTC\n",
            content_type="text/csv",
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


# An hour after the last poll (hand-1's, 2023-01-25 19:00 UTC), three stores polled again.
HOUR_LATER = (
    "store_id,status,timestamp_utc\n"
    "hand-1,inactive,2023-01-25 20:00:00 UTC\n"
    "hand-2,active,2023-01-25 20:00:00 UTC\n"
    "hand-3,inactive,2023-01-25 20:00:00 UTC\n"
)


def test_several_hosts_share_one_postgresql_database(feeds, tmp_path):
    """Two separate servers (as on two hosts) on one PostgreSQL database: a report triggered on
    one is answered by the other, each report is computed exactly once, and an hour uploaded to
    one host followed by a warm report on the other gives the cold report's bytes."""
    with postgres_database() as url:
        app = create_app({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "shared-reports")})
        with app.app_context():
            ingest_files(db.engine, feeds["folder"])
            storage.dispose_all()
        # Separate REPORTS_DIRs, as on separate hosts: a report computed on one is handed out
        # by the other from the copy kept in the database.
        first = Server({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "host-a")}, workers=2)
        # The second host serves with one process, so its warm report finds the batches it kept.
        second = Server({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "host-b")}, workers=1)
        try:
            ids = [
                json.loads((first if i % 2 else second).request("POST", "/trigger_report")[2])["report_id"]
                for i in range(4)
            ]
            for i, report_id in enumerate(ids):
                body, _, _ = poll_until_done(second if i % 2 else first, report_id)
                assert body == feeds["expected"]
            # A report of its own on the second host (two more columns: not the same report)
            # leaves its batches kept there; an hour of polls uploaded to the first host; the
            # second host's next report brings its batches up to date: the cold report's bytes.
            own = json.loads(second.request("POST", "/trigger_report?periods=2h")[2])["report_id"]
            poll_until_done(second, own)
            status, _, answer = first.request("POST", "/ingest/status", HOUR_LATER.encode(), "text/csv")
            assert status == 200 and json.loads(answer)["rows_stored"] == 3, answer
            warm = json.loads(second.request("POST", "/trigger_report")[2])["report_id"]
            body, _, _ = poll_until_done(first, warm)  # polled on the other host
            cold = tmp_path / "cold.csv"
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "storemon", "report", "--out", str(cold)],
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / "cli")},
                check=True,
                capture_output=True,
            )
            assert body == cold.read_bytes() != feeds["expected"]
            metrics = second.get("/metrics")[2].decode()
            assert re.search(r'storemon_report_batches_total\{how="refreshed"\} [1-9]', metrics), metrics
        finally:
            first.stop()
            second.stop()
        with app.app_context():
            rows = db.session.execute(db.select(Report.reuse_of, Report.attempts)).all()
            db.session.remove()
            storage.dispose_all()
        # Identical reports (same now, same data): computed exactly once, by one host.
        assert sorted(r.attempts for r in rows if r.reuse_of is None) == [1, 1, 1]
        assert len(rows) == 6
