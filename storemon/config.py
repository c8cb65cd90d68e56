"""Configuration layers: defaults here -> environment -> the test dict given to create_app."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where `make run` keeps generated demo data: apart from the user's own feeds in data/.
DEFAULT_DEMO_DIR = PROJECT_ROOT / "data" / "demo"


class Defaults:
    """Values used when neither the environment nor the caller sets them."""

    # SQLAlchemy URL. None means "a SQLite file in the instance folder" (resolved in create_app).
    DATABASE_URL: str | None = None
    # Folder where finished report CSVs are written.
    REPORTS_DIR: str = str(PROJECT_ROOT / "reports")
    # Threads that compute reports in one web process.
    REPORT_WORKERS: int = 2
    # SQLite waits this long (ms) for a lock before giving up with "database is locked".
    SQLITE_BUSY_TIMEOUT_MS: int = 30_000
    # Rows handed to the database per batch while ingesting polls.
    INGEST_CHUNK_ROWS: int = 250_000
    # Testing aid: seconds a report job waits after claiming its report (0 in real use).
    REPORT_START_DELAY: float = 0.0
    SQLALCHEMY_TRACK_MODIFICATIONS: bool = False


ENV_KEYS = ("DATABASE_URL", "REPORTS_DIR", "REPORT_WORKERS", "REPORT_START_DELAY")


def from_environment() -> dict:
    """The settings the environment overrides (only keys that are set)."""
    values: dict = {}
    for key in ENV_KEYS:
        if os.environ.get(key):
            values[key] = os.environ[key]
    if "REPORT_WORKERS" in values:
        values["REPORT_WORKERS"] = int(values["REPORT_WORKERS"])
    if "REPORT_START_DELAY" in values:
        values["REPORT_START_DELAY"] = float(values["REPORT_START_DELAY"])
    return values
