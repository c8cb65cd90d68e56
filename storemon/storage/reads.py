"""Reading what a report needs, and one store's rows (no computation here).

The report's reads run inside one read transaction, so they see one consistent state of the
database (:func:`~storemon.storage.engine.configure_engine`): the latest poll, the stores, the
polls of a time range, the business hours and time zones, each as a DataFrame keyed by
``store_key``. The bulk reads let the database pack each store's rows into one value -- text on
SQLite (:mod:`storemon.storage.packing`), a ``bytea`` of int8 on PostgreSQL, where the polls
are also kept packed ahead of time (:mod:`storemon.storage.chunks`). One store's rows
(:func:`store_row`, :func:`hours_of_store`, :func:`timezone_of_store`) are for its timeline
(:mod:`storemon.explain`), whose polls come from :func:`polls_of_stores`.

Polls are in two tables, ``polls`` and ``polls_recent`` (a (store, instant) is in one of them,
never both). Instants are microseconds since the epoch, UTC; business hours are seconds after
local midnight.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from .chunks import CHUNK_SHIFT, IS_KEPT
from .packing import parse_marked, unpack
from .sql import dbapi_cursor, fetch_all, frame, placeholders

# Every stored poll (a key is in one of the two tables), for a FROM clause.
ALL_POLLS = "(SELECT store_key, ts_us, active FROM polls UNION ALL SELECT store_key, ts_us, active FROM polls_recent)"


def polls_tables(conn) -> tuple[str, ...]:
    """Where polls are: new ones land in polls_recent first (see PollWriter)."""
    return ("polls", "polls_recent")


def latest_poll_us(conn) -> int | None:
    """The latest poll instant in the database (``now`` of a report without ``as_of``)."""
    return conn.exec_driver_sql("SELECT max(last_poll_us) FROM stores").scalar()


def earliest_poll_us(conn) -> int | None:
    """The earliest poll instant in the database."""
    return conn.exec_driver_sql("SELECT min(first_poll_us) FROM stores").scalar()


def latest_poll_at_or_before(conn, now_us: int) -> int | None:
    """The latest poll at or before ``now_us``: one primary-key seek per store."""
    mark = placeholders(conn, 1)
    in_polls = conn.exec_driver_sql(
        f"SELECT max((SELECT max(p.ts_us) FROM polls p WHERE p.store_key = s.store_key AND p.ts_us <= {mark})) "
        f"FROM stores s WHERE s.first_poll_us <= {mark}",
        (now_us, now_us),
    ).scalar()
    in_recent = conn.exec_driver_sql(f"SELECT max(ts_us) FROM polls_recent WHERE ts_us <= {mark}", (now_us,)).scalar()
    return max((v for v in (in_polls, in_recent) if v is not None), default=None)


def report_stores(conn, now_us: int) -> pd.DataFrame:
    """Stores with a poll at or before ``now_us``: store_key, store_id, first_poll_us."""
    return frame(
        conn,
        f"SELECT store_key, store_id, first_poll_us FROM stores WHERE first_poll_us <= {placeholders(conn, 1)}",
        ["store_key", "store_id", "first_poll_us"],
        (now_us,),
    )


def all_stores(conn) -> pd.DataFrame:
    """Every store: store_key, store_id, first_poll_us, sorted by store_key."""
    rows = fetch_all(conn, "SELECT store_key, store_id, first_poll_us FROM stores ORDER BY store_key")
    return pd.DataFrame(
        {  # column by column: DataFrame.from_records costs more than the read
            "store_key": np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            "store_id": np.array([r[1] for r in rows], dtype=object),
            "first_poll_us": np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
        }
    )


def polls_between(conn, from_us: int, to_us: int, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Every poll with ``from_us <= ts_us <= to_us``: store_key, ts_us, active, sorted by
    store_key then ts_us. ``keys`` = ``(low, high)`` limits it to ``low <= store_key < high``
    (a report computed in batches of stores reads one batch at a time).

    SQLite: the outer loop walks ``stores`` and seeks each store's range in the polls primary
    key, so the cost follows the polls in the range, not the length of history. The polls come
    back as one text value -- ``(ts_us - from_us) * 2 + active`` in decimal, comma-separated,
    each store's after its key (:func:`_marked_by_key`) -- which numpy parses in one call: one
    Python object for the range instead of one per poll, about three times faster than fetching
    1.85M rows, and the GIL is free while the database works.
    PostgreSQL: the same values, as binary int8, from the polls packed ahead of time
    (:func:`_chunked_polls_postgresql`) while their triggers keep them, or -- for a span shorter
    than a chunk, or when they are not kept -- packed by the server from ``polls``
    (:func:`_packed_polls_postgresql`), as are the few polls of ``polls_recent``, put after their
    store's.
    """
    if conn.dialect.name == "postgresql":
        if to_us - from_us >= 1 << CHUNK_SHIFT and conn.exec_driver_sql(IS_KEPT).scalar():
            keys_out, packed = _chunked_polls_postgresql(conn, from_us, to_us, keys)
        else:  # a short span (a warm report's): the few polls in it, through polls' time index;
            # or poll_chunks not kept (its triggers dropped or disabled by hand, until a start-up)
            keys_out, packed = _packed_polls_postgresql(conn, "polls", from_us, to_us, keys)
        recent_keys, recent = _packed_polls_postgresql(conn, "polls_recent", from_us, to_us, keys)
        keys_out, packed = _merge_recent(keys_out, packed, recent_keys, recent)
    else:
        mark = placeholders(conn, 1)
        store_polls = (
            f"SELECT group_concat((p.ts_us - {mark}) * 2 + p.active) FROM polls p "
            f"WHERE p.store_key = s.store_key AND p.ts_us >= {mark} AND p.ts_us <= {mark}"
        )
        keys_out, packed = _marked_by_key(conn, store_polls, (from_us, from_us, to_us), keys)
        bounds = (int(keys[0]), int(keys[1])) if keys is not None else ()
        keys_out, packed = _add_recent_polls(conn, keys_out, packed, (from_us, from_us, to_us, *bounds), bool(bounds))
    offset, active = unpack(packed, 1)
    ts = offset + from_us
    polls = pd.DataFrame({"store_key": keys_out, "ts_us": ts, "active": active.astype(bool)})
    if len(ts) > 1 and not np.all((np.diff(keys_out) > 0) | (np.diff(ts) > 0)):
        polls = polls.sort_values(["store_key", "ts_us"], kind="stable", ignore_index=True)
    return polls


