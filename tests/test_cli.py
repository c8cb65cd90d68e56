"""The ``storemon`` command (storemon/cli.py ``main``), installed in the venv by ``make``: run as a
user would, from a folder outside the repository, with its settings in the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

STOREMON = Path(sys.executable).parent / "storemon"
FEEDS = {
    "store_status.csv": "store_id,status,timestamp_utc\n007,active,2023-01-23 10:14:00 UTC\n"
    "007,inactive,2023-01-23 11:15:00 UTC\n8419537941919820732,active,2023-01-23 12:00:00 UTC\n",
    "menu_hours.csv": "store_id,day,start_time_local,end_time_local\n007,0,09:00,12:00\n",
    "timezones.csv": "store_id,timezone_str\n007,UTC\n",
}
COMMANDS = ["ingest", "ingests", "report", "explain", "demo-data", "reset", "serve"]


@pytest.fixture
def user(tmp_path):
    """A folder outside the repository, feeds in it, and the settings a user would export."""
    if not STOREMON.exists():
        pytest.fail(f"{STOREMON} is missing: `make` installs the project (pip install -e .)")
    for name, text in FEEDS.items():
        (tmp_path / "feeds").mkdir(exist_ok=True)
        (tmp_path / "feeds" / name).write_text(text)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    return tmp_path, env


def run(user, *args: str) -> subprocess.CompletedProcess:
    folder, env = user
    return subprocess.run([str(STOREMON), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_storemon_ingests_reports_and_explains_from_any_folder(user):
    folder, _ = user
    assert run(user, "ingest", "feeds").returncode == 0
    result = run(user, "report", "--out", "r.xlsx")
    assert result.returncode == 0, result.stderr
    assert "wrote 2 stores to r.xlsx as xlsx" in result.stdout
    assert run(user, "report", "--out", "r.csv").stdout.startswith("wrote 2 stores to r.csv (now = ")
    assert (folder / "r.csv").read_text().splitlines()[1] == "007,0.00,1.74,1.74,60.00,1.26,1.26"
    explained = run(user, "explain", "007", "--json")
    assert explained.returncode == 0 and json.loads(explained.stdout)["store_id"] == "007"


def test_report_and_explain_take_periods(user):
    folder, _ = user
    assert run(user, "ingest", "feeds").returncode == 0
    assert run(user, "report", "--out", "r.csv", "--periods", "2h,30d").returncode == 0
    header, row = (folder / "r.csv").read_text().splitlines()[:2]
    assert header.endswith(",downtime_last_week,uptime_last_2h,downtime_last_2h,uptime_last_30d,downtime_last_30d")
    assert row == "007,0.00,1.74,1.74,60.00,1.26,1.26,0.74,1.26,13.74,1.26"
    explained = json.loads(run(user, "explain", "007", "--json", "--periods", "2h,30d").stdout)
    assert list(explained["figures"].values()) == [float(v) for v in row.split(",")[1:]]
    assert list(explained["windows"]) == ["hour", "day", "week", "2h", "30d"]


@pytest.mark.parametrize("command", [["report", "--out", "r.csv"], ["explain", "007"]])
def test_unreadable_periods_are_one_line_errors(user, command):
    assert run(user, "ingest", "feeds").returncode == 0
    result = run(user, *command, "--periods", "93d")
    assert (
        result.returncode == 1 and result.stderr.strip() == "Error: periods: 93d is longer than 92d, the longest period"
    )


def test_storemon_has_help_for_every_command_and_a_version(user):
    result = run(user, "--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout
        helped = run(user, command, "--help")
        assert helped.returncode == 0 and helped.stdout.startswith(f"Usage: storemon {command} ")
    assert run(user, "--version").stdout.strip() == "storemon 0.1.0"


def test_storemon_serve_serves_the_database_as_it_is(user):
    folder, env = user
    assert run(user, "ingest", "feeds").returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [str(STOREMON), "serve"],
        cwd=folder,
        env={**env, "STOREMON_BIND": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, health = time.monotonic() + 60, None
        while health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    health = json.loads(answer.read())
            except OSError:
                assert time.monotonic() < deadline, "storemon serve did not answer /health within 60 s"
                time.sleep(0.2)
        assert (health["status"], health["stores_with_polls"], health["polls"]) == ("ok", 2, 3)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
