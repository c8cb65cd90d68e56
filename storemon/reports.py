"""Building a report from the database: read one snapshot, compute, write the CSV.

The arithmetic is in :mod:`storemon.compute`; this module only gathers its inputs (in one read
transaction, so an ingest committing meanwhile is not half seen) and writes the result.
"""

from __future__ import annotations

import os
import queue
import tempfile
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from . import snapshot, storage
from .compute import US_PER_DAY, WEEK_US, WINDOWS, History, Progress, Window, compute_report
from .config import default
from .snapshot import ReportCache
from .times import format_instant

# Polls loaded in the first read: the week window plus this much before it. An older poll can
# matter only to a store with no counted poll in that day, which is then looked up separately.
LOOK_BACK_US = US_PER_DAY
# Stores per batch: a report's memory follows this (about 130 polls a store a week), not the
# number of stores. (The setting REPORT_BATCH_STORES; this default for callers without an app.)
BATCH_STORES = default("REPORT_BATCH_STORES")


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
    batches: dict[str, int] = field(default_factory=dict)  # how its batches were got: built/refreshed/reused

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
    *,
    cache: ReportCache | None = None,
    batch_stores: int = BATCH_STORES,
    windows: tuple[Window, ...] = WINDOWS,
    parallel: int = 1,
) -> ReportResult:
    """Compute the report from the database as of ``as_of_us`` (default: the latest poll).

    Stores are computed in batches of ``batch_stores`` (by store key), so memory follows the
    batch; a window longer than the week (``windows``: :func:`~storemon.compute.report_windows`)
    makes the batches as much smaller as it is longer, so a batch holds about a week's polls of
    ``batch_stores`` stores. With ``cache`` (a serving process's
    :class:`~storemon.snapshot.ReportCache`) the batches read are kept, and the next report reads
    only what changed since (:mod:`storemon.snapshot`); the result is the same either way. The
    cache holds the week: a report with a longer window reads the database without it. With
    ``parallel`` > 1 that many batches are computed at once, each by a thread in its own read
    snapshot of the same data (:func:`_batches`); the report is the same.
    """
    span = max(w.length_us for w in windows)
    if span > WEEK_US:
        cache, batch_stores = None, max(1, batch_stores * WEEK_US // span)
    if cache is None:
        with read_snapshot(engine) as conn:
            return _build(conn, as_of_us, progress, on_now, None, batch_stores, "", windows, parallel)
    with cache.lock:  # before the snapshot: it is then at least as new as what the cache holds
        with read_snapshot(engine) as conn:
            url = str(engine.url)
            return _build(conn, as_of_us, progress, on_now, cache, cache.batch_stores, url, windows, parallel)


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
    conn, as_of_us, progress, on_now, cache: ReportCache | None, batch_stores: int, url: str, windows, parallel: int
) -> ReportResult:
    """The reads (all in the caller's transaction) and the computation, batch by batch."""
    # One function on purpose: every read of a report happens inside this one snapshot.
    latest_in_db = storage.latest_poll_us(conn)
    now_us = as_of_us if as_of_us is not None else latest_in_db
    if now_us is None:
        raise NoPollsError("no polls in the database yet: ingest a store-status file first")
    stores = storage.all_stores(conn)
    keys = stores["store_key"].to_numpy(np.int64)
    ids = stores["store_id"].to_numpy(object)
    first_poll = stores["first_poll_us"].to_numpy(np.int64)
    in_report = first_poll <= now_us
    if not in_report.any():
        earliest = storage.earliest_poll_us(conn)
        raise NoPollsError(
            f"no poll at or before {format_instant(now_us)}; the earliest poll is at {format_instant(earliest)}"
        )
    latest_us = latest_in_db if now_us >= latest_in_db else storage.latest_poll_at_or_before(conn, now_us)
    if on_now:
        on_now(now_us, latest_us)
    if progress:
        progress(0.02, "read")
    version = storage.data_version(conn)
    complete_from = now_us - max(WEEK_US, *(w.length_us for w in windows)) - LOOK_BACK_US

    # Kept batches serve if none is newer than this snapshot and all hold this report's range.
    kept = cache.kept(url) if cache is not None else []
    usable = bool(kept) and all(b.version <= version and b.covers(complete_from, now_us) for b in kept)
    if usable:
        bounds = [(b.lo, b.hi) for b in kept]
        changes = storage.ledger_stored_since(conn, min(b.version for b in kept))
    else:
        starts = keys[:: _even_batches(len(keys), batch_stores, parallel)]
        bounds = list(zip(starts.tolist(), [*starts[1:].tolist(), snapshot.MAX_US]))
        changes = None
    plan = _Plan(
        stores=(keys, ids, first_poll, in_report),
        version=version,
        fingerprint=storage.ledger_fingerprint(conn, version) if version else None,
        complete_from=complete_from,
        now_us=now_us,
        horizon=max(latest_in_db, now_us) + snapshot.HORIZON_US,
        windows=windows,
        kept=kept if usable else [],
        changes=changes,
    )
    keeping = cache is not None and (usable or not kept or max(b.version for b in kept) <= version)

    frames, batches, held, got = [], [], 0, []
    batch_results = _batches(conn, plan, bounds, parallel, lambda: keeping, progress)
    for i, (frame, batch, counted_as) in enumerate(batch_results):
        got.append(counted_as)
        if cache is not None:
            cache.counts[counted_as] += 1
        if frame is not None:
            frames.append(frame)
        if keeping:
            held += batch.polls
            stores_so_far = max(np.searchsorted(keys, bounds[i][1]), 1)
            expected = held * len(keys) / stores_so_far  # the stores so far tell the total
            if held <= cache.max_polls and expected <= 1.2 * cache.max_polls:
                batches.append(batch)
            else:  # too big to keep: compute the rest without holding it
                keeping, batches = False, []
                cache.keep(url, [])
    if keeping:
        cache.keep(url, batches)
    if progress:
        progress(0.95, "formatting")
    frame = (
        frames[0]
        if len(frames) == 1
        else (pd.concat(frames, ignore_index=True).sort_values("store_id", kind="stable").reset_index(drop=True))
    )
    return ReportResult(
        frame=frame,
        now_us=now_us,
        store_count=len(frame),
        latest_poll_us=latest_us,
        data_version=version,
        batches=dict(Counter(got)),
    )


