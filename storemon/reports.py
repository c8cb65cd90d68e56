"""Building a report from the database: read one snapshot, compute, write the CSV.

The arithmetic is in :mod:`storemon.compute`; this module only gathers its inputs (in one read
transaction, so an ingest committing meanwhile is not half seen) and writes the result.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import storage
from .compute import US_PER_DAY, WEEK_US, Progress, Schedule, compute_report

# Polls loaded in the first read: the week window plus this much before it. An older poll can
# matter only to a store with no counted poll in that day, which is then looked up separately.
LOOK_BACK_US = US_PER_DAY


# A `now` more than this after the latest poll it sees gets a warning: every figure is then an
# extrapolation of each store's last known status.
WARN_AFTER_LATEST_POLL_US = US_PER_DAY


class NoPollsError(Exception):
    """There is no poll at or before the requested instant: nothing to report on."""


@dataclass
class ReportResult:
    frame: pd.DataFrame  # the report, columns as in docs/report-rules.md
    now_us: int  # the `now` used (UTC microseconds)
    store_count: int  # rows in the report
    latest_poll_us: int  # the latest poll at or before `now` (UTC microseconds)
    data_version: int = 0  # the ingest ledger's last stored id in the snapshot read

    @property
    def warning(self) -> str | None:
        return now_warning(self.now_us, self.latest_poll_us)


def now_warning(now_us: int, latest_poll_us: int) -> str | None:
    """A warning when ``now`` is more than a day after the latest poll it sees, else None."""
    if now_us - latest_poll_us <= WARN_AFTER_LATEST_POLL_US:
        return None
    days = (now_us - latest_poll_us) / US_PER_DAY
    return (
        f"now ({format_instant(now_us)}) is {days:.1f} days after the latest poll "
        f"({format_instant(latest_poll_us)}): the figures extrapolate each store's last known status"
    )


# Called once `now` and the latest poll at or before it are known (before the computation).
NowCallback = Callable[[int, int], None]


def build_report(
    engine: Engine,
    as_of_us: int | None = None,
    progress: Progress | None = None,
    on_now: NowCallback | None = None,
) -> ReportResult:
    """Compute the report from the database as of ``as_of_us`` (default: the latest poll)."""
    with read_snapshot(engine) as conn:
        return _build(conn, as_of_us, progress, on_now)


@contextmanager
def read_snapshot(engine: Engine):
    """A connection in a read transaction: all reads through it see one state of the database."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            # One snapshot for all the reads (SQLite gets it from its BEGIN; see storage).
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _build(
    conn, as_of_us: int | None, progress: Progress | None, on_now: NowCallback | None = None
) -> ReportResult:
    """The reads (all in the caller's transaction) and the computation."""
    now_us = as_of_us if as_of_us is not None else storage.latest_poll_us(conn)
    if now_us is None:
        raise NoPollsError("no polls in the database yet: ingest a store-status file first")
    stores = storage.report_stores(conn, now_us)
    if stores.empty:
        earliest = storage.earliest_poll_us(conn)
        raise NoPollsError(
            f"no poll at or before {format_instant(now_us)}; the earliest poll is at {format_instant(earliest)}"
        )
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
    # The polls read end at `now`, so their latest is the latest poll at or before it; none in
    # the last eight days (an as_of long after the data) -> ask the database.
    latest_us = int(polls["ts_us"].max()) if len(polls) else storage.latest_poll_at_or_before(conn, now_us)
    if on_now:
        on_now(now_us, latest_us)
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
    return ReportResult(frame=frame, now_us=now_us, store_count=len(frame), latest_poll_us=latest_us,
                        data_version=storage.data_version(conn))


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the report CSV atomically: a temp file in the same folder, then a rename.

    Lines end in ``\\n``. A store id is quoted (RFC 4180: in double quotes, inner quotes
    doubled) when it holds a comma, a quote, CR or LF or starts or ends with a space, so every
    id reads back exactly with Python's ``csv`` and ``pandas.read_csv``. (Python's csv writer
    does not quote a bare CR when the line terminator is LF, so the id column is quoted here.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            handle.write(",".join(frame.columns) + "\n")
            if len(frame):
                ids = frame.iloc[:, 0].astype(str)
                needs = ids.str.contains(r'[",\r\n]|^\s|\s$', regex=True).to_numpy(dtype=bool)
                if needs.any():
                    ids = ids.where(~needs, '"' + ids.str.replace('"', '""', regex=False) + '"')
                numbers = frame.iloc[:, 1:].to_csv(header=False, index=False, float_format="%.2f", lineterminator="\n")
                handle.write("".join(f"{i},{line}\n" for i, line in zip(ids.tolist(), numbers.splitlines())))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parse_instant(text: str) -> int:
    """An ``as_of`` given by a user -> UTC microseconds. Same forms and range as the poll feed.

    Raises ``ValueError`` with a readable message: "cannot read" for text that is not an
    instant, "outside the accepted range" (with the range) for an instant the feed would refuse.
    """
    from .ingest import EARLIEST_POLL, LATEST_POLL_AHEAD, parse_timestamps

    value = parse_timestamps(pd.Series([str(text)])).iloc[0]
    if not pd.isna(value):
        return int(value)
    instant = _read_instant(str(text))
    if instant is None:
        raise ValueError(
            f"cannot read {text!r} as an instant; use e.g. 2023-01-25T12:00:00Z or 2023-01-25 12:00:00 UTC"
        )
    latest = (datetime.now(timezone.utc) + LATEST_POLL_AHEAD.to_pytimedelta()).replace(microsecond=0)
    try:
        shown = f"{text!r} ({_format(instant)})"
    except OverflowError:  # e.g. year 1 with a positive offset: no UTC date to show
        shown = repr(text)
    raise ValueError(
        f"{shown} is outside the accepted range: from "
        f"{_format(EARLIEST_POLL.to_pydatetime())} to one day after the current time ({_format(latest)})"
    )


def _read_instant(text: str) -> datetime | None:
    """Any ISO 8601 instant (naive = UTC, ``UTC`` suffix allowed), whatever its year; else None."""
    cleaned = re.sub(r"(?i)\s*utc$", "", text.strip())
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _format(value: datetime) -> str:
    """ISO 8601 in UTC ending in ``Z`` (fractional seconds only when there are any)."""
    text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return f"{text}Z"


def format_instant(us: int) -> str:
    """UTC microseconds -> ISO 8601 ending in ``Z``, e.g. ``2023-01-25T12:00:00Z``."""
    return _format(_EPOCH + timedelta(microseconds=int(us)))


def format_datetime(value: datetime | None) -> str | None:
    """A stored datetime -> ISO 8601 UTC ending in ``Z`` (naive values are UTC); None stays None."""
    if value is None:
        return None
    return _format(value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc))
