"""What a report reads, in columns, one batch of stores at a time -- and kept between reports.

A report is computed in batches of stores (consecutive ``store_key`` ranges), so its memory
follows the batch, not the number of stores. A :class:`Batch` holds, for the stores of one key
range, everything :func:`storemon.compute.compute_report` needs besides the look-back:

* the polls with ``from_us <= ts_us <= to_us`` (sorted by store, then time), and for each
  whether it lies in business hours (``counted``, rule 3);
* the stores' business-hours rows and zones, and their merged business intervals in UTC
  computed for ``[from_us, horizon_us]`` (with 3 days spare each side).

A serving process keeps the batches of its last report (a :class:`ReportCache`) when they hold
at most ``REPORT_CACHE_POLLS`` polls in all. They are derived data: the database stays the only
truth, and a kept batch says what it was built from -- the data version (the ingest ledger's
last stored id, see :func:`storemon.storage.data_version`) and that ledger row's fingerprint.
The next report, in its own read snapshot, brings each kept batch up to that snapshot's version
(:func:`refresh`) by reading only what changed, as the ledger tells it: every stored status
file records the span of poll instants it wrote (``polls_from_us``/``polls_to_us``), and its
ledger row is written in the file's own transaction, so the polls of those spans, read again,
are exactly what differs. New stores (keys above the batch's) get their hours and zones read.
A stored hours or time-zone file, a ledger that no longer holds the batch's version (database
emptied), or new polls past the intervals' horizon rebuild the batch instead. A batch kept from
a *later* version than a report's snapshot is not used by it (nor replaced).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import storage
from .compute import US_PER_DAY, Axis, Schedule, business_intervals, clip_intervals, in_business
from .times import DEFAULT_TIMEZONE, is_known_timezone

MAX_US = 2**62  # "no upper bound" for a range of instants
HORIZON_US = 7 * US_PER_DAY  # a kept batch's intervals reach this far past its latest poll
TRIM_AFTER_US = US_PER_DAY  # polls older than a report needs are dropped once they span this


@dataclass(frozen=True)
class Batch:
    """Polls, hours and business intervals of the stores with ``lo <= store_key < hi``.

    Stores are numbered by their position in ``keys`` ("local" index). ``store``/``ts``/
    ``active``/``counted``: every poll of these stores with ``from_us <= ts_us <= to_us``,
    sorted by local index then time. ``intervals``: (local index, start, end), merged, covering
    ``[from_us - 3 days, horizon_us + 3 days]``. ``version``/``fingerprint``: the data version
    read and its ledger row's fingerprint.
    """

    lo: int
    hi: int
    version: int
    fingerprint: str | None
    from_us: int
    to_us: int
    horizon_us: int
    keys: np.ndarray
    store: np.ndarray
    ts: np.ndarray
    active: np.ndarray
    counted: np.ndarray
    schedule: Schedule
    intervals: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def polls(self) -> int:
        return len(self.ts)

    def covers(self, complete_from_us: int, now_us: int) -> bool:
        """Does this batch hold what a report at ``now_us`` reading from ``complete_from_us`` needs?"""
        return self.from_us <= complete_from_us and now_us <= min(self.to_us, self.horizon_us)


def _schedule(conn, keys: np.ndarray, lo: int, hi: int) -> Schedule:
    """The business hours, special days and zones of stores ``keys`` (all within ``[lo, hi)``),
    in local indices."""
    hours = storage.hours_by_key(conn, (lo, hi))
    special = storage.special_by_key(conn, (lo, hi))
    zones = storage.zones_by_key(conn, (lo, hi))
    names = np.full(len(keys), DEFAULT_TIMEZONE, dtype=object)
    zone_local, ok = _local(keys, zones["store_key"])
    given = zones["timezone_str"].to_numpy(object)
    code, distinct = pd.factorize(given)  # each distinct name checked once
    known = np.array([isinstance(z, str) and is_known_timezone(z) for z in distinct] + [False], bool)
    ok &= known[code]  # code -1 (no name): the False at the end
    names[zone_local[ok]] = given[ok]
    local, inside = _local(keys, hours["store_key"])
    special_local, special_inside = _local(keys, special["store_key"])
    return Schedule(
        store=local[inside],
        day=hours["day"].to_numpy(np.int64)[inside],
        start_s=hours["start_s"].to_numpy(np.int64)[inside],
        end_s=hours["end_s"].to_numpy(np.int64)[inside],
        zones=names,
        special_store=special_local[special_inside],
        special_date=special["date"].to_numpy(np.int64)[special_inside],
        special_start_s=special["start_s"].to_numpy(np.int64)[special_inside],
        special_end_s=special["end_s"].to_numpy(np.int64)[special_inside],
    )


def _local(keys: np.ndarray, store_keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``store_keys`` in the sorted ``keys``, and which of them are there."""
    wanted = store_keys.to_numpy(np.int64)
    local = np.searchsorted(keys, wanted).astype(np.int64)
    inside = (local < len(keys)) & (keys[np.minimum(local, len(keys) - 1)] == wanted)
    return local, inside