def _even_batches(stores: int, batch_stores: int, parallel: int) -> int:
    """Stores per batch: at most ``batch_stores``, in batches of even size; and when there are
    several, as many as ``parallel`` threads share evenly (a multiple of ``parallel``): 14,000
    stores in batches of at most 5,000 on two threads are four of 3,500, two rounds of 3,500
    rather than two of 5,000 and one of 4,000."""
    batches = -(-max(stores, 1) // batch_stores)
    if batches > 1:
        batches = -(-batches // parallel) * parallel
    return max(1, -(-stores // batches))


@dataclass(frozen=True)
class _Plan:
    """What every batch of one report shares: the stores (keys, ids, first polls, in the report
    or not), the snapshot's data version and its ledger fingerprint, the range read, and the
    kept batches with the ledger rows stored since (when they serve)."""

    stores: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    version: int
    fingerprint: str | None
    complete_from: int
    now_us: int
    horizon: int
    windows: tuple[Window, ...]
    kept: list
    changes: pd.DataFrame | None


def _batches(conn, plan: _Plan, bounds, parallel: int, keeping: Callable[[], bool], progress: Progress | None):
    """``(frame, batch, how)`` for each batch of ``bounds``, in order: its rows (None when none
    of its stores is in the report), the batch read, and whether it was ``built``, ``refreshed``
    or ``reused``.

    With ``parallel`` > 1, batches are computed by that many threads, each in a read snapshot of
    its own: the data version and its ledger row's fingerprint are the same as the report's, or
    the batch is computed again here, in the report's own snapshot (an ingest committed
    meanwhile). Every write goes with a ledger row in the same transaction, so the same version
    is the same data. At most ``parallel`` batches run and one waits to be taken at a time; the
    threads' progress reaches ``progress`` from this thread, never going back.
    """
    if parallel <= 1 or len(bounds) <= 1:
        for i, (lo, hi) in enumerate(bounds):
            yield _one_batch(conn, plan, i, lo, hi, keeping(), _share(progress, plan, lo, hi))
        return
    engine, told = conn.engine, queue.SimpleQueue()
    furthest = [0.0]

    def relay(fraction: float, stage: str) -> None:
        if fraction > furthest[0]:
            furthest[0] = fraction
            progress(fraction, stage)

    def run(i: int, lo: int, hi: int, keep: bool):
        share = _share((lambda fraction, stage: told.put((fraction, stage))) if progress else None, plan, lo, hi)
        with read_snapshot(engine) as own:
            if storage.data_version(own) != plan.version or (
                plan.version and storage.ledger_fingerprint(own, plan.version) != plan.fingerprint
            ):
                return None  # another state of the data: computed again in the report's snapshot
            return _one_batch(own, plan, i, lo, hi, keep, share)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="report-batch") as pool:
        pending: deque = deque()
        for i, (lo, hi) in enumerate(bounds):
            pending.append((i, lo, hi, pool.submit(run, i, lo, hi, keeping())))
            while pending and (len(pending) > parallel or i == len(bounds) - 1):
                j, lo_j, hi_j, future = pending.popleft()
                while not _done(future, told, relay if progress else None):
                    pass
                result = future.result()
                yield result if result is not None else _one_batch(conn, plan, j, lo_j, hi_j, keeping(), None)


def _done(future, told: queue.SimpleQueue, relay) -> bool:
    """Wait a moment for ``future``, passing on the progress told meanwhile; True when it is done."""
    try:
        future.result(timeout=0.05)
    except TimeoutError:
        pass
    except Exception:  # noqa: BLE001 -- raised again by the caller's future.result()
        return True
    while not told.empty():
        fraction, stage = told.get()
        if relay:
            relay(fraction, stage)
    return future.done()


def _share(progress: Progress | None, plan: _Plan, lo: int, hi: int) -> Progress | None:
    """The engine's progress within the batch of keys ``[lo, hi)`` as the report's."""
    keys = plan.stores[0]
    start, stop = np.searchsorted(keys, lo), np.searchsorted(keys, hi)
    return _within(progress, start / len(keys), stop / len(keys))


def _one_batch(conn, plan: _Plan, i: int, lo: int, hi: int, keeping: bool, progress: Progress | None):
    """One batch read (kept and brought up to date, or built) and computed: ``(frame, batch, how)``,
    the batch only when it is to be kept (else None: its memory goes as soon as it is computed)."""
    keys, ids, first_poll, in_report = plan.stores
    at = slice(np.searchsorted(keys, lo), np.searchsorted(keys, hi))
    batch, how = None, "built"
    if plan.kept:
        old = plan.kept[i]
        if old.version == plan.version:
            batch, how = old, "reused"
        else:
            batch = snapshot.refresh(old, conn, keys[at], plan.version, plan.changes, plan.complete_from)
            how = "refreshed"
    if batch is None or not batch.covers(plan.complete_from, plan.now_us) or not np.array_equal(batch.keys, keys[at]):
        how = "built"
        to_us, horizon = (snapshot.MAX_US, plan.horizon) if keeping else (plan.now_us, plan.now_us)
        batch = snapshot.build(conn, keys[at], lo, hi, plan.version, plan.complete_from, to_us, horizon)
    mine = in_report[at]
    if not mine.any():
        return None, batch if keeping else None, how
    frame = _compute_batch(
        conn,
        batch,
        keys[at][mine],
        ids[at][mine],
        first_poll[at][mine],
        plan.complete_from,
        plan.now_us,
        progress,
        plan.windows,
    )
    return frame, batch if keeping else None, how


def _within(progress: Progress | None, start: float, stop: float) -> Progress | None:
    """The engine's progress within one batch (its stages, 0..1) as the report's: the batches
    share 0.02..0.95 by their stores, from ``start`` to ``stop`` (fractions of all stores)."""
    if progress is None:
        return None
    return lambda fraction, stage: progress(0.02 + 0.93 * (start + (stop - start) * fraction), stage)


def _compute_batch(
    conn, batch, report_keys, store_ids, first_poll_us, complete_from, now_us, progress: Progress | None, windows
) -> pd.DataFrame:
    """One batch's rows (sorted by store_id); codes are positions in ``report_keys``."""
    polls, schedule, intervals = snapshot.report_inputs(batch, report_keys, complete_from, now_us)

    def fetch_older(codes: np.ndarray, from_us: int, to_us: int) -> pd.DataFrame:
        older = storage.polls_of_stores(conn, report_keys[codes], from_us, to_us)
        older["store"] = np.searchsorted(report_keys, older["store_key"].to_numpy(np.int64))
        return older

    history = History(complete_from, first_poll_us, fetch_older)
    return compute_report(
        store_ids, polls, schedule, now_us, history=history, windows=windows, intervals=intervals, progress=progress
    )


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
                handle.write("".join(f"{i},{line}\n" for i, line in zip(ids.tolist(), _figures(frame.iloc[:, 1:]))))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _figures(values: pd.DataFrame) -> list[str]:
    """Each row's figures as CSV text, two decimals (``%.2f``, as pandas' ``float_format``
    writes them, but one format per row rather than per value: four times faster). Any other
    column type, or an empty cell, is left to pandas."""
    if all(dtype.kind == "f" for dtype in values.dtypes) and not values.isna().to_numpy().any():
        row = ",".join(["%.2f"] * values.shape[1])
        return [row % figures for figures in map(tuple, values.to_numpy().tolist())]
    return values.to_csv(header=False, index=False, float_format="%.2f", lineterminator="\n").splitlines()
