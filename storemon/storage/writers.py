"""The feed writers: one class per feed, called by :mod:`storemon.ingest` with a file's parsed
rows chunk by chunk, inside the file's one transaction.

* :class:`PollWriter` (status): upserts polls, creating stores as they come. Its per-file
  bookkeeping is two small classes: :class:`StoreKeys` (each store id's key, and per store key its
  spans and latest polls) and :class:`DistinctKeys` (how many distinct polls the file holds).
  The writes themselves are in :mod:`storemon.storage.polls`.
* :class:`HoursWriter`: replaces each named store's business hours by the file's rows.
* :class:`TimezoneWriter`: sets each store's time zone.

The special-hours writer is in :mod:`storemon.storage.special`, with that feed's reads.

Instants are microseconds since the epoch, UTC; business hours are seconds after local midnight.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .packing import json_ints, pack, time_bits, unpack
from .polls import (
    LOAD_TABLE,
    POLL_CONFLICT,
    begin_first_load,
    copy_first_load,
    copy_upsert_polls,
    end_first_load,
    fold_recent_polls,
    insert_polls,
    insert_recent_polls,
    key_first_load,
    recent_limit,
    update_polls,
)
from .sql import dbapi_cursor, frame, min_max_names, placeholders

FLUSH_ROWS = 500_000  # parsed polls held before they are written in key order (17 bytes each: 9 MB)


class FeedWriter:
    """Writes one feed's parsed rows; one instance per file (it may keep per-file state)."""

    kind = ""
    rows_stored = 0  # distinct rows the file stored (known after finish)
    span: tuple[int, int] | None = None  # polls: earliest and latest instant written (the ledger's)
    source = ""  # the file's name as the ingest ledger shows it (special hours store it with each row)

    @staticmethod
    def for_kind(kind: str, source: str = "") -> FeedWriter:
        """A new writer for the feed ``kind`` ("status", "hours", "timezones" or "special_hours")
        of the file named ``source``."""
        from .special import SpecialHoursWriter  # (special.py builds on this module)

        writers = {
            "status": PollWriter,
            "hours": HoursWriter,
            "timezones": TimezoneWriter,
            "special_hours": SpecialHoursWriter,
        }
        writer = writers[kind]()
        writer.source = source
        return writer

    def write(self, conn, rows) -> int | None:
        """Store a chunk of rows; return how many rows changed, or None when not counted."""
        raise NotImplementedError

    def finish(self, conn) -> int | None:
        """Called once after the last chunk, inside the same transaction; returns how many rows
        changed then (as :meth:`write`), or None."""


