"""PostgreSQL: every store's polls packed by stretch of time, for the report's bulk read.

A report reads every poll of its week and a day (1.85M at 1x). Read from ``polls``, PostgreSQL
spends about 0.2 us a poll on the server (the index scan and the aggregate that packs each
store's polls), which SQLite, in process, does not. ``poll_chunks`` holds the same polls packed
ahead of time: one row per store and *chunk* -- the 2^36 us (19.1 hours) with the same
``ts_us >> CHUNK_SHIFT`` -- whose ``packed`` is the chunk's polls in time order as one ``bytea``
of big-endian int8, ``ts_us * 2 + active``. The report's read is then about ten rows per store
(:func:`storemon.storage.reads.polls_between`), which cuts the first and last chunk to its range
itself: 32 ms on the server for 10,000 stores at 1x, against 310 ms from ``polls``. It costs
about 15 bytes a poll on disk (``polls`` takes 80 with its key), about 1 s more for a first
load at 1x, and 0.5 s more for a fold of ``polls_recent`` (14,000 stores, every 12 hours).

``poll_chunks`` is derived from ``polls``, never written by storemon's Python: statement
triggers on ``polls`` repack every chunk a statement touched, from ``polls`` as it is after the
statement, in the statement's transaction (:data:`REPACK`). So any write -- an upsert, a fold
of ``polls_recent``, a status changed, a row removed by hand, ``TRUNCATE`` -- keeps the two
equal, and a reader's snapshot sees both at the same point; the repacks of two writers (storemon
serialises its own; a hand edit may not be) take turns. :func:`make_poll_chunks` makes the
table from ``polls`` and installs the triggers at start-up when they are missing
(:func:`storemon.storage.engine.tune_postgresql`: a new database, or one made before this table
existed). A first load fills it from the table it built, then installs the triggers on that
table once it has replaced ``polls`` (:func:`storemon.storage.polls.end_first_load`).
``polls_recent`` is not chunked: the report reads its few polls per store directly.
"""

from __future__ import annotations

CHUNK_SHIFT = 36  # a chunk is the polls with the same ts_us >> CHUNK_SHIFT: 2^36 us, 19.1 hours
# (Instants stay within pandas' datetimes, before 2262, so ts_us * 2 and the chunks' bounds
# fit in int8.)

# What the table's comment says of its content: a table packed another way is made again.
LAYOUT = f"storemon poll_chunks 1: ts_us >> {CHUNK_SHIFT}, int8 ts_us * 2 + active"

# The trigger function: repack the chunks of the rows a statement on polls inserted, updated or
# deleted (its transition table ``changed``; for an update also ``changed_before``, as a key may
# change). A chunk left without polls is deleted.
REPACK = f"""
CREATE OR REPLACE FUNCTION storemon_repack_poll_chunks() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  keys integer[];
  chunks bigint[];
BEGIN
  -- One statement at a time repacks: the next statement's snapshot then holds what the writer
  -- before it committed (two writers of one chunk would each pack without the other's rows).
  LOCK TABLE poll_chunks IN SHARE ROW EXCLUSIVE MODE;
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM poll_chunks;
    RETURN NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    SELECT array_agg(store_key), array_agg(chunk) INTO keys, chunks FROM (
      SELECT store_key, ts_us >> {CHUNK_SHIFT} AS chunk FROM changed
      UNION SELECT store_key, ts_us >> {CHUNK_SHIFT} FROM changed_before) touched;
  ELSE
    SELECT array_agg(store_key), array_agg(chunk) INTO keys, chunks FROM (
      SELECT DISTINCT store_key, ts_us >> {CHUNK_SHIFT} AS chunk FROM changed) touched;
  END IF;
  INSERT INTO poll_chunks (store_key, chunk, packed)
  SELECT c.store_key, c.chunk, coalesce((
      SELECT string_agg(int8send(p.ts_us * 2 + p.active::int), '' ORDER BY p.ts_us) FROM polls p
      WHERE p.store_key = c.store_key
      AND p.ts_us >= c.chunk << {CHUNK_SHIFT} AND p.ts_us < (c.chunk + 1) << {CHUNK_SHIFT}), '')
  FROM unnest(keys, chunks) AS c(store_key, chunk)
  ON CONFLICT (store_key, chunk) DO UPDATE SET packed = excluded.packed;
  DELETE FROM poll_chunks d USING unnest(keys, chunks) AS c(store_key, chunk)
  WHERE d.store_key = c.store_key AND d.chunk = c.chunk AND d.packed = '';
  RETURN NULL;
END
$fn$
"""

