"""Shared fixtures: a fresh app on its own SQLite file per test, its client and CLI runner."""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # helpers such as bruteforce.py

from storemon import create_app  # noqa: E402
from storemon import storage  # noqa: E402
from storemon.extensions import db  # noqa: E402

# The public 2023 sample of the real feeds, kept in the repository so its tests always run.
REAL_SAMPLE = TESTS / "data" / "real-2023-sample"


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
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "REPORTS_DIR": str(tmp_path / "reports"),
                      "UPLOAD_DIR": str(tmp_path / "uploads")})
    yield app
    try:
        _wait_for_jobs()
    finally:
        with app.app_context():
            db.session.remove()
            storage.dispose_all()


def _wait_for_jobs(timeout: float = 60) -> None:
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


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path
