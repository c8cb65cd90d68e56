"""Demo data kept apart from the user's feeds, regenerated when its parameters change, and a
documented way to start over (`flask reset`, `make reset`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers import ROOT, write_csv
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from storemon import storage
from storemon.extensions import db
from storemon.models import Poll, Store

FEED_NAMES = ["menu_hours.csv", "store_status.csv", "timezones.csv"]


def count_stores(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(Store)).scalar_one()


def test_demo_data_is_generated_once_and_again_when_its_parameters_change(app, runner, tmp_path):
    demo = tmp_path / "data" / "demo"
    args = ["demo-data", "--out", str(demo), "--stores", "20", "--days", "2", "--if-changed"]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    assert "wrote" in first.output and "for 20 stores" in first.output
    assert sorted(p.name for p in demo.iterdir()) == ["demo.json", *FEED_NAMES]
    assert json.loads((demo / "demo.json").read_text())["stores"] == 20
    written = (demo / "store_status.csv").stat().st_mtime_ns

    again = runner.invoke(args=args)
    assert again.exit_code == 0, again.output
    assert again.output.strip() == f"demo data in {demo} is up to date (20 stores x 2 days, seed 0)"
    assert (demo / "store_status.csv").stat().st_mtime_ns == written

    bigger = runner.invoke(args=["demo-data", "--out", str(demo), "--stores", "30", "--days", "2", "--if-changed"])
    assert bigger.exit_code == 0, bigger.output
    assert "for 30 stores" in bigger.output
    stamp = json.loads((demo / "demo.json").read_text())
    assert (stamp["stores"], stamp["days"], stamp["seed"]) == (30, 2, 0)
    assert len({line.split(",")[0] for line in (demo / "store_status.csv").read_text().splitlines()[1:]}) == 30


def test_new_demo_parameters_start_the_demo_database_over(app, runner, tmp_path):
    demo = tmp_path / "demo"
    assert (
        runner.invoke(args=["demo-data", "--out", str(demo), "--stores", "20", "--days", "2", "--if-changed"]).exit_code
        == 0
    )
    assert runner.invoke(args=["ingest", str(demo)]).exit_code == 0
    assert count_stores(app) == 20
    result = runner.invoke(args=["demo-data", "--out", str(demo), "--stores", "25", "--days", "2", "--if-changed"])
    assert result.exit_code == 0, result.output
    assert "emptied the database" in result.output
    assert count_stores(app) == 0  # the 20-store demo is gone: the next ingest does not mix
    assert runner.invoke(args=["ingest", str(demo)]).exit_code == 0
    assert count_stores(app) == 25


def test_new_demo_parameters_leave_another_database_alone(app, runner, tmp_path):
    demo = tmp_path / "demo"
    assert (
        runner.invoke(args=["demo-data", "--out", str(demo), "--stores", "20", "--days", "2", "--if-changed"]).exit_code
        == 0
    )
    assert runner.invoke(args=["ingest", str(demo)]).exit_code == 0
    stamp = json.loads((demo / "demo.json").read_text())
    stamp["database"] = "postgresql+psycopg://someone@elsewhere/prod"
    (demo / "demo.json").write_text(json.dumps(stamp))
    result = runner.invoke(args=["demo-data", "--out", str(demo), "--stores", "25", "--days", "2", "--if-changed"])
    assert result.exit_code == 0 and "emptied" not in result.output
    assert count_stores(app) == 20


def test_reset_removes_database_reports_and_demo_but_never_the_users_feeds(app, runner, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mine = write_csv(data / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n")
    assert (
        runner.invoke(args=["demo-data", "--out", str(data / "demo"), "--stores", "10", "--days", "1"]).exit_code == 0
    )
    assert runner.invoke(args=["ingest", str(data)]).exit_code == 0
    reports = Path(app.config["REPORTS_DIR"])
    (reports / "report_0123.csv").write_text("x\n")
    (reports / "notes.txt").write_text("kept\n")

    refused = runner.invoke(args=["reset", "--demo-dir", str(data / "demo")], input="n\n")
    assert refused.exit_code != 0 and count_stores(app) == 1

    result = runner.invoke(args=["reset", "--yes", "--demo-dir", str(data / "demo")])
    assert result.exit_code == 0, result.output
    assert "removed 1 report file" in result.output and f"removed {data / 'demo'}" in result.output
    assert mine.read_text().startswith("store_id")  # the user's own feed is untouched
    assert sorted(p.name for p in data.iterdir()) == ["store_status.csv"]
    assert sorted(p.name for p in reports.iterdir()) == ["notes.txt"]
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        assert not Path(url.database).exists()
        assert not Path(make_url(app.config["JOBS_DATABASE_URL"]).database).exists()  # report jobs too
    # Whatever the database, the next start finds it empty and usable.
    from storemon import create_app

    again = create_app({"TESTING": True, "DATABASE_URL": app.config["DATABASE_URL"], "REPORTS_DIR": str(reports)})
    with again.app_context():
        assert db.session.execute(select(func.count()).select_from(Poll)).scalar_one() == 0
        db.session.remove()
        storage.dispose_all()  # the jobs bind's engine too (a PostgreSQL connection left to GC otherwise)


# --- the Makefile's choice between the user's feeds and the demo ------------------------------


def make(tmp_path, *targets, **variables):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'make.db'}", "REPORTS_DIR": str(tmp_path / "reports")}
    args = ["make", "--no-print-directory", "-C", str(ROOT), *targets, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_make_ingest_uses_your_feeds_when_the_demo_was_only_generated(tmp_path):
    data = tmp_path / "data"
    assert make(tmp_path, "demo-data", DATA_DIR=data, DEMO_STORES=5, DEMO_DAYS=1).returncode == 0
    write_csv(data / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n")
    own = make(tmp_path, "ingest", DATA_DIR=data, DEMO_STORES=14000)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "1 rows read, 1 stored" in own.stdout
    assert "note: DEMO_STORES/DEMO_DAYS are not used" in own.stdout  # not silently ignored


def test_make_ingest_uses_the_demo_only_when_data_has_no_feeds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    demo = make(tmp_path, "ingest", DATA_DIR=data, DEMO_STORES=15, DEMO_DAYS=1)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"ingest {data}/demo" in demo.stdout and "for 15 stores" in demo.stdout
    assert sorted(p.name for p in data.iterdir()) == ["demo"]  # nothing of the demo in data/ itself
    assert (data / "demo" / ".loaded").is_file()

    # The user's feeds arrive while the database holds the demo: refused, with the way out.
    write_csv(data / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-25 12:00:00 UTC\n")
    mixed = make(tmp_path, "ingest", DATA_DIR=data)
    assert mixed.returncode != 0
    assert "make reset" in mixed.stdout + mixed.stderr

    reset = make(tmp_path, "reset", DATA_DIR=data)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert sorted(p.name for p in data.iterdir()) == ["store_status.csv"]
    own = make(tmp_path, "ingest", DATA_DIR=data)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "1 rows read, 1 stored" in own.stdout and f"{data}/demo" not in own.stdout
    assert "DEMO_STORES" not in own.stdout
