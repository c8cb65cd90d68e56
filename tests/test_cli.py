"""The commands (storemon/cli.py): the ``storemon`` command installed in the venv by ``make``, run
as a user would, from a folder outside the repository, with its settings in the environment; and
with Flask's CLI runner on both databases, the feed options of ``ingest`` and ``special-hours``."""

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
from helpers import SPECIAL_HEADER, free_port, special, table, write_csv

STOREMON = Path(sys.executable).parent / "storemon"
FEEDS = {
    "store_status.csv": "store_id,status,timestamp_utc\n007,active,2023-01-23 10:14:00 UTC\n"
    "007,inactive,2023-01-23 11:15:00 UTC\n8419537941919820732,active,2023-01-23 12:00:00 UTC\n",
    "menu_hours.csv": "store_id,day,start_time_local,end_time_local\n007,0,09:00,12:00\n",
    "timezones.csv": "store_id,timezone_str\n007,UTC\n",
}
COMMANDS = ["ingest", "ingests", "special-hours", "report", "explain", "demo-data", "reset", "serve"]


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


# --- with Flask's CLI runner, on both databases ----------------------------------------------------

SPECIAL = SPECIAL_HEADER + "007,2023-01-23,,\n007,2023-01-24,10:00,14:00\n007,2023-01-24,17:00,24:00:00\n"


def test_ingest_has_one_repeatable_option_per_feed_from_one_table(runner, engine, tmp_path):
    helped = runner.invoke(args=["ingest", "--help"]).output
    places = [helped.index(f"{option} FILE") for option in ("--status", "--hours", "--timezones", "--special")]
    assert places == sorted(places) and "A special-hours CSV" in helped  # in the feeds' order
    first = write_csv(tmp_path / "a.csv", SPECIAL)
    second = write_csv(tmp_path / "b.csv", SPECIAL_HEADER + "008,2023-01-23,09:00,09:00\n")
    zones = write_csv(tmp_path / "z.csv", "store_id,timezone_str\n007,UTC\n")
    result = runner.invoke(
        args=["ingest", "--special", str(first), "--special", str(second), "--timezones", str(zones)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("timezones z.csv: 1 rows read")
    assert lines[1].startswith("special_hours a.csv: 3 rows read, 3 stored, 0 skipped, 1 stores")
    assert lines[2].startswith("special_hours b.csv: 1 rows read, 1 stored")
    assert len(special(engine)) == 4
    nothing = runner.invoke(args=["ingest"])
    assert nothing.exit_code == 1 and "--status/--hours/--timezones/--special" in nothing.output


def test_special_hours_lists_a_stores_dates_with_hours_or_closed_and_their_file(runner, engine, tmp_path):
    assert (
        runner.invoke(args=["ingest", "--special", str(write_csv(tmp_path / "holidays.csv", SPECIAL))]).exit_code == 0
    )
    result = runner.invoke(args=["special-hours", "007"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "store '007': 2 special date(s)",
        "2023-01-23  closed             holidays.csv",
        "2023-01-24  10:00:00-14:00:00  holidays.csv",
        "2023-01-24  17:00:00-24:00:00  holidays.csv",
    ]
    for nobody in ("7", "=cmd", 'a "b"'):
        result = runner.invoke(args=["special-hours", nobody])
        assert result.exit_code == 0 and "has no special hours: its weekly hours apply every date" in result.output


def test_special_hours_remove_removes_one_date_says_what_and_records_it(runner, engine, tmp_path):
    runner.invoke(args=["ingest", "--special", str(write_csv(tmp_path / "holidays.csv", SPECIAL))])
    result = runner.invoke(args=["special-hours", "--remove", "007", "2023-01-24"])
    assert result.exit_code == 0, result.output
    ledger = table(engine, "SELECT id, kind, file_name, outcome, rows_stored, source FROM ingests ORDER BY id DESC")[0]
    assert ledger[1:] == ("special_hours", "remove 007 2023-01-24", "stored", 2, "cli")
    assert result.output == (
        "removed the special hours of store '007' on 2023-01-24: 10:00:00-14:00:00 (holidays.csv), "
        f"17:00:00-24:00:00 (holidays.csv); its weekly hours apply again (ledger #{ledger[0]})\n"
    )
    assert [(r[0], r[1]) for r in special(engine)] == [("007", "2023-01-23")]
    listed = runner.invoke(args=["ingests", "--limit", "1"]).output
    assert "cli  special_hours stored    remove 007 2023-01-24  0 B  0 read, 2 stored, 0 skipped" in listed


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["--remove", "007", "2023-01-25"],
            1,
            "Error: store '007' has no special hours on 2023-01-25: nothing to remove",
        ),
        (["--remove", "=cmd", "2023-01-23"], 1, "Error: store '=cmd' has no special hours on 2023-01-23"),
        (["--remove", "007", "2023-02-30"], 1, "Error: date: '2023-02-30' is not a real calendar date"),
        (["--remove", "007", "1999-12-31"], 1, "Error: date: '1999-12-31' is outside the accepted range"),
        (["--remove", "007"], 2, "Error: --remove needs the DATE to remove"),
        (["007", "2023-01-23"], 2, "Error: DATE is only given with --remove"),
    ],
)
def test_special_hours_errors_are_one_line_and_change_nothing(runner, engine, tmp_path, args, code, message):
    runner.invoke(args=["ingest", "--special", str(write_csv(tmp_path / "holidays.csv", SPECIAL))])
    ledger = table(engine, "SELECT count(*) FROM ingests")
    result = runner.invoke(args=["special-hours", *args])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    if code == 1:
        assert result.output.startswith(message) and result.output.count("\n") == 1
    assert table(engine, "SELECT count(*) FROM ingests") == ledger and len(special(engine)) == 3