def _counted(store, ts, intervals, n, from_us, horizon_us) -> np.ndarray:
    """Rule 3 for polls in ``[from_us, horizon_us]`` (intervals cut to the axis they are put on)."""
    lo, hi = from_us - 3 * US_PER_DAY, horizon_us + 3 * US_PER_DAY
    return in_business(store, ts, clip_intervals(intervals, lo, hi), Axis(lo, hi, n))


def _stamp(conn, version: int) -> dict:
    """What a batch read at data ``version`` says it was built from: the version, and its
    ledger row's fingerprint (None for an empty ledger)."""
    return {"version": version, "fingerprint": storage.ledger_fingerprint(conn, version) if version else None}


def build(conn, keys: np.ndarray, lo: int, hi: int, version: int, from_us: int, to_us: int, horizon_us: int) -> Batch:
    """Read one batch from the database (inside the caller's read snapshot)."""
    keys = np.asarray(keys, dtype=np.int64)
    if not len(keys):
        raise ValueError("a batch needs at least one store")
    polls = storage.polls_between(conn, from_us, to_us, keys=(lo, hi))
    store = np.searchsorted(keys, polls["store_key"].to_numpy(np.int64))
    ts = polls["ts_us"].to_numpy(np.int64)
    schedule = _schedule(conn, keys, lo, hi)
    intervals = business_intervals(schedule, np.arange(len(keys)), from_us, horizon_us)
    return Batch(
        lo=lo,
        hi=hi,
        **_stamp(conn, version),
        from_us=from_us,
        to_us=to_us,
        horizon_us=horizon_us,
        keys=keys,
        store=store,
        ts=ts,
        active=polls["active"].to_numpy(bool),
        counted=_counted(store, ts, intervals, len(keys), from_us, horizon_us),
        schedule=schedule,
        intervals=intervals,
    )


