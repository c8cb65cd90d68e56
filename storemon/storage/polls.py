"""Writing polls in bulk into ``polls`` or ``polls_recent``: on SQLite as JSON arrays of packed
integers, on PostgreSQL by binary COPY.

The status writer (:class:`~storemon.storage.writers.PollWriter`) decides where a file's polls
go; these functions write them. On SQLite one statement takes :data:`WRITE_ROWS` polls as one
JSON array of packed integers (:func:`packed_polls`), unpacked inside SQLite by
:data:`UNPACK_POLLS`; PostgreSQL takes them as one binary COPY stream built by numpy
(:func:`binary_polls`). ``polls_recent`` takes new polls until it would pass
:func:`recent_limit`, then :func:`fold_recent_polls` moves it into ``polls`` (docs/internals.md,
"Storage").
Instants are microseconds since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .chunks import fill_poll_chunks, keep_poll_chunks
from .packing import json_ints, pack, time_bits
from .sql import dbapi_cursor

WRITE_ROWS = 250_000  # polls handed to SQLite in one statement (as one text of ~5 MB)

RECENT_POLLS_PER_STORE = 12  # polls_recent holds up to this many polls per store (half a day) ...
RECENT_POLLS_MIN = 50_000  # ... or this many, whichever is more

POLL_CONFLICT = (
    "ON CONFLICT (store_key, ts_us) DO UPDATE SET active = excluded.active WHERE polls.active <> excluded.active"
)

# The polls of one part of packed_polls, as rows: the marks are filled by _unpack_parameters.
UNPACK_POLLS = "SELECT value >> ? AS store_key, ((value >> 1) & ?) + ? AS ts_us, value & 1 AS active FROM json_each(?)"


def packed_polls(store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray):
    """Polls as one integer each, for SQLite to unpack: yields ``(base, shift, packed)`` per part.

    ``packed = store_key << (shift + 1) | (ts_us - base) << 1 | active`` -- all three in one
    int64, exact while the key's bits plus the bits of ``ts_us - base`` stay within 62. Rows are
    split by time into parts where they do not (in practice one part: keys below 2**20 leave 42
    bits, 50 days, for the time), keeping their order within each part.
    """
    shift = time_bits(store_key)
    base = int(ts_us.min()) if len(ts_us) else 0
    offset = ts_us.astype(np.int64) - base
    part = offset >> shift
    packed = pack(pack(store_key, offset & ((1 << shift) - 1), shift), active.astype(np.int64), 1)
    if len(part) == 0 or part.max() == 0:  # offsets are >= 0: one part
        yield base, shift, packed
        return
    for p in np.unique(part):
        yield base + (int(p) << shift), shift, packed[part == p]


def _unpack_parameters(store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> Iterator[tuple]:
    """The parameters of :data:`UNPACK_POLLS`, one tuple per statement: :data:`WRITE_ROWS` polls
    at a time, each split into parts as :func:`packed_polls` does."""
    for at in range(0, len(ts_us), WRITE_ROWS):
        part = slice(at, at + WRITE_ROWS)
        for base, shift, packed in packed_polls(store_key[part], ts_us[part], active[part]):
            yield shift + 1, (1 << shift) - 1, base, json_ints(packed)


def insert_polls(
    conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray, conflict: str, table: str = "polls"
) -> int:
    """``INSERT INTO table ... {conflict}`` of many polls at once; returns the rows changed.

    SQLite: the rows travel as one JSON array of packed integers (:func:`packed_polls`) per
    :data:`WRITE_ROWS`, unpacked by ``json_each`` inside SQLite -- one statement instead of a
    Python tuple and a parameter binding per row (``executemany``), about four times faster.
    """
    changed = 0
    for params in _unpack_parameters(store_key, ts_us, active):
        result = conn.exec_driver_sql(
            f"INSERT INTO {table} (store_key, ts_us, active) {UNPACK_POLLS} WHERE true {conflict}", params
        )
        changed += max(result.rowcount, 0)
    return changed


def recent_limit(stores: int) -> int:
    """How many polls ``polls_recent`` may hold before it is folded into ``polls``.

    Each write to ``polls_recent`` touches about all its pages, a fold touches one page per
    store: half a day of hourly polls keeps both small (at 14,000 stores: ~700 pages a write,
    one 14,000-page fold every 12 hours, against 14,000 pages every hour without it).
    """
    return max(RECENT_POLLS_MIN, RECENT_POLLS_PER_STORE * stores)


def fold_recent_polls(conn) -> int:
    """Move every row of ``polls_recent`` into ``polls`` (in key order) and empty it; returns
    the rows moved. (No key is in both tables; were one, the recent row would win.)"""
    moved = conn.exec_driver_sql(
        "INSERT INTO polls (store_key, ts_us, active) SELECT store_key, ts_us, active FROM polls_recent "
        f"WHERE true ORDER BY store_key, ts_us {POLL_CONFLICT}"
    ).rowcount
    conn.exec_driver_sql("DELETE FROM polls_recent")
    return max(moved, 0)


def insert_recent_polls(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> int:
    """Polls known to be in neither table (each later than every poll of its store) added to
    ``polls_recent``; returns how many."""
    if conn.dialect.name != "postgresql":
        return insert_polls(conn, store_key, ts_us, active, "", table="polls_recent")
    if len(ts_us):
        with dbapi_cursor(conn) as cursor:
            with cursor.copy("COPY polls_recent (store_key, ts_us, active) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(binary_polls(store_key, ts_us, active))
    return len(ts_us)


def update_polls(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> int:
    """Polls that may already be stored: a key in ``polls_recent`` is updated there, any other
    key upserted into ``polls``. Returns the keys that are new or change a status."""
    if conn.dialect.name == "postgresql":
        with dbapi_cursor(conn) as cursor:
            _copy_incoming(cursor, binary_polls(store_key, ts_us, active))
            cursor.execute(
                "UPDATE polls_recent SET active = given.active FROM polls_incoming AS given WHERE "
                "polls_recent.store_key = given.store_key AND polls_recent.ts_us = given.ts_us "
                "AND polls_recent.active <> given.active"
            )
            changed = max(cursor.rowcount, 0)
            cursor.execute(
                "INSERT INTO polls (store_key, ts_us, active) SELECT store_key, ts_us, active FROM polls_incoming "
                "AS given WHERE NOT EXISTS (SELECT 1 FROM polls_recent r WHERE r.store_key = given.store_key "
                f"AND r.ts_us = given.ts_us) {POLL_CONFLICT}"
            )
            return changed + max(cursor.rowcount, 0)
    # (a subquery, not WITH: Python's sqlite3 gives no rowcount for a statement that starts with WITH)
    given = f"({UNPACK_POLLS}) AS given"
    changed = 0
    for params in _unpack_parameters(store_key, ts_us, active):
        changed += max(
            conn.exec_driver_sql(
                f"UPDATE polls_recent SET active = given.active FROM {given} WHERE polls_recent.store_key = "
                "given.store_key AND polls_recent.ts_us = given.ts_us AND polls_recent.active <> given.active",
                params,
            ).rowcount,
            0,
        )
        changed += max(
            conn.exec_driver_sql(
                f"INSERT INTO polls (store_key, ts_us, active) SELECT store_key, ts_us, active FROM {given} "
                "WHERE NOT EXISTS (SELECT 1 FROM polls_recent r WHERE r.store_key = given.store_key "
                f"AND r.ts_us = given.ts_us) {POLL_CONFLICT}",
                params,
            ).rowcount,
            0,
        )
    return changed


# PostgreSQL's binary COPY format: a header, one fixed-width record per poll (its field count,
# then each field's length and big-endian value: integer, bigint, boolean), and a trailer.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"  # a field count of -1
COPY_POLL = np.dtype(
    [
        ("fields", ">i2"),
        ("key_len", ">i4"),
        ("store_key", ">i4"),
        ("ts_len", ">i4"),
        ("ts_us", ">i8"),
        ("active_len", ">i4"),
        ("active", "u1"),
    ]
)


def binary_polls(store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> bytes:
    """Polls as one ``COPY ... (FORMAT BINARY)`` stream, built by numpy: 27 bytes a poll, no
    Python object per row and no text to parse on either side."""
    rows = np.empty(len(ts_us), dtype=COPY_POLL)
    rows["fields"], rows["key_len"], rows["ts_len"], rows["active_len"] = 3, 4, 8, 1
    rows["store_key"], rows["ts_us"], rows["active"] = store_key, ts_us, active
    return COPY_HEADER + rows.tobytes() + COPY_TRAILER


def copy_upsert_polls(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray, table: str = "polls") -> int:
    """PostgreSQL: polls upserted into ``table`` (``polls``, or :data:`LOAD_TABLE` once it has
    its key) by binary COPY into a temp table and one ``INSERT ... ON CONFLICT`` (the later row
    wins). Returns the keys that are new or change a status."""
    with dbapi_cursor(conn) as cursor:
        _copy_incoming(cursor, binary_polls(store_key, ts_us, active))
        cursor.execute(
            f"INSERT INTO {table} (store_key, ts_us, active) SELECT store_key, ts_us, active FROM polls_incoming "
            "ON CONFLICT (store_key, ts_us) DO UPDATE SET active = excluded.active "
            f"WHERE {table}.active <> excluded.active"
        )
        return max(cursor.rowcount, 0)


# A first load on PostgreSQL (``polls`` empty at the file's first write to it) is built beside
# it, in a table the ingest's transaction creates: COPY into a table without indexes, created in
# the same transaction, writes its rows frozen (no hint bits to set on the first read) and
# maintains no index; the primary key is then built in one sorted pass (a compact index), and
# the table takes the place of ``polls`` at the end, under a lock held for milliseconds. About
# twice as fast as COPY into the indexed ``polls`` (measured at 1x: 1.5 s against 2.9 s), and
# reads after it are faster too. The new table is the ingest role's, with the columns, keys and
# indexes storemon gives ``polls``; grants someone made on the empty ``polls`` do not carry over.
LOAD_TABLE = "polls_load"


def begin_first_load(conn) -> None:
    """Create :data:`LOAD_TABLE`, with the columns of ``polls`` and no index."""
    conn.exec_driver_sql(f"CREATE TABLE {LOAD_TABLE} (LIKE polls INCLUDING DEFAULTS)")


def copy_first_load(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> int:
    """Polls of a first load, all distinct from those copied before, appended to
    :data:`LOAD_TABLE` frozen (``COPY ... FREEZE``). Returns how many."""
    with dbapi_cursor(conn) as cursor:
        with cursor.copy(f"COPY {LOAD_TABLE} (store_key, ts_us, active) FROM STDIN (FORMAT BINARY, FREEZE)") as copy:
            copy.write(binary_polls(store_key, ts_us, active))
    return len(ts_us)


def key_first_load(conn) -> None:
    """The primary key of :data:`LOAD_TABLE`, built from the rows it holds (they are distinct):
    before a write that may repeat a key (then upserted), or at the end."""
    conn.exec_driver_sql(f"ALTER TABLE {LOAD_TABLE} ADD CONSTRAINT {LOAD_TABLE}_pkey PRIMARY KEY (store_key, ts_us)")


def end_first_load(conn) -> None:
    """:data:`LOAD_TABLE` (keyed) becomes ``polls``: its time index, statistics and
    ``poll_chunks`` first, then the empty ``polls`` dropped and the names taken over, and the
    triggers that keep ``poll_chunks`` installed on it, inside the ingest's transaction."""
    conn.exec_driver_sql(f"CREATE INDEX {LOAD_TABLE}_ts_brin ON {LOAD_TABLE} USING brin (ts_us)")
    conn.exec_driver_sql(f"ANALYZE {LOAD_TABLE}")
    fill_poll_chunks(conn, LOAD_TABLE)
    conn.exec_driver_sql("LOCK TABLE polls IN ACCESS EXCLUSIVE MODE")
    if conn.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM polls)").scalar():
        raise RuntimeError("storage: polls is no longer empty, a first load cannot replace it")
    conn.exec_driver_sql("DROP TABLE polls")
    conn.exec_driver_sql(f"ALTER TABLE {LOAD_TABLE} RENAME TO polls")
    conn.exec_driver_sql(f"ALTER INDEX {LOAD_TABLE}_pkey RENAME TO polls_pkey")  # (and its constraint)
    conn.exec_driver_sql(f"ALTER INDEX {LOAD_TABLE}_ts_brin RENAME TO polls_ts_brin")
    keep_poll_chunks(conn)


def _copy_incoming(cursor, data: bytes) -> None:
    """Binary COPY ``data`` (:func:`binary_polls`) into this session's empty temp table
    ``polls_incoming`` (PostgreSQL), for an upsert from it."""
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS polls_incoming "
        "(store_key integer, ts_us bigint, active boolean) ON COMMIT DELETE ROWS"
    )
    cursor.execute("TRUNCATE polls_incoming")
    with cursor.copy("COPY polls_incoming (store_key, ts_us, active) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(data)
