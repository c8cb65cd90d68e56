"""Several small integers in one int64, and lists of int64 as text: how bulk writes and reads
move one value per row, or per store, across the database boundary instead of a Python object per
field.

``pack(high, low, low_bits)`` is ``high << low_bits | low``; every packed value in storage is made
of such calls. The status writer packs ``(store key, time offset, status)`` to hand SQLite one
JSON array per write (:func:`json_ints`, unpacked by SQLite's ``json_each``) and keeps the file's
distinct ``(store key, time offset)`` packed in memory; the reads let the database pack each
store's polls or hours into one comma-separated text (:func:`parse_per_store`) and unpack it here.
Time offsets are microseconds after a base instant.
"""

from __future__ import annotations

import numpy as np


def pack(high: np.ndarray, low: np.ndarray, low_bits: int) -> np.ndarray:
    """``high << low_bits | low`` as int64: exact while ``0 <= low < 2**low_bits`` and
    ``0 <= high < 2**(63 - low_bits)`` (the caller makes sure of both)."""
    return (high.astype(np.int64, copy=False) << low_bits) | low


def unpack(packed: np.ndarray, low_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(high, low)`` of values made by :func:`pack` (or by the same expression in SQL)."""
    return packed >> low_bits, packed & ((1 << low_bits) - 1)


def time_bits(store_keys: np.ndarray) -> int:
    """The bits left for a time offset beside store keys up to ``store_keys.max()`` in 62 bits
    (an int64 keeps one bit more, for a status): 42 for keys below 2**20, about 50 days in us."""
    return 62 - (max(int(store_keys.max()).bit_length(), 1) if len(store_keys) else 1)


def json_ints(values: np.ndarray) -> str:
    """Integers as one JSON array (text), for ``json_each`` to unpack inside SQLite."""
    return "[" + ",".join(map(str, values.tolist())) + "]"


def parse_per_store(rows: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(store_key, comma-separated numbers) rows -> (store key per number, the numbers)."""
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    texts = [row[1] for row in rows]
    counts = np.fromiter((t.count(",") + 1 for t in texts), dtype=np.int64, count=len(texts))
    packed = np.fromstring(",".join(texts), dtype=np.int64, sep=",")  # text mode: not deprecated
    if len(packed) != counts.sum():
        raise RuntimeError("storage: numbers aggregated by the database did not parse as expected")
    return np.repeat(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)), counts), packed
