"""Shared fixtures: a fresh app on its own SQLite file per test, its client and CLI runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # helpers such as bruteforce.py

from storemon import create_app  # noqa: E402
from storemon.extensions import db  # noqa: E402

SHARED = TESTS.parent.parent / "shared"
REAL_SAMPLE = SHARED / "data" / "real-2023-sample"


@pytest.fixture
def app(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}",
            "REPORTS_DIR": str(tmp_path / "reports"),
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


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
