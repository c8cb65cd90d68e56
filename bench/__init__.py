"""storemon's full-scale benchmark: ``make bench`` (= ``python -m bench``).

* :mod:`bench.__main__` -- orchestration: prepares the cached data, runs every phase a few times
  in fresh processes, prints the table and writes ``bench/RESULTS.md``.
* :mod:`bench.phase` -- the phases themselves; ``python -m bench.phase NAME ARGS...`` does one
  run and prints one JSON line, so each run's peak memory is its own.

This module holds what both share: the data sets and where their cached files live. It imports
nothing heavy, on purpose: the orchestrator must stay small (see ``bench.__main__``).

Environment: ``BENCH_RUNS`` (runs per figure, default 3), ``BENCH_SEED`` (generator seed,
default 0).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"  # gitignored
SCRATCH = CACHE / "scratch"  # per-run copies of databases, emptied at start
RESULTS_MD = ROOT / "bench" / "RESULTS.md"

SEED = int(os.environ.get("BENCH_SEED", "0"))
APPEND_ROWS = 10_000  # polls in the "append" file
HOURS_AHEAD = 3  # "hour" files: one poll per 1x store, an hour apart, after the 1x data
RESULT_PREFIX = "BENCH_RESULT "  # a phase's one JSON line on stdout starts with this

# The code a cached file depends on: when it changes, the cached file is rebuilt.
DATA_CODE = ("demo.py",)
DB_CODE = ("demo.py", "ingest.py", "storage", "models.py")


@dataclass(frozen=True)
class Dataset:
    label: str  # "1x", "2x", "5x", "10x", "4w"
    title: str
    stores: int
    days: int
    seed: int = SEED

    @property
    def key(self) -> str:
        return f"{self.label}-{self.stores}x{self.days}d-seed{self.seed}"

    @property
    def data_dir(self) -> Path:
        """store_status.csv, menu_hours.csv, timezones.csv (+ meta.json once complete)."""
        return CACHE / f"data-{self.key}"

    @property
    def status_csv(self) -> Path:
        return self.data_dir / "store_status.csv"

    @property
    def db_path(self) -> Path:
        """The ingested SQLite database (+ a .json sidecar once complete)."""
        return CACHE / f"db-{self.key}.sqlite"


DATASETS = {
    d.label: d
    for d in (
        Dataset("1x", "1x: 14,000 stores x 8 days", 14_000, 8),
        Dataset("4w", "four weeks: 14,000 stores x 29 days", 14_000, 29),
        Dataset("2x", "2x: 28,000 stores x 8 days", 28_000, 8),
        Dataset("5x", "5x: 70,000 stores x 8 days", 70_000, 8),
        Dataset("10x", "10x: 140,000 stores x 8 days", 140_000, 8),
    )
}


def code_fingerprint(files: tuple[str, ...]) -> str:
    """A short hash of the named storemon/ source files (a folder: every .py file in it)."""
    digest = hashlib.sha256()
    for name in files:
        path = ROOT / "storemon" / name
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(ROOT / "storemon").as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