class PollWriter(FeedWriter):
    """Upserts polls keyed by (store, ts_us); the later row for a key wins.

    New store ids get a row (and a ``store_key``) in ``stores`` first. Parsed chunks are held
    (as three numeric columns, about 17 bytes a row) until :data:`FLUSH_ROWS` rows have come,
    then sorted by the primary key (a stable sort, so of two rows for one key the later is still
    written last) and written: writing in key order keeps B-tree work local, and a feed ordered
    by time otherwise sends every chunk across every store's pages -- with the file's size, the
    number of chunks and the pages each touches both grow. Only keys that are new or change a
    status are counted, so re-ingesting an unchanged file reports 0.

    A small write -- the hourly feed -- goes to ``polls_recent`` (see
    :class:`~storemon.models.RecentPoll`): a poll later than every poll stored for its store is
    inserted there; any other poll updates its key where it is (``polls_recent`` or ``polls``) or
    is added to ``polls``, so a key is never in both tables. A file that would take
    ``polls_recent`` past :func:`~storemon.storage.polls.recent_limit` first folds it into
    ``polls``; a file bigger than the limit itself or than one write (:data:`FLUSH_ROWS`: a first
    load, a back-fill) goes to ``polls``, after a fold. The same on both databases; the writes
    themselves differ (:mod:`~storemon.storage.polls`): SQLite unpacks JSON arrays of packed
    integers, PostgreSQL takes binary COPY -- into a table built beside an empty ``polls`` that
    then takes its place (a first load), else through a temporary table and an upsert.
    """

    kind = "status"

    def __init__(self) -> None:
        self.store_keys = StoreKeys()  # store ids, keys, spans and latest polls, per store key
        self.distinct = DistinctKeys()  # the file's distinct (store, timestamp) keys
        self.pending: list[dict[str, np.ndarray]] = []  # parsed chunks not written yet
        self.pending_rows = 0
        self.flushed = False  # rows were written already (the file is bigger than one write)
        # PostgreSQL, at the file's first write to polls: "copy" (polls was empty: a first load,
        # copied into a table built beside it), "upsert" (the same, keyed: a key may repeat), ""
        # (polls held rows: upserts)
        self.load: str | None = None
        self.recent: int | None = None  # rows in polls_recent (counted at the first write) ...
        self.recent_limit = 0  # ... and how many it may hold
        self.to_polls = False  # this file's rows go to polls (it was too big for polls_recent)
        self.folded = False  # this file folded polls_recent into polls first

    @property
    def stores(self) -> int:
        """Distinct stores among the rows written."""
        return self.store_keys.stores

    def known_ids(self, conn) -> pd.Index:
        """The store ids already in the database (loaded once per file)."""
        return self.store_keys.known_ids(conn)

    def write(self, conn, rows) -> int:
        column = rows["store_id"]
        if isinstance(column.dtype, pd.CategoricalDtype):  # the parser's codes (ids of bad rows unused)
            codes, store_ids = column.cat.codes.to_numpy(np.int64), column.cat.categories
            used = np.bincount(codes, minlength=len(store_ids)) > 0
            if not used.all():
                codes, store_ids = (np.cumsum(used) - 1)[codes], store_ids[used]
        else:
            codes, store_ids = pd.factorize(column)
        ts = rows["ts_us"].to_numpy()
        span = pd.DataFrame({"code": codes, "ts": ts}).groupby("code")["ts"].agg(["min", "max"])
        keys = self.store_keys.record(conn, store_ids, span["min"].to_numpy(np.int64), span["max"].to_numpy(np.int64))
        if len(ts):
            low, high = int(ts.min()), int(ts.max())
            self.span = (low, high) if self.span is None else (min(self.span[0], low), max(self.span[1], high))
        self.pending.append({"store_key": keys[codes], "ts_us": ts, "active": rows["active"].to_numpy(bool)})
        self.pending_rows += len(ts)
        return self._flush(conn, final=False) if self.pending_rows >= FLUSH_ROWS else 0

    def _flush(self, conn, final: bool) -> int:
        """Write the held rows in key order (``final``: the file's last write); return how many
        keys are new or changed."""
        if not self.pending:
            return 0
        keys, ts, active = (np.concatenate([p[c] for p in self.pending]) for c in ("store_key", "ts_us", "active"))
        self.pending, self.pending_rows = [], 0
        order = np.lexsort((ts, keys))  # stable: of two rows for one key, the later stays later
        keys, ts, active = keys[order], ts[order], active[order]
        del order
        last = np.r_[(keys[1:] != keys[:-1]) | (ts[1:] != ts[:-1]), True]
        if not last.all():  # the later row for a key wins
            keys, ts, active = keys[last], ts[last], active[last]
        ends = np.r_[keys[1:] != keys[:-1], True]  # each store's last row
        file_last = self.store_keys.file_last
        overlaps = bool((ts <= file_last[keys]).any())  # a key may repeat one of an earlier write
        self.distinct.add(keys, ts, overlaps=overlaps)
        file_last[keys[ends]] = np.maximum(file_last[keys[ends]], ts[ends])
        changed = self._write(conn, keys, ts, active, whole_file=final and not self.flushed, overlaps=overlaps)
        self.flushed = True
        stored_last = self.store_keys.stored_last
        stored_last[keys[ends]] = np.maximum(stored_last[keys[ends]], ts[ends])
        return changed

    def _write(
        self, conn, keys: np.ndarray, ts: np.ndarray, active: np.ndarray, whole_file: bool, overlaps: bool
    ) -> int:
        """Write sorted, distinct polls to ``polls_recent`` or ``polls`` (see the class docstring).
        ``whole_file``: these are all the file's polls (it came in one write); ``overlaps``: a
        key may repeat one of an earlier write of the file."""
        if self.recent is None:
            self.recent = int(conn.exec_driver_sql("SELECT count(*) FROM polls_recent").scalar())
            self.recent_limit = recent_limit(self.store_keys.known)
        if not self.to_polls and (not whole_file or self.recent + len(ts) > self.recent_limit):
            if self.recent:
                fold_recent_polls(conn)
                self.folded = True
            self.recent = 0
            self.to_polls = not whole_file or len(ts) > self.recent_limit
        if self.to_polls:
            if conn.dialect.name != "postgresql":
                return insert_polls(conn, keys, ts, active, POLL_CONFLICT)
            return self._write_postgresql(conn, keys, ts, active, overlaps)
        fresh = ts > self.store_keys.stored_last[keys]  # later than any poll of its store: in neither table
        changed = insert_recent_polls(conn, keys[fresh], ts[fresh], active[fresh])
        self.recent += changed
        if not fresh.all():
            old = ~fresh
            changed += update_polls(conn, keys[old], ts[old], active[old])
        return changed

    def _write_postgresql(self, conn, keys: np.ndarray, ts: np.ndarray, active: np.ndarray, overlaps: bool) -> int:
        """Polls bound for ``polls`` on PostgreSQL: into an empty ``polls`` (a first load) by
        COPY into a table built beside it (:data:`~storemon.storage.polls.LOAD_TABLE`), keyed
        before a write that may repeat a key; otherwise upserted."""
        if self.load is None:  # decided once per file, at its first write to polls
            self.load = "copy" if conn.exec_driver_sql("SELECT NOT EXISTS (SELECT 1 FROM polls)").scalar() else ""
            if self.load:
                begin_first_load(conn)
        if self.load == "copy" and overlaps:
            key_first_load(conn)
            self.load = "upsert"
        if self.load == "copy":
            return copy_first_load(conn, keys, ts, active)
        return copy_upsert_polls(conn, keys, ts, active, LOAD_TABLE if self.load else "polls")

    def finish(self, conn) -> int:
        """The rows still held, then the spans in ``stores`` the file widens
        (:meth:`StoreKeys.write_spans`). Returns how many keys the last write made new or changed."""
        changed = self._flush(conn, final=True)
        self.rows_stored = self.distinct.count()
        self.store_keys.write_spans(conn)
        if self.load:  # a first load on PostgreSQL: its table takes the place of polls
            if self.load == "copy":
                key_first_load(conn)
            end_first_load(conn)
            # The planner's statistics for what a first load wrote, before anyone reads it (a
            # table without them gets guessed row counts, and plans to match).
            conn.exec_driver_sql("ANALYZE stores")
        elif (self.to_polls or self.folded) and conn.dialect.name == "postgresql":
            # The pages this file added to polls (upserted or by a fold) in the time index: a
            # page range not summarised yet matches every query (engine.tune_postgresql).
            conn.exec_driver_sql(
                "SELECT brin_summarize_new_values(i) FROM to_regclass('polls_ts_brin') AS i WHERE i IS NOT NULL"
            )
        return changed


