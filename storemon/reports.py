"""Building a report from the database: read one snapshot, compute, write the CSV.

The arithmetic is in :mod:`storemon.compute`; this module only gathers its inputs (in one read
transaction, so an ingest committing meanwhile is not half seen) and writes the result.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import storage
from .compute import US_PER_DAY, WEEK_US, Progress, Schedule, compute_report

# Polls loaded in the first read: the week window plus this much before it. An older poll can
# matter only to a store with no counted poll in that day, which is then looked up separately.
LOOK_BACK_US = US_PER_DAY


class NoPollsError(Exception):
    """There is no poll at or before the requested instant: nothing to report on."""


@dataclass
class ReportResult:
    frame: pd.DataFrame  # the report, columns as SPEC §2
    now_us: int  # the `now` used (UTC microseconds)
    store_count: int  # rows in the report


def build_report(engine: Engine, as_of_us: int | None = None, progress: Progress | None = None) -> ReportResult:
    """Compute the report from the database as of ``as_of_us`` (default: the latest poll)."""
    with read_snapshot(engine) as conn:
        return _build(conn, as_of_us, progress)


@contextmanager
def read_snapshot(engine: Engine):
    """A connection in a read transaction: all reads through it see one state of the database."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            # One snapshot for all the reads (SQLite gets it from its BEGIN; see storage).
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _build(conn, as_of_us: int | None, progress: Progress | None) -> ReportResult:
    """The reads (all in the caller's transaction) and the computation."""
    now_us = as_of_us if as_of_us is not None else storage.latest_poll_us(conn)
    if now_us is None:
        raise NoPollsError("no polls in the database yet: ingest a store-status file first")
    stores = storage.report_stores(conn, now_us)
    if stores.empty:
        raise NoPollsError(f"no poll at or before {pd.Timestamp(now_us, unit='us', tz='UTC')}")
    # Codes follow store_key order, the order the database returns polls in, so the engine
    # need not sort them; the engine sorts the report by store_id.
    stores = stores.sort_values("store_key").reset_index(drop=True)
    code_of_key = pd.Series(np.arange(len(stores)), index=stores["store_key"].to_numpy())
    code_of_id = pd.Series(np.arange(len(stores)), index=stores["store_id"].to_numpy())

    complete_from = now_us - WEEK_US - LOOK_BACK_US
    polls = storage.polls_between(conn, complete_from, now_us)
    polls = pd.DataFrame(
        {
            "store": code_of_key.reindex(polls["store_key"].to_numpy()).to_numpy(),
            "ts_us": polls["ts_us"].to_numpy(),
            "active": polls["active"].to_numpy(),
        }
    ).dropna()
    if progress:
        progress(0.02, "read")

    hours = storage.all_hours(conn)
    hours["store"] = code_of_id.reindex(hours["store_id"].to_numpy()).to_numpy()
    hours = hours.dropna(subset=["store"])
    zones = storage.all_timezones(conn)
    zones["store"] = code_of_id.reindex(zones["store_id"].to_numpy()).to_numpy()
    zones = zones.dropna(subset=["store"])
    schedule = Schedule.build(
        len(stores),
        hours.astype({"store": np.int64}),
        pd.Series(zones["timezone_str"].to_numpy(), index=zones["store"].to_numpy(np.int64)),
    )
    keys = stores["store_key"].to_numpy()

    def fetch_older(codes: np.ndarray, from_us: int, to_us: int) -> pd.DataFrame:
        older = storage.polls_of_stores(conn, keys[codes], from_us, to_us)
        older["store"] = code_of_key.reindex(older["store_key"].to_numpy()).to_numpy()
        return older

    frame = compute_report(
        stores["store_id"].to_numpy(),
        polls.astype({"store": np.int64}),
        schedule,
        now_us,
        complete_from_us=complete_from,
        first_poll_us=stores["first_poll_us"].to_numpy(),
        fetch_older=fetch_older,
        progress=progress,
    )
    return ReportResult(frame=frame, now_us=now_us, store_count=len(frame))


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the report CSV atomically: a temp file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False, float_format="%.2f", lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parse_instant(text: str) -> int:
    """An ``as_of`` given by a user -> UTC microseconds. Same forms as the poll feed.

    Raises ``ValueError`` with a readable message for anything else.
    """
    from .ingest import parse_timestamps

    value = parse_timestamps(pd.Series([str(text)])).iloc[0]
    if pd.isna(value):
        raise ValueError(
            f"cannot read {text!r} as an instant; use e.g. 2023-01-25T12:00:00Z or 2023-01-25 12:00:00 UTC"
        )
    return int(value)
