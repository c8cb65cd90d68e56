"""Shared fixtures: a fresh app on its own SQLite file per test (and on PostgreSQL), its client,
CLI runner and engine, the small sample loaded, report jobs held at a stage. Plain helpers are in
helpers.py."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py and bruteforce.py

from helpers import STATUS, postgres_database, wait_for_jobs, write_csv  # noqa: E402

from storemon import (
    create_app,  # noqa: E402
    storage,  # noqa: E402
)
from storemon.extensions import db  # noqa: E402
from storemon.ingest import ingest_files  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test that uses the app runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'storemon.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def app(database_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "REPORTS_DIR": str(tmp_path / "reports"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
        }
    )
    yield app
    try:
        wait_for_jobs()
    finally:
        with app.app_context():
            db.session.remove()
            storage.dispose_all()


class Hold:
    """Where a report job stops: at the first progress report of ``stage``, once that stage and
    its progress are written to the jobs table. ``reached`` is set when a job stops there,
    ``fraction`` is the progress it reported; the job goes on after :meth:`release`."""

    def __init__(self, stage: str):
        self.stage = stage
        self.fraction: float | None = None
        self.reached = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def hold(app, monkeypatch):
    """Report jobs stop at the engine's "interpolation" stage (set ``hold.stage`` for another)
    until the test calls ``hold.release()``; each progress report is written, none throttled.
    The job fails if it is not released within 60 s."""
    from storemon import jobs

    stop = Hold("interpolation")
    build = jobs.build_report
    monkeypatch.setattr(jobs, "PROGRESS_EVERY_S", 0.0)

    def held(*args, progress=None, **kwargs):
        def tell(fraction, stage):
            progress(fraction, stage)
            if stage == stop.stage and not stop.reached.is_set():
                stop.fraction = fraction
                stop.reached.set()
                assert stop.released.wait(60), "the test never released the report"

        return build(*args, progress=tell, **kwargs)

    monkeypatch.setattr(jobs, "build_report", held)
    yield stop
    stop.release()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def engine(app):
    """The app's engine. No app context is held open: requests and jobs push their own, as
    they do when served (a shared one would keep one session -- and one snapshot -- alive)."""
    with app.app_context():
        return db.engine


@pytest.fixture
def loaded(engine, tmp_path):
    """helpers.STATUS, 007's Monday hours and its zone, ingested: now is 2023-01-23 12:00 UTC."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    write_csv(feeds / "store_status.csv", STATUS)
    write_csv(feeds / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,12:00\n")
    write_csv(feeds / "timezones.csv", "store_id,timezone_str\n007,UTC\n")
    ingest_files(engine, feeds)
    return engine