class StoreKeys:
    """The ``stores`` table as one status file sees it: each store id's key, and arrays indexed by
    store key with what the writer needs of each store (instants in microseconds, UTC).

    Loaded once per file (:meth:`known_ids`); a store id the file brings gets its row, and so its
    key, before its polls are written (:meth:`record`); the spans the file widens are written back
    once, at the end (:meth:`write_spans`), not once per store per chunk.
    """

    def __init__(self) -> None:
        self.ids: pd.Index | None = None  # known store ids (loaded once per file, then extended) ...
        self.key_of = np.empty(0, dtype=np.int64)  # ... and their store keys, position by position
        self.first = np.empty(0, dtype=np.int64)  # per store key: the file's first poll ...
        self.last = np.empty(0, dtype=np.int64)  # ... and last (for stores that existed before)
        self.seen = np.empty(0, dtype=bool)  # per store key: the file has a poll of it
        self.db_first = np.empty(0, dtype=np.int64)  # per store key: its span in ``stores`` ...
        self.db_last = np.empty(0, dtype=np.int64)  # ... before this file
        self.stored_last = np.empty(0, dtype=np.int64)  # per store key: its latest poll stored so far
        self.file_last = np.empty(0, dtype=np.int64)  # per store key: its latest poll in the file so far

    @property
    def known(self) -> int:
        """How many store ids are known (in the database, or created by this file)."""
        return len(self.key_of)

    @property
    def stores(self) -> int:
        """Distinct stores the file has a poll of."""
        return int(self.seen.sum())

    def known_ids(self, conn) -> pd.Index:
        """The store ids already in the database (loaded once per file, with their keys and spans)."""
        if self.ids is None:
            if conn.dialect.name == "sqlite":  # one row of aggregates: no Python object per store and column
                row = conn.exec_driver_sql(
                    "SELECT json_group_array(store_id), group_concat(store_key), group_concat(first_poll_us), "
                    "group_concat(last_poll_us) FROM (SELECT * FROM stores ORDER BY store_key)"
                ).one()
                ids = json.loads(row[0])
                columns = [np.array(text.split(",") if text else [], dtype=np.int64) for text in row[1:]]
            else:  # the same, the numbers as bytea of int8 (no tuple per store: less for the GC to walk);
                # the aggregates of one pass see the rows in one order, so they stay aligned (no sort)
                with dbapi_cursor(conn) as cursor:
                    cursor.execute(
                        "SELECT json_agg(store_id)::text, "
                        + ", ".join(
                            f"string_agg(int8send({column}::bigint), '')"
                            for column in ("store_key", "first_poll_us", "last_poll_us")
                        )
                        + " FROM stores",
                        binary=True,
                    )
                    row = cursor.fetchone()
                ids = json.loads(row[0]) if row[0] else []
                columns = [np.frombuffer(b or b"", dtype=">i8").astype(np.int64) for b in row[1:]]
            self.ids = pd.Index(ids, dtype=object)
            self.key_of = columns[0]
            self._grow()
            self.db_first[self.key_of], self.db_last[self.key_of] = columns[1], columns[2]
            self.stored_last[self.key_of] = columns[2]
        return self.ids

    def _grow(self) -> None:
        """Size the per-store-key arrays for every key known."""
        size = int(self.key_of.max()) + 1 if len(self.key_of) else 0
        if size <= len(self.first):
            return
        grow = size - len(self.first)
        low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        for name, fill in (
            ("first", high),
            ("last", low),
            ("db_first", high),
            ("db_last", low),
            ("stored_last", low),
            ("file_last", low),
        ):
            setattr(self, name, np.concatenate([getattr(self, name), np.full(grow, fill, dtype=np.int64)]))
        self.seen = np.concatenate([self.seen, np.zeros(grow, dtype=bool)])

    def record(self, conn, store_ids, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Create unknown stores now (their polls need a key); widen known spans at the end.
        Returns the store key of each of ``store_ids``. (Vectorised: a chunk of a big file names
        every store, so a Python loop per store per chunk grows with the square of the size.)"""
        at = self.known_ids(conn).get_indexer(store_ids)
        new = at < 0
        if new.any():
            self._create(conn, np.asarray(store_ids, dtype=object)[new], first[new], last[new])
            at = self.ids.get_indexer(store_ids)
        keys = self.key_of[at]
        created = keys[new]  # their row holds this chunk's span
        self.db_first[created], self.db_last[created] = first[new], last[new]
        old = keys[~new]
        self.first[old] = np.minimum(self.first[old], first[~new])
        self.last[old] = np.maximum(self.last[old], last[~new])
        self.seen[keys] = True
        return keys

    def _create(self, conn, store_ids: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
        """Insert a ``stores`` row per new id, spanning ``first`` to ``last``, and learn the keys."""
        top = int(self.key_of.max()) if len(self.key_of) else 0
        if conn.dialect.name == "postgresql":  # one statement: the columns as three arrays
            conn.exec_driver_sql(
                "INSERT INTO stores (store_id, first_poll_us, last_poll_us) "
                "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[])",
                (store_ids.tolist(), first.tolist(), last.tolist()),
            )
        else:
            conn.exec_driver_sql(
                f"INSERT INTO stores (store_id, first_poll_us, last_poll_us) VALUES ({placeholders(conn, 3)})",
                list(zip(store_ids.tolist(), first.tolist(), last.tolist())),
            )
        added = frame(
            conn,
            f"SELECT store_id, store_key FROM stores WHERE store_key > {placeholders(conn, 1)}",
            ["store_id", "store_key"],
            (top,),
        )
        self.ids = self.ids.append(pd.Index(added["store_id"].astype(object)))
        self.key_of = np.concatenate([self.key_of, added["store_key"].to_numpy(np.int64)])
        self._grow()

    def write_spans(self, conn) -> None:
        """Widen each store's first / last poll in ``stores`` to the file's, where the file goes
        beyond them."""
        mark = placeholders(conn, 1)
        low, high = min_max_names(conn)
        earlier = np.flatnonzero(self.first < self.db_first)  # a back-fill
        later = np.flatnonzero(self.last > self.db_last)  # every store of an hourly feed
        if conn.dialect.name == "postgresql":
            for column, keys, values, beyond in (
                ("first_poll_us", earlier, self.first, "<"),
                ("last_poll_us", later, self.last, ">"),
            ):
                if len(keys):
                    _update_span(conn, column, keys, values[keys], beyond)
            return
        if len(earlier):
            conn.exec_driver_sql(
                f"UPDATE stores SET first_poll_us = {low}(first_poll_us, {mark}) WHERE store_key = {mark}",
                list(zip(self.first[earlier].tolist(), earlier.tolist())),
            )
        if not len(later):
            return
        last = self.last[later]
        base = int(last.min())
        shift = time_bits(later)
        if conn.dialect.name == "sqlite" and int(last.max()) - base < (1 << shift):
            # One statement, the (key, instant) pairs packed into one integer each.
            conn.exec_driver_sql(
                "UPDATE stores SET last_poll_us = max(last_poll_us, given.ts_us) FROM (SELECT value >> ? AS "
                "store_key, (value & ?) + ? AS ts_us FROM json_each(?)) AS given "
                "WHERE stores.store_key = given.store_key",
                (shift, (1 << shift) - 1, base, json_ints(pack(later, last - base, shift))),
            )
        else:
            conn.exec_driver_sql(
                f"UPDATE stores SET last_poll_us = {high}(last_poll_us, {mark}) WHERE store_key = {mark}",
                list(zip(last.tolist(), later.tolist())),
            )


def _update_span(conn, column: str, keys: np.ndarray, values: np.ndarray, beyond: str) -> None:
    """PostgreSQL: ``stores.column`` set to ``values`` (per store key of the sorted ``keys``)
    where the value is ``beyond`` (``<`` or ``>``) the stored one, in one statement.

    Keys close together (an hourly file names every store) go as one array indexed by store key:
    the update is a range scan of ``stores``, no join (21 ms for 14,000 stores, against 35 to 53 ms
    joining them to ``unnest`` of (key, value) arrays, which the planner does one index probe at a
    time). Scattered keys go as (key, value) pairs."""
    lo, hi = int(keys[0]), int(keys[-1])
    if hi - lo < 2 * len(keys):
        given = np.full(hi - lo + 1, np.iinfo(np.int64).max if beyond == "<" else np.iinfo(np.int64).min)
        given[keys - lo] = values
        conn.exec_driver_sql(
            f"UPDATE stores SET {column} = given.a[stores.store_key - %s] FROM (SELECT %s::bigint[] AS a) AS given "
            "WHERE stores.store_key >= %s AND stores.store_key <= %s "
            f"AND given.a[stores.store_key - %s] {beyond} {column}",
            (lo - 1, given.tolist(), lo, hi, lo - 1),
        )
    else:
        conn.exec_driver_sql(
            f"UPDATE stores SET {column} = given.ts_us FROM unnest(%s::integer[], %s::bigint[]) AS given (store_key, "
            f"ts_us) WHERE stores.store_key = given.store_key AND given.ts_us {beyond} {column}",
            (keys.tolist(), values.tolist()),
        )


class DistinctKeys:
    """Counts the distinct (store_key, ts_us) keys of a file given chunk by chunk, in bounded memory.

    Each chunk is already free of repeats; a key may still come again in a later chunk -- but
    only if it is not later than that store's latest key in the earlier chunks. The caller says
    whether a chunk has such a row (``overlaps``). A chunk without one (every chunk of a feed
    written in time order) is all new: it is counted, and its keys kept in case a later chunk
    overlaps. A chunk with one is checked against the keys kept, folded into one sorted array.

    Keys are kept packed -- one int64 each, ``store_key << 44 | (ts_us - base)``, exact while
    the file's timestamps span less than 2**44 us (203 days) and store keys stay below 2**19;
    otherwise as complex numbers (two exact float64 each). Past :data:`EXACT_UP_TO` keys (32 MB
    packed) the keys are dropped; the count stays exact until a chunk overlaps, after which it
    counts chunk by chunk (a key repeated across chunks counts again) and ``exact`` turns False
    -- memory stays flat whatever the file's size, and a file in time order is counted exactly
    in linear time.
    """

    TIME_BITS = 44
    SPAN = 1 << TIME_BITS  # us
    KEY_LIMIT = 1 << (63 - TIME_BITS)
    EXACT_UP_TO = 4_000_000

    def __init__(self) -> None:
        self.seen = np.empty(0, dtype=np.int64)  # sorted distinct keys folded so far ...
        self.parts: list[np.ndarray] = []  # ... and the chunks' keys since
        self.kept = 0  # keys in seen and parts
        self.dropped = False  # the keys were dropped (past EXACT_UP_TO)
        self.base: int | None = None
        self.packed = True
        self.exact = True
        self.total = 0  # distinct keys counted

    def add(self, store_keys: np.ndarray, ts: np.ndarray, overlaps: bool = True) -> None:
        """Count a chunk's keys (sorted, no repeats); ``overlaps``: it may repeat an earlier chunk's."""
        if len(ts) == 0:
            return
        if self.dropped:
            self.exact = self.exact and not overlaps
            self.total += len(ts)
            return
        keys = self._keys(store_keys, ts)
        if overlaps and self.kept:
            self._fold()
            at = np.searchsorted(self.seen, keys)
            known = at < len(self.seen)
            known[known] = self.seen[at[known]] == keys[known]
            self.total += int((~known).sum())
        else:
            self.total += len(keys)
        self.parts.append(keys)
        self.kept += len(keys)
        if self.kept > self.EXACT_UP_TO:
            self.seen, self.parts, self.kept, self.dropped = self.seen[:0], [], 0, True

    def _keys(self, store_keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The chunk's keys, packed while every key so far fits, else as complex numbers."""
        if self.base is None:
            self.base = int(ts.min()) - self.SPAN // 2
        offset = ts - self.base
        fits = self.packed and offset.min() >= 0 and offset.max() < self.SPAN and store_keys.max() < self.KEY_LIMIT
        if self.packed and not fits:
            self.seen = self._unpack(self.seen)
            self.parts = [self._unpack(p) for p in self.parts]
            self.packed = False
        if self.packed:
            return pack(store_keys, offset, self.TIME_BITS)
        return store_keys.astype(np.float64) + 1j * ts.astype(np.float64)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        """Packed keys as complex numbers (``store_key + 1j * ts_us``)."""
        store_keys, offset = unpack(packed, self.TIME_BITS)
        return store_keys.astype(np.float64) + 1j * (offset + self.base).astype(np.float64)

    def _fold(self) -> None:
        # The folded keys and each chunk's keys are sorted runs: a stable sort (timsort) merges
        # them in about linear time, where the default sort does not.
        merged = np.sort(np.concatenate([self.seen, *self.parts]), kind="stable")
        self.parts = []
        self.seen = merged[np.r_[True, merged[1:] != merged[:-1]]] if len(merged) else merged
        self.kept = len(self.seen)

    def count(self) -> int:
        """Distinct keys counted so far (exact while ``exact``)."""
        return self.total


class HoursWriter(FeedWriter):
    """Replaces the business hours of every store named in the file by the file's rows."""

    kind = "hours"

    def __init__(self) -> None:
        self.replaced: set[str] = set()
        self.chunks = 0
        self.empty = False  # business_hours was empty when the file began
        self.again: set[str] = set()  # stores named in more than one chunk

    def write(self, conn, rows) -> None:
        rows = rows.drop_duplicates()
        self.chunks += 1
        if self.chunks == 1:  # an empty table (a first load) has nothing to replace
            self.empty = conn.exec_driver_sql("SELECT NOT EXISTS (SELECT 1 FROM business_hours)").scalar()
        named = rows["store_id"].unique().tolist()
        fresh = [s for s in named if s not in self.replaced]
        if len(fresh) < len(named):  # stores named in an earlier chunk too: may repeat a row
            self.again.update(s for s in named if s in self.replaced)
        mark = placeholders(conn, 1)
        self.rows_stored += len(rows)
        if fresh and self.empty:
            self.replaced.update(fresh)
        elif fresh and conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DELETE FROM business_hours WHERE store_id = ANY(%s::text[])", (fresh,))
            self.replaced.update(fresh)
        elif fresh:
            conn.exec_driver_sql(f"DELETE FROM business_hours WHERE store_id = {mark}", [(s,) for s in fresh])
            self.replaced.update(fresh)
        columns = [rows[c].tolist() for c in ("store_id", "day", "start_s", "end_s")]
        if conn.dialect.name == "postgresql":  # COPY (the driver escapes each row)
            with dbapi_cursor(conn) as cursor:
                with cursor.copy("COPY business_hours (store_id, day, start_s, end_s) FROM STDIN") as copy:
                    for row in zip(*columns):
                        copy.write_row(row)
        else:
            conn.exec_driver_sql(
                f"INSERT INTO business_hours (store_id, day, start_s, end_s) VALUES ({placeholders(conn, 4)})",
                list(zip(*columns)),
            )
        return None

    def finish(self, conn) -> None:
        # The same row given twice in one file (in different chunks) is kept once. Only stores
        # named in more than one chunk can hold such a repeat (each chunk was free of them).
        if self.again:
            mark = placeholders(conn, 1)
            result = conn.exec_driver_sql(
                f"DELETE FROM business_hours WHERE store_id = {mark} AND id NOT IN (SELECT min(id) "
                f"FROM business_hours WHERE store_id = {mark} GROUP BY day, start_s, end_s)",
                [(s, s) for s in sorted(self.again)],
            )
            self.rows_stored -= max(result.rowcount, 0)


class TimezoneWriter(FeedWriter):
    """Sets each store's time zone (the later row for a store wins)."""

    kind = "timezones"

    def __init__(self) -> None:
        self.zones_seen: set[str] = set()
        self.stores_seen: set[str] = set()

    def write(self, conn, rows) -> int:
        self.zones_seen.update(rows["timezone_str"].unique().tolist())
        self.stores_seen.update(rows["store_id"].unique().tolist())
        self.rows_stored = len(self.stores_seen)
        rows = rows.drop_duplicates("store_id", keep="last")
        columns = rows["store_id"].tolist(), rows["timezone_str"].tolist()
        postgresql = conn.dialect.name == "postgresql"  # one statement: the columns as arrays
        result = conn.exec_driver_sql(
            "INSERT INTO store_timezones (store_id, timezone_str) "
            + ("SELECT * FROM unnest(%s::text[], %s::text[]) " if postgresql else f"VALUES ({placeholders(conn, 2)}) ")
            + "ON CONFLICT (store_id) DO UPDATE SET timezone_str = excluded.timezone_str "
            "WHERE store_timezones.timezone_str <> excluded.timezone_str",
            columns if postgresql else list(zip(*columns)),
        )
        return max(result.rowcount, 0)
