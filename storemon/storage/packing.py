"""Several small integers in one int64, and lists of int64 as text: how bulk writes and reads
move one value per row, or per store, across the database boundary instead of a Python object per
field.

``pack(high, low, low_bits)`` is ``high << low_bits | low``; every packed value in storage is made
of such calls. The status writer packs ``(store key, time offset, status)`` to hand SQLite one
JSON array per write (:func:`json_ints`, unpacked by SQLite's ``json_each``) and keeps the file's
distinct ``(store key, time offset)`` packed in memory; the reads let the database pack each
batch's polls or hours into one comma-separated text, each store's after its key
(:func:`parse_marked`), and unpack it here.
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


def parse_marked(text: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A text of comma-separated numbers in which each store's numbers (all >= 0) follow its
    key as a negative mark, ``-1 - store_key`` -> ``(store key per number, the numbers)``, sorted
    by store (each store's numbers in the order given).

    The database writes the marks, so a whole batch of stores comes back as one text (one Python
    object) and numpy parses it in one call; each number's store is the mark before it."""
    if not text:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    try:
        numbers = np.fromstring(text, dtype=np.int64, sep=",")  # text mode: not deprecated
    except ValueError:
        numbers = np.empty(0, np.int64)
    if len(numbers) != text.count(",") + 1 or numbers[0] >= 0:
        raise RuntimeError("storage: numbers aggregated by the database did not parse as expected")
    mark = numbers < 0
    keys = (-1 - numbers[mark])[np.cumsum(mark)[~mark] - 1]
    numbers = numbers[~mark]
    if len(keys) > 1 and np.any(keys[1:] < keys[:-1]):  # the stores came in another order
        order = np.argsort(keys, kind="stable")
        keys, numbers = keys[order], numbers[order]
    return keys, numbers
