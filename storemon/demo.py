"""Demo / benchmark data generator for storemon.

Writes three CSV files shaped like the real feeds (see docs/data-formats.md):

* ``store_status.csv`` -- ``store_id,status,timestamp_utc``; about one poll per store
  per hour with jitter and missed polls, outages as runs, rows in rough time order,
  timestamps in the real feed's format (``2023-01-25 12:09:39.388884 UTC``; trailing
  zeros of the fraction are dropped as the real export does, keeping 1-6 digits).
* ``menu_hours.csv`` -- ``store_id,day,start_time_local,end_time_local``; a mix of
  single intervals, lunch/dinner splits, overnight intervals (end < start), full days,
  closed days and stores with no rows at all (open 24x7).
* ``timezones.csv`` -- ``store_id,timezone_str``; mostly US zones, a few others
  (incl. 30/45-minute offsets), some stores without a row and exactly one row with an
  unknown zone name (on purpose, so the default zone is exercised; ingest says so).

Everything is vectorised with numpy; the full default scale (14,000 stores x 8 days,
~1.85M polls) is generated in a few seconds.  Output is deterministic for a given
``(stores, days, seed, end)``.

Usage::

    python -m storemon.demo OUT_DIR [--stores N] [--days D] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DemoSummary", "generate_demo_data", "DEFAULT_END", "read_stamp", "write_stamp", "is_complete"]

DEFAULT_END = datetime(2023, 1, 25, 18, 13, 22, 479220, tzinfo=UTC)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_S
_US_PER_DAY = 86400 * _US_PER_S

STATUS_HEADER = "store_id,status,timestamp_utc"
HOURS_HEADER = "store_id,day,start_time_local,end_time_local"
TIMEZONES_HEADER = "store_id,timezone_str"

UNKNOWN_ZONE = "Mars/Olympus_Mons"  # on purpose: a name no zone database knows shows the default zone

# The parameters a demo folder was generated with (`flask demo-data` writes it), so that it is
# regenerated when they change and `flask reset` knows the folder is generated data.
STAMP_NAME = "demo.json"
FILE_NAMES = ("store_status.csv", "menu_hours.csv", "timezones.csv")

# (zone, weight) -- weights loosely follow the real feed, plus a few non-US zones,
# including 30- and 45-minute offsets.
_ZONES: tuple[tuple[str, float], ...] = (
    ("America/New_York", 0.570),
    ("America/Los_Angeles", 0.225),
    ("America/Chicago", 0.110),
    ("America/Phoenix", 0.031),
    ("America/Denver", 0.012),
    ("America/Detroit", 0.006),
    ("America/Indiana/Indianapolis", 0.002),
    ("America/Boise", 0.002),
    ("America/Anchorage", 0.001),
    ("Pacific/Honolulu", 0.002),
    ("America/Edmonton", 0.001),
    ("America/Puerto_Rico", 0.001),
    ("Europe/London", 0.001),
    ("Asia/Beirut", 0.0005),
    ("Asia/Kolkata", 0.001),
    ("Asia/Kathmandu", 0.0005),
    ("Australia/Adelaide", 0.0005),
)

# Business-hours categories and their share of stores.
_CAT_NONE, _CAT_FULL, _CAT_STD, _CAT_SPLIT, _CAT_NIGHT, _CAT_LATE = range(6)
_CAT_FRACTIONS = (0.07, 0.14, 0.56, 0.10, 0.08, 0.05)

_NO_TZ_FRACTION = 0.04  # stores with no time-zone row
_MOSTLY_DOWN_FRACTION = 0.005  # stores that are inactive most of the time
_KEEP_BETA = (5.5, 2.5)  # per-store probability of an hourly poll being kept (mean 0.6875)


@dataclass
class DemoSummary:
    out_dir: Path
    stores: int
    polls: int  # rows written to store_status.csv
    hours_rows: int  # rows written to menu_hours.csv
    timezone_rows: int  # rows written to timezones.csv
    start: datetime  # first poll instant (UTC, tz-aware)
    end: datetime  # last poll instant (UTC, tz-aware)


def read_stamp(out_dir) -> dict | None:
    """The parameters recorded in ``out_dir`` by :func:`write_stamp`; None if none (or unreadable)."""
    try:
        return json.loads((Path(out_dir) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(out_dir, parameters: dict) -> None:
    (Path(out_dir) / STAMP_NAME).write_text(json.dumps(parameters, indent=1) + "\n", encoding="utf-8")


def is_complete(out_dir) -> bool:
    """Do the three feed files exist in ``out_dir``?"""
    return all((Path(out_dir) / name).is_file() for name in FILE_NAMES)


# --------------------------------------------------------------------------- helpers


def _to_epoch_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt.astimezone(UTC) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _US_PER_S + delta.microseconds


def _from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _exact_counts(n: int, fractions, min_each: int = 0) -> np.ndarray:
    """Split n into len(fractions) integer counts (largest remainder), each >= min_each
    when n allows it."""
    fr = np.asarray(fractions, dtype=float)
    fr = fr / fr.sum()
    raw = fr * n
    counts = np.floor(raw).astype(np.int64)
    rem = n - int(counts.sum())
    if rem > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:rem]] += 1
    if min_each and n >= min_each * len(counts):
        for i in range(len(counts)):
            while counts[i] < min_each:
                j = int(np.argmax(counts))
                counts[j] -= 1
                counts[i] += 1
    return counts


def _shuffled_labels(rng: np.random.Generator, n: int, fractions, min_each: int = 0) -> np.ndarray:
    counts = _exact_counts(n, fractions, min_each)
    labels = np.repeat(np.arange(len(counts)), counts)
    return rng.permutation(labels)


def _make_store_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unique ids as str: mostly 16-19 digit positive integers (uniform below 2**63,
    like the real feed), plus '007' and a couple of UUIDs."""
    nums = rng.integers(1, np.iinfo(np.int64).max, size=n, dtype=np.int64)
    while True:
        _, first = np.unique(nums, return_index=True)
        if len(first) == n:
            break
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        nums[dup] = rng.integers(1, np.iinfo(np.int64).max, size=int(dup.sum()), dtype=np.int64)
    ids = nums.astype(str).astype(object)
    specials = ["007", str(uuid.UUID(bytes=rng.bytes(16), version=4)), str(uuid.UUID(bytes=rng.bytes(16), version=4))][
        :n
    ]
    pos = rng.choice(n, size=len(specials), replace=False)
    for p, s in zip(pos, specials):
        ids[p] = s
    return ids.astype(str)


