"""Special hours: the fourth feed's table, ``special_hours`` -- its writer, its reads, and the
removal of one store's date (docs/data-formats.md).

A row says that on one local calendar date a store is open ``[start, end)`` local wall-clock
time, or closed. Dates are integers, days since 1970-01-01; start and end are seconds after local
midnight as written (0..86400). In the table a closed row has NULL start and end; everywhere
else -- the parsed rows the writer takes, the frames the reads give -- it has
:data:`~storemon.parse.CLOSED` (-1) for both.

* :class:`SpecialHoursWriter`: a file replaces, for every (store, date) it names, that pair's
  earlier rows; other dates are kept.
* :func:`special_by_key` -- what a report reads, by store key, for the stores that have polls;
  :func:`special_of_store` -- one store's rows, with their source file.
* :func:`remove_special` -- one store's rows of one date removed (its weekly hours apply again).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parse import CLOSED
from .packing import unpack
from .reads import packed_by_key
from .sql import frame, placeholders
from .writers import FeedWriter


class SpecialHoursWriter(FeedWriter):
    """Replaces, for every (store, date) the file names, that pair's special-hours rows by the
    file's; the same row given twice is kept once. ``source`` (the file's name as the ledger
    shows it) is stored with each row."""

    kind = "special_hours"

    def __init__(self) -> None:
        self.replaced: set[tuple[str, int]] = set()  # (store, date) pairs whose earlier rows are gone
        self.again: set[tuple[str, int]] = set()  # pairs named in more than one chunk
        self.chunks = 0
        self.empty = False  # special_hours was empty when the file began

    def write(self, conn, rows) -> None:
        rows = rows.drop_duplicates()
        self.chunks += 1
        if self.chunks == 1:  # an empty table (a first load) has nothing to replace
            self.empty = conn.exec_driver_sql("SELECT NOT EXISTS (SELECT 1 FROM special_hours)").scalar()
        pairs = rows[["store_id", "date"]].drop_duplicates()
        named = list(zip(pairs["store_id"].tolist(), pairs["date"].tolist()))
        fresh = [pair for pair in named if pair not in self.replaced]
        if len(fresh) < len(named):  # pairs named in an earlier chunk too: may repeat a row
            self.again.update(pair for pair in named if pair in self.replaced)
        if fresh and not self.empty:
            mark = placeholders(conn, 1)
            conn.exec_driver_sql(f"DELETE FROM special_hours WHERE store_id = {mark} AND local_date = {mark}", fresh)
        self.replaced.update(fresh)
        self.rows_stored += len(rows)
        start = rows["start_s"].to_numpy(np.int64)
        end = rows["end_s"].to_numpy(np.int64)
        closed = (start == CLOSED).tolist()
        conn.exec_driver_sql(
            "INSERT INTO special_hours (store_id, local_date, start_s, end_s, source) "
            f"VALUES ({placeholders(conn, 5)})",
            [
                (store_id, date, None if shut else a, None if shut else b, self.source)
                for store_id, date, a, b, shut in zip(
                    rows["store_id"].tolist(), rows["date"].tolist(), start.tolist(), end.tolist(), closed
                )
            ],
        )
        return None

    def finish(self, conn) -> None:
        # The same row given twice in one file (in different chunks) is kept once. Only pairs
        # named in more than one chunk can hold such a repeat (each chunk was free of them).
        if self.again:
            mark = placeholders(conn, 1)
            result = conn.exec_driver_sql(
                f"DELETE FROM special_hours WHERE store_id = {mark} AND local_date = {mark} AND id NOT IN "
                f"(SELECT min(id) FROM special_hours WHERE store_id = {mark} AND local_date = {mark} "
                "GROUP BY start_s, end_s)",
                [(s, d, s, d) for s, d in sorted(self.again)],
            )
            self.rows_stored -= max(result.rowcount, 0)


# A row packed in one int64 for the bulk read: date << 36 | (start_s + 1) << 18 | (end_s + 1),
# the times shifted by one so that a closed row (NULL, read as -1) packs as 0.
_DATE_SHIFT, _TIME_BITS = 36, 18


def special_by_key(conn, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Special-hours rows of stores that have polls: store_key, date, start_s, end_s (int64; a
    closed date -1 and -1), by store_key, date, start and end (``keys``: only ``low <= store_key
    < high``), each row packed by the database (:func:`~storemon.storage.reads.packed_by_key`)."""
    packed_sql = (
        f"(CAST(h.local_date AS BIGINT) << {_DATE_SHIFT}) | (CAST(coalesce(h.start_s, -1) + 1 AS BIGINT) "
        f"<< {_TIME_BITS}) | (coalesce(h.end_s, -1) + 1)"
    )
    store_key, packed = packed_by_key(conn, "special_hours", packed_sql, keys)
    date, times = unpack(packed, _DATE_SHIFT)
    start_s, end_s = unpack(times, _TIME_BITS)
    found = pd.DataFrame({"store_key": store_key, "date": date, "start_s": start_s - 1, "end_s": end_s - 1})
    return found.sort_values(["store_key", "date", "start_s", "end_s"], ignore_index=True)


def special_of_store(conn, store_id: str) -> pd.DataFrame:
    """One store's special-hours rows as stored: date, start_s, end_s (int64; a closed date -1
    and -1) and source (the file that gave the row), by date, start and end."""
    found = frame(
        conn,
        "SELECT local_date, coalesce(start_s, -1) AS a, coalesce(end_s, -1) AS b, source FROM special_hours "
        f"WHERE store_id = {placeholders(conn, 1)} ORDER BY local_date, a, b",
        ["date", "start_s", "end_s", "source"],
        (store_id,),
    )
    return found.astype({"date": np.int64, "start_s": np.int64, "end_s": np.int64, "source": object})


def remove_special(conn, store_id: str, date: int) -> int:
    """Remove one store's special-hours rows of one date (days since 1970-01-01); returns how
    many rows were removed."""
    mark = placeholders(conn, 1)
    result = conn.exec_driver_sql(
        f"DELETE FROM special_hours WHERE store_id = {mark} AND local_date = {mark}", (store_id, int(date))
    )
    return max(result.rowcount, 0)