def _chunked_polls_postgresql(
    conn, from_us: int, to_us: int, keys: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`polls_between` of ``polls`` on PostgreSQL, read from ``poll_chunks``
    (:mod:`storemon.storage.chunks`): (store key per poll, ``(ts_us - from_us) * 2 + active``).

    The chunks that meet ``[from_us, to_us]`` -- about ten per store for a report's eight days --
    in one range scan of their primary key, each store's concatenated in key order, so the
    server handles a row per chunk instead of a row per poll; the first and last chunk's polls
    outside the range are dropped here."""
    where, params = "", [from_us >> CHUNK_SHIFT, to_us >> CHUNK_SHIFT]
    if keys is not None:
        where, params = "AND store_key >= %s AND store_key < %s", [*params, int(keys[0]), int(keys[1])]
    store_keys, stored = _binary_rows(
        conn,
        f"SELECT store_key, string_agg(packed, '') FROM poll_chunks WHERE chunk >= %s AND chunk <= %s {where} "
        "GROUP BY store_key ORDER BY store_key",
        params,
    )
    packed = stored - 2 * from_us  # ts_us * 2 + active -> (ts_us - from_us) * 2 + active
    inside = (packed >= 0) & (packed <= 2 * (to_us - from_us) + 1)
    return store_keys[inside], packed[inside]


def _packed_polls_postgresql(
    conn, table: str, from_us: int, to_us: int, keys: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`polls_between` of one table on PostgreSQL (``polls_recent``, or ``polls`` for a
    short span), the polls packed by the server: (store key per poll, ``(ts_us - from_us) * 2 +
    active``). One range scan, no join: ``GROUP BY store_key`` aggregates as it goes, and the
    polls within a store come in time order (the caller sorts them if a plan ever gave another
    order)."""
    where, params = "", [from_us, from_us, to_us]
    if keys is not None:
        where, params = "AND store_key >= %s AND store_key < %s", [*params, int(keys[0]), int(keys[1])]
    return _binary_rows(
        conn,
        f"SELECT store_key, string_agg(int8send((ts_us - %s) * 2 + active::int), '') FROM {table} "
        f"WHERE ts_us >= %s AND ts_us <= %s {where} GROUP BY store_key ORDER BY store_key",
        params,
    )


def _binary_rows(conn, sql: str, params: list) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (store key, ``bytea`` of big-endian int8), fetched in binary, as (the key of each
    int8, the int8s): numpy reads all the values in one call."""
    with dbapi_cursor(conn) as cursor:
        cursor.execute(sql, params, binary=True)
        rows = cursor.fetchall()
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    blobs = [row[1] for row in rows]
    counts = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)) // 8
    values = np.frombuffer(b"".join(blobs), dtype=">i8").astype(np.int64)
    return np.repeat(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)), counts), values


def _add_recent_polls(
    conn, keys_out: np.ndarray, packed: np.ndarray, params: tuple, key_range: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`polls_between`'s polls from ``polls`` with those of ``polls_recent`` (SQLite), each
    after its store's polls: one range read (it holds a few polls per store), packed as there.
    ``params``: polls_between's (from, from, to[, low key, high key])."""
    mark = placeholders(conn, 1)
    in_range = f"AND store_key >= {mark} AND store_key < {mark}" if key_range else ""
    row = conn.exec_driver_sql(
        f"SELECT group_concat(store_key), group_concat((ts_us - {mark}) * 2 + active) FROM polls_recent "
        f"WHERE ts_us >= {mark} AND ts_us <= {mark} {in_range}",
        params,
    ).one()
    if not row[0]:
        return keys_out, packed
    recent_keys = np.array(row[0].split(","), dtype=np.int64)
    recent = np.array(row[1].split(","), dtype=np.int64)
    return _merge_recent(keys_out, packed, recent_keys, recent)


def _merge_recent(
    keys_out: np.ndarray, packed: np.ndarray, recent_keys: np.ndarray, recent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Polls of ``polls_recent`` put after their store's polls from ``polls`` (both as
    :func:`polls_between` packs them)."""
    if not len(recent):
        return keys_out, packed
    order = np.lexsort((recent, recent_keys))
    recent_keys, recent = recent_keys[order], recent[order]
    # after each store's polls from polls (recent ones are usually the later: checked by the caller)
    at = np.searchsorted(keys_out, recent_keys, side="right")
    return np.insert(keys_out, at, recent_keys), np.insert(packed, at, recent)


def polls_of_stores(conn, store_keys: np.ndarray, from_us: int, to_us: int) -> pd.DataFrame:
    """Polls of the given stores with ``from_us <= ts_us < to_us`` (the report's look-back)."""
    columns = ["store_key", "ts_us", "active"]
    keys = [int(k) for k in store_keys]
    mark = placeholders(conn, 1)
    frames = [
        frame(
            conn,
            f"SELECT store_key, ts_us, active FROM {table} WHERE store_key IN ({placeholders(conn, len(batch))}) "
            f"AND ts_us >= {mark} AND ts_us < {mark}",
            columns,
            (*batch, from_us, to_us),
        )
        for table in polls_tables(conn)
        for batch in (keys[i : i + 500] for i in range(0, len(keys), 500))
    ]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    out = out.astype({"store_key": np.int64, "ts_us": np.int64, "active": bool})
    return out.sort_values(["store_key", "ts_us"], ignore_index=True)


def all_hours(conn) -> pd.DataFrame:
    """Every business-hours row as stored: store_id, day, start_s, end_s."""
    columns = ["store_id", "day", "start_s", "end_s"]
    return frame(conn, "SELECT store_id, day, start_s, end_s FROM business_hours", columns)


def all_timezones(conn) -> pd.DataFrame:
    """Every store's zone name as given: store_id, timezone_str."""
    return frame(conn, "SELECT store_id, timezone_str FROM store_timezones", ["store_id", "timezone_str"])


def _marked_by_key(conn, store_sql: str, params: tuple, keys: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """SQLite: ``(store_key, number)`` for the stores of the key range (``keys``: ``low <=
    store_key < high``; None: all), sorted by store, where ``store_sql`` (with ``params``) is a
    scalar subquery over ``stores s`` giving one store's numbers as comma-separated text.

    The database writes every store's text after its key as a mark (:func:`parse_marked`) into
    one text for the range: one row, one Python object, and the driver holds the GIL once --
    batches read by several threads then run side by side. When that text would pass SQLite's
    length limit (``SQLITE_MAX_LENGTH``, 1e9 bytes by default), the range is read in halves.
    """
    mark = placeholders(conn, 1)
    low, high = (int(keys[0]), int(keys[1])) if keys is not None else (0, 2**62)
    sql = (
        f"SELECT group_concat(marked) FROM (SELECT (-1 - s.store_key) || ',' || ({store_sql}) AS marked "
        f"FROM stores s WHERE s.store_key >= {mark} AND s.store_key < {mark} ORDER BY s.store_key)"
    )
    try:
        with dbapi_cursor(conn) as cursor:
            text = cursor.execute(sql, (*params, low, high)).fetchone()[0]
    except sqlite3.DataError:  # string or blob too big
        top = conn.exec_driver_sql(f"SELECT max(store_key) FROM stores WHERE store_key < {mark}", (high,)).scalar()
        if top is None or top <= low:
            raise
        middle = low + (top + 1 - low) // 2
        halves = [_marked_by_key(conn, store_sql, params, bounds) for bounds in ((low, middle), (middle, top + 1))]
        return tuple(np.concatenate(column) for column in zip(*halves))
    return parse_marked(text)


def hours_by_key(conn, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Business-hours rows of stores that have polls: store_key, day, start_s, end_s
    (``keys``: only ``low <= store_key < high``), each row packed by the database as
    ``day << 36 | start_s << 18 | end_s`` (:func:`packed_by_key`)."""
    packed_sql = "(CAST(h.day AS BIGINT) << 36) | (CAST(h.start_s AS BIGINT) << 18) | h.end_s"
    store_key, packed = packed_by_key(conn, "business_hours", packed_sql, keys)
    day, times = unpack(packed, 36)
    start_s, end_s = unpack(times, 18)
    return pd.DataFrame({"store_key": store_key, "day": day, "start_s": start_s, "end_s": end_s})


def packed_by_key(conn, table: str, packed_sql: str, keys: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``table`` (alias ``h``, joined on ``store_id``) of the stores that have polls, each
    packed by the database into one int64 by ``packed_sql``: ``(store_key, packed)``, sorted by
    store (``keys``: only ``low <= store_key < high``). SQLite: the range's rows as one text, each
    store's after its key (:func:`_marked_by_key`), as in :func:`polls_between`. PostgreSQL: every
    row of the range in one result row, the store keys and the packed rows as two ``bytea`` of
    int8 (one aggregate over the join, no grouping)."""
    if conn.dialect.name == "sqlite":
        store_rows = f"SELECT group_concat({packed_sql}) FROM {table} h WHERE h.store_id = s.store_id"
        return _marked_by_key(conn, store_rows, (), keys)
    mark = placeholders(conn, 1)
    where = f"WHERE s.store_key >= {mark} AND s.store_key < {mark}" if keys else ""
    params = tuple(int(k) for k in keys) if keys else ()
    sql = (
        f"SELECT string_agg(int8send(s.store_key::bigint), ''), string_agg(int8send({packed_sql}), '') "
        f"FROM stores s JOIN {table} h ON h.store_id = s.store_id {where}"
    )
    with dbapi_cursor(conn) as cursor:
        cursor.execute(sql, params, binary=True)
        blobs = cursor.fetchone()
    store_key, packed = (np.frombuffer(b or b"", dtype=">i8").astype(np.int64) for b in blobs)
    order = np.argsort(store_key, kind="stable")  # by store, as SQLite gives them
    return store_key[order], packed[order]


def zones_by_key(conn, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Time zone names of stores that have polls: store_key, timezone_str (as given), sorted by
    store_key. The database groups the stores by zone: a row per zone name, its stores' keys as
    one comma-separated text."""
    mark = placeholders(conn, 1)
    where = f"WHERE s.store_key >= {mark} AND s.store_key < {mark}" if keys else ""
    keys_text = "group_concat(s.store_key)" if conn.dialect.name == "sqlite" else "string_agg(s.store_key::text, ',')"
    rows = fetch_all(
        conn,
        f"SELECT z.timezone_str, {keys_text} FROM stores s JOIN store_timezones z ON z.store_id = s.store_id "
        f"{where} GROUP BY z.timezone_str",
        tuple(int(k) for k in keys) if keys else (),
    )
    names = np.array([row[0] for row in rows], dtype=object)
    counts = np.array([row[1].count(",") + 1 for row in rows], dtype=np.int64)
    store_key = np.fromstring(",".join(row[1] for row in rows), dtype=np.int64, sep=",") if rows else counts
    order = np.argsort(store_key, kind="stable")
    return pd.DataFrame({"store_key": store_key[order], "timezone_str": np.repeat(names, counts)[order]})


# ---------------------------------------------------------------------------------------------
# Reading one store (its timeline: storemon.explain; polls come from polls_of_stores)


def store_row(conn, store_id: str) -> dict | None:
    """The ``stores`` row of one store id (store_key, store_id, first_poll_us, last_poll_us)."""
    row = conn.exec_driver_sql(
        f"SELECT store_key, store_id, first_poll_us, last_poll_us FROM stores WHERE store_id = {placeholders(conn, 1)}",
        (store_id,),
    ).first()
    return dict(row._mapping) if row is not None else None


def hours_of_store(conn, store_id: str) -> pd.DataFrame:
    """One store's business-hours rows as stored (day, start_s, end_s), by day and start."""
    return frame(
        conn,
        f"SELECT day, start_s, end_s FROM business_hours WHERE store_id = {placeholders(conn, 1)} "
        "ORDER BY day, start_s, end_s",
        ["day", "start_s", "end_s"],
        (store_id,),
    ).astype(np.int64)


def timezone_of_store(conn, store_id: str) -> str | None:
    """One store's zone name as given, or None when it has none."""
    return conn.exec_driver_sql(
        f"SELECT timezone_str FROM store_timezones WHERE store_id = {placeholders(conn, 1)}", (store_id,)
    ).scalar()
