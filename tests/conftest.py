"""Shared fixtures: a fresh app on its own SQLite file per test, its client and CLI runner."""

from __future__ import annotations

import os
import secrets
import sys
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
    _wait_for_jobs()
    with app.app_context():
        db.session.remove()
        storage.dispose_all()


def _wait_for_jobs(timeout: float = 60) -> None:
    """Let report jobs a test started (and did not wait for) finish before its database goes."""
    from storemon import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with jobs._lock:
            if not jobs._mine:
                return
        time.sleep(0.02)


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