def refresh(
    batch: Batch, conn, keys: np.ndarray, version: int, changes: pd.DataFrame, keep_from_us: int
) -> Batch | None:
    """``batch`` brought up to data version ``version`` (the caller's snapshot), reading only
    what the ledger rows ``changes`` (stored since ``batch.version``) say changed; None when it
    must be rebuilt instead (see the module docstring). ``keys``: the batch range's store keys
    now. Polls before ``keep_from_us`` are dropped once they span more than a day."""
    # One function on purpose: what changed since a batch was kept is applied in one pass.
    if batch.fingerprint != _stamp(conn, batch.version)["fingerprint"]:
        return None  # the database was emptied (or replaced) since the batch was read
    mine = changes[changes["id"] > batch.version]
    if (mine["kind"] != "status").any():
        return None  # hours or zones changed: intervals and counted polls are rebuilt
    keys = np.asarray(keys, dtype=np.int64)
    old_n = len(batch.keys)
    if len(keys) < old_n or not np.array_equal(keys[:old_n], batch.keys):
        return None  # store keys are only ever added, above the others; anything else: rebuild
    if mine[["polls_from_us", "polls_to_us"]].isna().any(axis=None):
        return None  # a status file without its span (no valid row, or an older writer): rebuild
    spans = mine
    if len(spans) and int(spans["polls_to_us"].max()) > min(batch.to_us, batch.horizon_us):
        return None  # polls past the intervals' horizon
    store, ts, active, counted = batch.store, batch.ts, batch.active, batch.counted
    schedule, intervals = batch.schedule, batch.intervals
    if len(keys) > old_n:  # new stores: their hours and zones, and their intervals
        schedule = _schedule(conn, keys, batch.lo, batch.hi)
        new = np.arange(old_n, len(keys))
        added = business_intervals(schedule, new, batch.from_us, batch.horizon_us)
        intervals = tuple(np.concatenate([a, b]) for a, b in zip(intervals, added))
    n = len(keys)

    # The spans written since, merged where they overlap, each read again for this batch.
    ranges = sorted(
        (max(int(a), batch.from_us), int(b))
        for a, b in zip(spans["polls_from_us"], spans["polls_to_us"])
        if int(b) >= batch.from_us
    )
    merged: list[list[int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if merged:
        stale = np.zeros(len(ts), dtype=bool)
        parts = []
        for a, b in merged:
            stale |= (ts >= a) & (ts <= b)
            fresh = storage.polls_between(conn, a, b, keys=(batch.lo, batch.hi))
            parts.append(fresh)
        fresh = pd.concat(parts, ignore_index=True)
        f_store = np.searchsorted(keys, fresh["store_key"].to_numpy(np.int64))
        f_ts = fresh["ts_us"].to_numpy(np.int64)
        f_counted = _counted(f_store, f_ts, intervals, n, batch.from_us, batch.horizon_us)
        keep = ~stale
        store, ts, active, counted = store[keep], ts[keep], active[keep], counted[keep]
        # Both sides are sorted by (store, ts): insert the fresh polls where they belong, by
        # one number per poll (store * stride + ts - from; all instants lie in [from, horizon]).
        stride = batch.horizon_us - batch.from_us + 1
        at = np.searchsorted(store * stride + (ts - batch.from_us), f_store * stride + (f_ts - batch.from_us))
        store, ts = np.insert(store, at, f_store), np.insert(ts, at, f_ts)
        active = np.insert(active, at, fresh["active"].to_numpy(bool))
        counted = np.insert(counted, at, f_counted)
    from_us = batch.from_us
    if keep_from_us - from_us > TRIM_AFTER_US:
        keep = ts >= keep_from_us
        store, ts, active, counted = store[keep], ts[keep], active[keep], counted[keep]
        from_us = keep_from_us
    polls = dict(store=store, ts=ts, active=active, counted=counted)
    return replace(
        batch, **_stamp(conn, version), from_us=from_us, keys=keys, schedule=schedule, intervals=intervals, **polls
    )


def report_inputs(batch: Batch, report_keys: np.ndarray, complete_from_us: int, now_us: int):
    """What :func:`storemon.compute.compute_report` takes, for the stores ``report_keys`` of
    this batch (sorted; codes ``0..m-1`` in that order): (polls frame with ``counted``,
    schedule, intervals) in codes, polls cut to ``[complete_from_us, now_us]``."""
    code_of_local = np.full(len(batch.keys), -1, dtype=np.int64)
    local = np.searchsorted(batch.keys, report_keys)
    code_of_local[local] = np.arange(len(report_keys))
    at = np.flatnonzero((batch.ts >= complete_from_us) & (batch.ts <= now_us))
    code = code_of_local[batch.store[at]]
    mine = code >= 0
    if not mine.all():
        at, code = at[mine], code[mine]
    polls = pd.DataFrame(
        {"store": code, "ts_us": batch.ts[at], "active": batch.active[at], "counted": batch.counted[at]}
    )
    schedule = batch.schedule.subset(code_of_local, batch.schedule.zones[local])
    iv_store, iv_start, iv_end = clip_intervals(
        batch.intervals, complete_from_us - 3 * US_PER_DAY, now_us + 3 * US_PER_DAY
    )
    iv_code = code_of_local[iv_store]
    ok = iv_code >= 0
    return polls, schedule, (iv_code[ok], iv_start[ok], iv_end[ok])


class ReportCache:
    """A process's kept batches (see the module docstring), at most ``max_polls`` polls in all.

    ``lock`` is held by the report using them: reports of one process take turns on the cache.
    """

    def __init__(self, max_polls: int, batch_stores: int):
        self.max_polls = max_polls
        self.batch_stores = batch_stores
        self.lock = threading.Lock()
        self.url: str | None = None
        self.batches: list[Batch] = []
        self.counts = {"built": 0, "refreshed": 0, "reused": 0}  # batches, since start (tests, logs)

    def kept(self, url: str) -> list[Batch]:
        return self.batches if self.url == url else []

    def keep(self, url: str, batches: list[Batch]) -> None:
        if sum(b.polls for b in batches) <= self.max_polls:
            self.url, self.batches = url, batches
        else:
            self.url, self.batches = None, []


_caches: dict[tuple[int, int], ReportCache] = {}
_caches_lock = threading.Lock()


def process_cache(max_polls: int, batch_stores: int) -> ReportCache:
    """This process's report cache for these settings (created on first use)."""
    with _caches_lock:
        return _caches.setdefault((max_polls, batch_stores), ReportCache(max_polls, batch_stores))