# name -> (event, transition tables)
TRIGGERS = {
    "polls_chunks_insert": ("INSERT", "REFERENCING NEW TABLE AS changed"),
    "polls_chunks_update": ("UPDATE", "REFERENCING OLD TABLE AS changed_before NEW TABLE AS changed"),
    "polls_chunks_delete": ("DELETE", "REFERENCING OLD TABLE AS changed"),
    "polls_chunks_truncate": ("TRUNCATE", ""),
}

# True when poll_chunks is kept: the table, packed as LAYOUT says, and every trigger there and
# enabled. The report reads poll_chunks only then (else polls); a start-up makes it so.
IS_KEPT = (
    f"SELECT coalesce(obj_description(to_regclass('poll_chunks'), 'pg_class') = '{LAYOUT}', false) "
    "AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('polls') AND tgenabled <> 'D' "
    f"AND tgname IN ({', '.join(repr(n) for n in TRIGGERS)})) = {len(TRIGGERS)}"
)


def make_poll_chunks(conn) -> None:
    """``poll_chunks`` made from ``polls`` and kept by its triggers (at start-up, when
    :data:`IS_KEPT` is false). ``polls`` is locked against writes first: an ingest writing now
    (from another process, before the triggers exist) is waited for, and the next waits."""
    conn.exec_driver_sql("LOCK TABLE polls IN SHARE ROW EXCLUSIVE MODE")
    fill_poll_chunks(conn, "polls")
    keep_poll_chunks(conn)


def fill_poll_chunks(conn, source: str) -> None:
    """Make ``poll_chunks`` the polls of table ``source`` packed (created if missing, emptied
    first), with its planner statistics. Runs in the caller's transaction; ``source`` must not
    change meanwhile (the caller has locked it, or created it in this transaction)."""
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS poll_chunks (store_key integer NOT NULL, chunk bigint NOT NULL, "
        "packed bytea NOT NULL, PRIMARY KEY (store_key, chunk))"
    )
    conn.exec_driver_sql(f"COMMENT ON TABLE poll_chunks IS '{LAYOUT}'")
    conn.exec_driver_sql("DELETE FROM poll_chunks")
    # Fed in order from a sorted subquery (PostgreSQL aggregates a group's rows in the order they
    # come), not by the aggregate's own ORDER BY, which sorts each chunk anew: 0.95 s against
    # 1.26 s at 1x (1.85M polls). Were a chunk ever packed out of order, the reader sorts it.
    conn.exec_driver_sql(
        "INSERT INTO poll_chunks (store_key, chunk, packed) "
        "SELECT store_key, chunk, string_agg(int8send(ts_us * 2 + active::int), '') FROM ("
        f"SELECT store_key, ts_us >> {CHUNK_SHIFT} AS chunk, ts_us, active FROM {source} "
        "ORDER BY store_key, chunk, ts_us) p GROUP BY store_key, chunk"
    )
    conn.exec_driver_sql("ANALYZE poll_chunks")


def keep_poll_chunks(conn) -> None:
    """Install (again) the trigger function and the triggers on ``polls`` that keep
    ``poll_chunks`` equal to it."""
    conn.exec_driver_sql(REPACK)
    for name, (event, transitions) in TRIGGERS.items():
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON polls")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name} AFTER {event} ON polls {transitions} "
            "FOR EACH STATEMENT EXECUTE FUNCTION storemon_repack_poll_chunks()"
        )


def drop_poll_chunks(conn) -> None:
    """Remove ``poll_chunks`` and its trigger function (the triggers go with either)."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS poll_chunks")
    conn.exec_driver_sql("DROP FUNCTION IF EXISTS storemon_repack_poll_chunks() CASCADE")