def _hhmmss(seconds: np.ndarray) -> np.ndarray:
    """Format seconds-of-day as HH:MM:SS (via the few unique values)."""
    uniq, inv = np.unique(seconds, return_inverse=True)
    txt = np.array([f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}" for s in uniq.tolist()], dtype=object)
    return txt[inv.reshape(-1)]


# --------------------------------------------------------------------------- polls


def _simulate_polls(rng: np.random.Generator, n_stores: int, start_us: int, end_us: int):
    """Return (store_idx int32, active bool, ts_us int64), rows in rough time order."""
    anchor = start_us - start_us % _US_PER_HOUR  # hour boundary at/before start
    n_slots = int((end_us - anchor) // _US_PER_HOUR) + 2  # covers [anchor, end + 1h)

    # per-store poll phase within the hour, keep probability and outage dynamics
    phase = rng.integers(0, _US_PER_HOUR, size=n_stores, dtype=np.int64)
    p_keep = rng.beta(*_KEEP_BETA, size=n_stores)
    p_keep[rng.random(n_stores) < 0.01] = 1.0  # a few perfectly polled stores

    steady = rng.random(n_stores) < 0.4  # rarely any outage
    p_down = np.where(
        steady, rng.uniform(0.001, 0.008, n_stores), rng.uniform(0.01, 0.06, n_stores)
    )  # P(active -> inactive) per hour
    p_up = rng.uniform(0.25, 0.7, n_stores)  # P(inactive -> active) per hour
    n_down = int(round(_MOSTLY_DOWN_FRACTION * n_stores))
    if n_stores >= 20:
        n_down = max(n_down, 1)
    if n_down:
        down_idx = rng.choice(n_stores, size=n_down, replace=False)
        p_down[down_idx] = rng.uniform(0.2, 0.5, n_down)
        p_up[down_idx] = rng.uniform(0.01, 0.05, n_down)

    # two-state Markov chain per store, vectorised over stores (loop over hours only)
    state_active = np.empty((n_stores, n_slots), dtype=bool)
    cur = rng.random(n_stores) >= p_down / (p_down + p_up)  # stationary start
    u = rng.random((n_slots, n_stores), dtype=np.float32)
    pd32, pu32 = p_down.astype(np.float32), p_up.astype(np.float32)
    for k in range(n_slots):
        state_active[:, k] = cur
        cur = np.where(cur, u[k] >= pd32, u[k] < pu32)
    del u

    # slot instants: anchor + k hours + phase + jitter (+-5 min, micro-second resolution)
    jitter = rng.integers(-300 * _US_PER_S, 300 * _US_PER_S, size=(n_stores, n_slots), dtype=np.int64)
    ts = jitter
    ts += phase[:, None]
    ts += (np.arange(n_slots, dtype=np.int64) * _US_PER_HOUR + anchor)[None, :]
    keep = rng.random((n_stores, n_slots), dtype=np.float32) < p_keep.astype(np.float32)[:, None]
    keep &= (ts >= start_us) & (ts <= end_us)

    store_idx, slot = np.nonzero(keep)
    ts_us = ts[store_idx, slot]
    active = state_active[store_idx, slot]
    store_idx = store_idx.astype(np.int32)
    del ts, keep, state_active, slot

    if len(ts_us):
        # the latest poll is the feed's "now": pin it exactly to `end`
        last = int(np.argmax(ts_us))
        ts_us[last] = end_us

    # rough time order: sort by time plus a small random delay (polls of one store are
    # >= 50 min apart, so a store's own polls stay in order)
    key = ts_us + rng.integers(0, 180 * _US_PER_S, size=len(ts_us), dtype=np.int64)
    order = np.argsort(key, kind="stable")
    del key
    return store_idx[order], active[order], ts_us[order]


def _write_polls(
    path: Path, ids: np.ndarray, store_idx: np.ndarray, active: np.ndarray, ts_us: np.ndarray, chunk: int = 65_536
) -> None:
    """Write store_status.csv by assembling fixed-width byte rows (NUL padded) in numpy
    and dropping the padding -- much faster than pandas/strftime for millions of rows."""
    # One function on purpose: the rows are assembled as bytes in one vectorised pass.
    id_bytes = np.char.encode(ids.astype(str), "ascii")  # dtype S<w>, NUL padded
    id_w = id_bytes.dtype.itemsize
    id_mat = np.frombuffer(id_bytes.tobytes(), dtype=np.uint8).reshape(len(ids), id_w)
    status_mat = np.frombuffer(b"inactive" + b"active\0\0", dtype=np.uint8).reshape(2, 8)

    # column layout of one row
    c_id = 0
    c_st = c_id + id_w + 1  # after ','
    c_date = c_st + 8 + 1  # 'YYYY-MM-DD '
    c_time = c_date + 11  # 'HH:MM:SS'
    c_dot = c_time + 8
    c_frac = c_dot + 1  # 6 digits
    c_utc = c_frac + 6  # ' UTC'
    c_nl = c_utc + 4
    width = c_nl + 1

    pow10 = np.array([100_000, 10_000, 1_000, 100, 10, 1], dtype=np.int64)
    zero = ord("0")

    with open(path, "wb") as fh:
        fh.write(STATUS_HEADER.encode() + b"\n")
        for lo in range(0, len(ts_us), chunk):
            t = ts_us[lo : lo + chunk]
            s = store_idx[lo : lo + chunk]
            n = len(t)
            m = np.zeros((n, width), dtype=np.uint8)
            m[:, c_id : c_id + id_w] = id_mat[s]
            m[:, c_st - 1] = ord(",")
            m[:, c_st : c_st + 8] = status_mat[active[lo : lo + chunk].astype(np.intp)]
            m[:, c_date - 1] = ord(",")

            day = t // _US_PER_DAY
            tod = t - day * _US_PER_DAY
            uday, inv = np.unique(day, return_inverse=True)
            dates = np.array([(str(np.datetime64(int(d), "D")) + " ").encode() for d in uday.tolist()], dtype="S11")
            m[:, c_date : c_date + 11] = np.frombuffer(dates.tobytes(), dtype=np.uint8).reshape(len(uday), 11)[
                inv.reshape(-1)
            ]

            secs = tod // _US_PER_S
            micro = tod - secs * _US_PER_S
            hh, rest = np.divmod(secs, 3600)
            mi, ss = np.divmod(rest, 60)
            for off, v in ((0, hh), (3, mi), (6, ss)):
                m[:, c_time + off] = v // 10 + zero
                m[:, c_time + off + 1] = v % 10 + zero
            m[:, c_time + 2] = ord(":")
            m[:, c_time + 5] = ord(":")

            digits = (micro[:, None] // pow10[None, :]) % 10
            # the real export drops trailing zeros of the fraction; we always keep at least
            # one digit (".0") so every row has the same shape for strptime-style parsers
            keep = np.logical_or.accumulate((digits != 0)[:, ::-1], axis=1)[:, ::-1]
            keep[:, 0] = True
            m[:, c_frac : c_frac + 6] = np.where(keep, digits + zero, 0)
            m[:, c_dot] = ord(".")
            m[:, c_utc : c_utc + 4] = np.frombuffer(b" UTC", dtype=np.uint8)
            m[:, c_nl] = ord("\n")

            flat = m.reshape(-1)
            fh.write(flat[flat != 0].tobytes())


# --------------------------------------------------------------------------- business hours


def _make_hours(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Business hours as (store_idx, day, start_s, end_s) rows."""
    # One function on purpose: each store's kind of week (24x7, overnight, split...) is one case here.
    H = 3600
    cat = _shuffled_labels(rng, n, _CAT_FRACTIONS, min_each=1)
    start = np.zeros((n, 7, 2), dtype=np.int64)
    end = np.zeros((n, 7, 2), dtype=np.int64)
    valid = np.zeros((n, 7, 2), dtype=bool)

    def pick(choices, weights=None):
        c = np.asarray(choices, dtype=np.int64)
        w = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        return c[rng.choice(len(c), size=n, p=w)]

    # full days: 00:00:00-23:59:59 or 00:00:00-23:59:00
    full_end = pick([86399, 86340])
    # standard single interval, with weekend variants
    std_open = pick(
        [6 * H, 7 * H, 8 * H, 9 * H, 10 * H, 10 * H + 1800, 11 * H, 11 * H + 1800], [8, 5, 4, 10, 12, 4, 25, 4]
    )
    std_close = pick(
        [20 * H, 20 * H + 1800, 21 * H, 21 * H + 1800, 22 * H, 22 * H + 1800, 23 * H, 23 * H + 1800, 20 * H + 2700],
        [6, 4, 10, 5, 12, 3, 8, 3, 2],
    )
    late_weekend = rng.random(n) < 0.3  # Fri/Sat close an hour later (may pass midnight)
    late_sunday = rng.random(n) < 0.3  # Sunday opens an hour later
    # lunch / dinner
    lunch_open = pick([11 * H, 11 * H + 1800])
    lunch_close = pick([14 * H, 14 * H + 1800, 15 * H])
    dinner_open = pick([17 * H, 17 * H + 1800, 18 * H])
    dinner_close = pick([21 * H, 21 * H + 1800, 22 * H])
    # overnight (end < start)
    night_open = pick([17 * H, 18 * H, 19 * H, 20 * H])
    night_close = pick([1 * H, 2 * H, 3 * H])
    # daytime opening, closing after midnight
    late_open = pick([10 * H, 11 * H])
    late_close = pick([1 * H, 2 * H])

    for c, (s0, e0) in {
        _CAT_FULL: (np.zeros(n, np.int64), full_end),
        _CAT_STD: (std_open, std_close),
        _CAT_NIGHT: (night_open, night_close),
        _CAT_LATE: (late_open, late_close),
    }.items():
        sel = cat == c
        start[sel, :, 0] = s0[sel, None]
        end[sel, :, 0] = e0[sel, None]
        valid[sel, :, 0] = True
    sel = cat == _CAT_SPLIT
    start[sel, :, 0], end[sel, :, 0] = lunch_open[sel, None], lunch_close[sel, None]
    start[sel, :, 1], end[sel, :, 1] = dinner_open[sel, None], dinner_close[sel, None]
    valid[sel, :, :] = True

    std = cat == _CAT_STD
    wk = std & late_weekend
    for d in (4, 5):
        end[wk, d, 0] = (end[wk, d, 0] + H) % 86400
    sun = std & late_sunday
    start[sun, 6, 0] += H

    # closed days among stores with rows: some close one day, a few the whole weekend
    has_rows = cat != _CAT_NONE
    r = rng.random(n)
    one_day = has_rows & (r < 0.15)
    weekend = has_rows & (r >= 0.15) & (r < 0.20)
    closed_day = np.where(rng.random(n) < 0.6, 0, 6)  # Monday or Sunday
    valid[one_day, closed_day[one_day], :] = False
    valid[weekend, 5, :] = False
    valid[weekend, 6, :] = False

    s_idx, d_idx, k_idx = np.nonzero(valid)
    # group rows by store (stores in random order), days shuffled within a store
    store_rank = rng.permutation(n)
    order = np.lexsort((k_idx, rng.random(len(s_idx)), store_rank[s_idx]))
    s_idx, d_idx, k_idx = s_idx[order], d_idx[order], k_idx[order]
    return pd.DataFrame(
        {"store_idx": s_idx, "day": d_idx, "start_s": start[s_idx, d_idx, k_idx], "end_s": end[s_idx, d_idx, k_idx]}
    )


# --------------------------------------------------------------------------- time zones


def _make_timezones(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (store_idx, zone names) for stores that have a time-zone row."""
    n_missing = int(round(_NO_TZ_FRACTION * n))
    if n >= 2:
        n_missing = max(n_missing, 1)
    with_tz = np.sort(rng.permutation(n)[: n - n_missing])
    m = len(with_tz)
    names = np.array([z for z, _ in _ZONES], dtype=object)
    w = np.array([w for _, w in _ZONES])
    zone = rng.choice(len(names), size=m, p=w / w.sum())
    if m >= 10 * len(names):
        # at scale make sure every zone (incl. the 30/45-minute offsets) appears
        zone[rng.choice(m, size=len(names), replace=False)] = np.arange(len(names))
    tz = names[zone]
    if m:
        tz[int(rng.integers(m))] = UNKNOWN_ZONE  # exactly one unknown zone name
    order = rng.permutation(m)  # the real file is unordered
    return with_tz[order], tz[order]


# --------------------------------------------------------------------------- public API


def generate_demo_data(
    out_dir, stores: int = 14000, days: int = 8, seed: int = 0, end: datetime | None = None
) -> DemoSummary:
    """Generate a demo data set (store_status.csv, menu_hours.csv, timezones.csv) in
    ``out_dir``.  Polls cover ``[end - days, end]``; ``end`` defaults to
    2023-01-25 18:13:22.479220 UTC (naive datetimes are taken as UTC)."""
    stores = int(stores)
    if stores < 1:
        raise ValueError("stores must be >= 1")
    if not days or days <= 0:
        raise ValueError("days must be > 0")
    end_us = _to_epoch_us(DEFAULT_END if end is None else end)
    start_us = end_us - int(round(days * _US_PER_DAY))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    ids = _make_store_ids(rng, stores)

    # time zones
    tz_idx, tz_names = _make_timezones(rng, stores)
    pd.DataFrame({"store_id": ids[tz_idx], "timezone_str": tz_names}).to_csv(
        out / "timezones.csv", index=False, lineterminator="\n"
    )

    # business hours
    hours = _make_hours(rng, stores)
    pd.DataFrame(
        {
            "store_id": ids[hours["store_idx"].to_numpy()],
            "day": hours["day"].to_numpy(),
            "start_time_local": _hhmmss(hours["start_s"].to_numpy()),
            "end_time_local": _hhmmss(hours["end_s"].to_numpy()),
        }
    ).to_csv(out / "menu_hours.csv", index=False, lineterminator="\n")

    # polls
    store_idx, active, ts_us = _simulate_polls(rng, stores, start_us, end_us)
    _write_polls(out / "store_status.csv", ids, store_idx, active, ts_us)

    if len(ts_us):
        first, last = int(ts_us.min()), int(ts_us.max())
    else:  # pragma: no cover - only with absurdly short spans
        first = last = end_us
    return DemoSummary(
        out_dir=out,
        stores=stores,
        polls=int(len(ts_us)),
        hours_rows=int(len(hours)),
        timezone_rows=int(len(tz_idx)),
        start=_from_epoch_us(first),
        end=_from_epoch_us(last),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m storemon.demo", description="Generate storemon demo/benchmark CSVs.")
    ap.add_argument("out_dir")
    ap.add_argument("--stores", type=int, default=14000)
    ap.add_argument("--days", type=float, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--end", default=None, help=f"last poll instant (ISO 8601, UTC if naive); default {DEFAULT_END}")
    a = ap.parse_args(argv)
    end = None
    if a.end:
        end = datetime.fromisoformat(a.end.replace(" UTC", "").replace("Z", "+00:00"))
    s = generate_demo_data(a.out_dir, stores=a.stores, days=a.days, seed=a.seed, end=end)
    print(
        f"{s.out_dir}: {s.stores} stores, {s.polls} polls ({s.start} .. {s.end}), "
        f"{s.hours_rows} business-hours rows, {s.timezone_rows} time-zone rows"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
