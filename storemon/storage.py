"""Storage: engine set-up and the queries the rest of the app needs (no computation here)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from sqlalchemy import Engine, event, insert, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from . import models  # noqa: F401  (registers the tables)
from .extensions import db
from .models import IngestRecord


class DatabaseBusy(Exception):
    """Another writer (an ingest) held the lock longer than we were willing to wait."""


class DatabaseReadOnly(Exception):
    """The database cannot be written (read-only file, folder or server)."""


def jobs_url_beside(url: str) -> str:
    """Where report job state goes by default: a SQLite file beside a SQLite database
    (``storemon.db`` -> ``storemon.jobs.db``), else the database itself."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = Path(parsed.database)
    return parsed.set(database=str(path.with_name(f"{path.stem}.jobs{path.suffix or '.db'}"))).render_as_string(
        hide_password=False
    )


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's "database is locked" / PostgreSQL's lock_timeout, however it is wrapped."""
    orig = getattr(exc, "orig", exc)
    return "database is locked" in str(orig) or getattr(orig, "sqlstate", None) == "55P03"


def is_read_only_error(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    text = str(orig).lower()
    return "readonly database" in text or "read-only" in text or getattr(orig, "sqlstate", None) == "25006"


_read_only_seen: dict[str, tuple[float, str]] = {}  # engine URL -> (when, why) a write was refused
READ_ONLY_MEMORY_S = 300.0  # a refused write keeps /health "degraded" this long


def note_read_only(engine: Engine, reason: str) -> None:
    """Remember that a write was refused as read-only (shown by /health for a while)."""
    _read_only_seen[str(engine.url)] = (time.monotonic(), reason)


def read_only_reason(engine: Engine) -> str | None:
    """Why the database cannot be written, or None when nothing says so (a cheap check, no lock).

    SQLite: opened read-only (``mode=ro`` / ``immutable``), the file or its folder not writable
    by this user, or a write refused in the last few minutes. PostgreSQL: the server says so.
    """
    seen = _read_only_seen.get(str(engine.url))
    if seen and time.monotonic() - seen[0] < READ_ONLY_MEMORY_S:
        return f"a write was refused: {seen[1]}"
    if engine.dialect.name == "sqlite":
        query = engine.url.query
        if query.get("mode") == "ro" or query.get("immutable") in ("1", "true"):
            return "the SQLite database is opened read-only (mode=ro in DATABASE_URL)"
        name = engine.url.database
        if not name or name == ":memory:" or name.startswith("file:"):
            return None
        path = Path(name)
        if path.exists() and not os.access(path, os.W_OK):
            return f"the database file {path} is read-only"
        if not os.access(path.parent, os.W_OK):
            return f"the database folder {path.parent} is read-only (SQLite needs to write its journal there)"
        return None
    with engine.connect() as conn:
        if conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
            return "the database server accepts only reads (transaction_read_only = on)"
    return None


@contextmanager
def write_transaction(engine: Engine, wait_seconds: float, lock: int | None = None):
    """One write transaction, waiting at most ``wait_seconds`` for the writer before us.

    SQLite has one writer at a time: ``BEGIN IMMEDIATE`` takes the lock up front, and the busy
    timeout of this connection is set to the wait. PostgreSQL's ingests serialise on an
    advisory lock (see :func:`lock_for_ingest`) under a ``lock_timeout``. Either way, a wait
    that runs out raises :class:`DatabaseBusy`, a read-only database :class:`DatabaseReadOnly`.
    ``lock`` names another advisory lock than the ingests' (PostgreSQL only).
    """
    wait_ms = max(int(wait_seconds * 1000), 1)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # on the driver's connection: a statement here must not begin a transaction
            conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {wait_ms}")
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            try:
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {wait_ms}")
                    lock_for_ingest(conn, _INGEST_LOCK if lock is None else lock)
                    if not sqlite:
                        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                    yield conn
            except (OperationalError, DBAPIError) as exc:
                if is_locked_error(exc):
                    raise DatabaseBusy(f"another ingest held the database for more than {wait_seconds:g} s") from exc
                if is_read_only_error(exc):
                    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                    note_read_only(engine, reason)
                    raise DatabaseReadOnly(reason) from exc
                raise
        finally:
            if sqlite:
                restore = int(_busy_timeout_ms.get(id(engine), 30000))
                conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {restore}")


_busy_timeout_ms: dict[int, int] = {}
PAGE_CACHE = -65536  # SQLite page cache per connection: 64 MiB


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Tune a SQLite engine: WAL, a busy timeout, and transactions that really begin.

    * WAL lets readers (a running report) and one writer (an hourly ingest) work at once.
    * ``busy_timeout`` makes a second writer wait instead of failing with "database is locked".
    * Python's sqlite3 module does not start a transaction before a SELECT, so a report's
      several reads would each see a different state of the database. We take transaction
      control from the driver and emit ``BEGIN`` ourselves (SQLAlchemy's documented recipe), so
      one report reads one consistent snapshot. Writers pass the execution option
      ``sqlite_begin="IMMEDIATE"`` to take the write lock up front, which avoids the
      "cannot upgrade a read transaction" failure under concurrency.
    """
    if engine.dialect.name != "sqlite":
        return
    _busy_timeout_ms[id(engine)] = busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA cache_size = {PAGE_CACHE}")
        cursor.execute("PRAGMA temp_store = MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def dispose_all() -> None:
    """Close every pooled connection of the app's engines (the data's and the jobs')."""
    for engine in db.engines.values():
        engine.dispose()


def init_schema() -> None:
    """Create missing tables (in every bind), and add the nullable columns a newer version gave a table.

    Several processes start at once (gunicorn's workers), so on SQLite each bind's tables are
    created in one ``BEGIN IMMEDIATE`` transaction: the first process creates them, the others
    wait for its lock (the busy timeout) and find them there. (A plain check-then-create upgrades
    a read lock to a write lock, and SQLite answers that race with "database is locked" at once.)
    """
    for key, engine in db.engines.items():
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                db.metadatas[key].create_all(conn)
        add_missing_columns(engine, db.metadatas[key])


def empty_database() -> None:
    """Drop storemon's tables and create them again, empty."""
    db.drop_all()
    db.create_all()


def remove_database() -> str:
    """Delete a SQLite database file and the report jobs' file beside it (with their -wal/-shm);
    on another database drop storemon's tables. Returns what was removed, for the user."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db.session.remove()
        dispose_all()
        files = [e.url.database for e in db.engines.values() if e.url.get_backend_name() == "sqlite"]
        for name in dict.fromkeys(f for f in files if f and f != ":memory:"):
            for suffix in ("", "-wal", "-shm"):
                Path(name + suffix).unlink(missing_ok=True)
        return url.database
    db.drop_all()
    return f"storemon's tables in {url.render_as_string(hide_password=True)}"


def add_missing_columns(engine: Engine, metadata) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for each nullable model column an existing table lacks.

    ``create_all`` only creates missing tables, so a database made by an earlier version would
    otherwise miss the columns added since (``reports.latest_poll_us``, ``reports.warning``).
    Only additive, nullable columns are handled; several processes starting at once may race to
    add one, which is harmless. Returns the ``table.column`` names added.
    """
    added = []
    existing = {
        name: {c["name"] for c in columns} for (_, name), columns in inspect(engine).get_multi_columns().items()
    }
    for table in metadata.sorted_tables:
        have = existing.get(table.name)
        if have is None:
            continue
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            if_missing = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {if_missing}{column.name} {kind}")
            except OperationalError as exc:  # SQLite: another process added it first
                if "duplicate column" not in str(exc):
                    raise
            added.append(f"{table.name}.{column.name}")
    return added


# ---------------------------------------------------------------------------------------------
# The ingest ledger


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def ledger_find(conn, kind: str, sha256: str) -> dict | None:
    """The last time this content was stored for this feed, or None."""
    mark = _placeholders(conn, 1)
    found = conn.exec_driver_sql(  # plain SQL first: the usual answer, None, without building a query
        f"SELECT max(id) FROM ingests WHERE kind = {mark} AND sha256 = {mark} AND outcome = 'stored'", (kind, sha256)
    ).scalar()
    if found is None:
        return None
    row = conn.execute(
        select(IngestRecord.id, IngestRecord.finished_at, IngestRecord.file_name).where(IngestRecord.id == found)
    ).first()
    return dict(row._mapping)


def ledger_add(conn, **values) -> int:
    """Append one ledger row (inside the caller's transaction); return its id."""
    values.setdefault("finished_at", _utcnow())
    result = conn.execute(insert(IngestRecord).values(**values).returning(IngestRecord.id))
    return int(result.scalar_one())


def ledger_list(conn, limit: int = 100, offset: int = 0) -> list[dict]:
    """Ledger rows, newest first."""
    table = IngestRecord.__table__
    rows = conn.execute(select(table).order_by(table.c.id.desc()).limit(limit).offset(offset)).mappings().all()
    return [dict(row) for row in rows]


def data_version(conn) -> int:
    """The id of the last ledger row that stored data (0 when none): changes with every ingest
    that wrote, so two reports with the same ``now`` and version have the same content."""
    value = conn.exec_driver_sql("SELECT max(id) FROM ingests WHERE outcome = 'stored'").scalar()
    return int(value or 0)


# ---------------------------------------------------------------------------------------------
# Writing the feeds (called by storemon.ingest inside one transaction per file)

_INGEST_LOCK = 0x5709E  # PostgreSQL advisory lock key: one ingest transaction at a time


def lock_for_ingest(conn, key: int = _INGEST_LOCK) -> None:
    """Serialise ingest transactions, as SQLite's BEGIN IMMEDIATE does for it.

    On PostgreSQL two files arriving at once (from two web hosts, say) could otherwise both
    create the same new store, or both replace one store's hours and leave the union.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")


def _placeholders(conn, n: int) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def _lesser(conn) -> tuple[str, str]:
    """SQL names of the two-argument min / max functions."""
    return ("min", "max") if conn.dialect.name == "sqlite" else ("least", "greatest")


class FeedWriter:
    """Writes one feed's parsed rows; one instance per file (it may keep per-file state)."""

    kind = ""
    rows_stored = 0  # distinct rows the file stored (known after finish)
    span: tuple[int, int] | None = None  # polls: earliest and latest instant written (the ledger's)

    @staticmethod
    def for_kind(kind: str) -> "FeedWriter":
        return {"status": PollWriter, "hours": HoursWriter, "timezones": TimezoneWriter}[kind]()

    def write(self, conn, rows) -> int | None:
        """Store a chunk of rows; return how many rows changed, or None when not counted."""
        raise NotImplementedError

    def finish(self, conn) -> int | None:
        """Called once after the last chunk, inside the same transaction; returns how many rows
        changed then (as :meth:`write`), or None."""


FLUSH_ROWS = 500_000  # parsed polls held before they are written in key order (17 bytes each: 9 MB) ...
WRITE_ROWS = 250_000  # ... handed to SQLite this many at a time (as one text of ~5 MB)

_POLL_CONFLICT = (
    "ON CONFLICT (store_key, ts_us) DO UPDATE SET active = excluded.active "
    "WHERE polls.active <> excluded.active"
)


def packed_polls(store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray):
    """Polls as one integer each, for SQLite to unpack: yields ``(base, shift, packed)`` per part.

    ``packed = store_key << (shift + 1) | (ts_us - base) << 1 | active`` -- all three in one
    int64, exact while the key's bits plus the bits of ``ts_us - base`` stay within 62. Rows are
    split by time into parts where they do not (in practice one part: keys below 2**20 leave 42
    bits, 50 days, for the time), keeping their order within each part.
    """
    key_bits = max(int(store_key.max()).bit_length(), 1) if len(store_key) else 1
    shift = 62 - key_bits
    base = int(ts_us.min()) if len(ts_us) else 0
    offset = ts_us.astype(np.int64) - base
    part = offset >> shift
    packed = (store_key.astype(np.int64) << (shift + 1)) | ((offset & ((1 << shift) - 1)) << 1)
    packed |= active.astype(np.int64)
    if len(part) == 0 or part.max() == 0:  # offsets are >= 0: one part
        yield base, shift, packed
        return
    for p in np.unique(part):
        yield base + (int(p) << shift), shift, packed[part == p]


def _json_ints(values: np.ndarray) -> str:
    """Integers as one JSON array (text), for ``json_each`` to unpack inside SQLite."""
    return "[" + ",".join(map(str, values.tolist())) + "]"


def insert_polls(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray, conflict: str,
                 table: str = "polls") -> int:
    """``INSERT INTO table ... {conflict}`` of many polls at once; returns the rows changed.

    SQLite: the rows travel as one JSON array of packed integers (:func:`packed_polls`) per
    :data:`WRITE_ROWS`, unpacked by ``json_each`` inside SQLite -- one statement instead of a
    Python tuple and a parameter binding per row (``executemany``), about four times faster.
    """
    changed = 0
    for at in range(0, len(ts_us), WRITE_ROWS):
        part = slice(at, at + WRITE_ROWS)
        for base, shift, packed in packed_polls(store_key[part], ts_us[part], active[part]):
            result = conn.exec_driver_sql(
                f"INSERT INTO {table} (store_key, ts_us, active) SELECT value >> ?, ((value >> 1) & ?) + ?, "
                f"value & 1 FROM json_each(?) WHERE true {conflict}",
                (shift + 1, (1 << shift) - 1, base, _json_ints(packed)),
            )
            changed += max(result.rowcount, 0)
    return changed


RECENT_POLLS_PER_STORE = 12  # polls_recent holds up to this many polls per store (half a day) ...
RECENT_POLLS_MIN = 50_000  # ... or this many, whichever is more


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
        f"WHERE true ORDER BY store_key, ts_us {_POLL_CONFLICT}"
    ).rowcount
    conn.exec_driver_sql("DELETE FROM polls_recent")
    return max(moved, 0)


def update_polls(conn, store_key: np.ndarray, ts_us: np.ndarray, active: np.ndarray) -> int:
    """Polls that may already be stored, on SQLite: a key in ``polls_recent`` is updated there,
    any other key upserted into ``polls``. Returns the keys that are new or change a status."""
    changed = 0
    for at in range(0, len(ts_us), WRITE_ROWS):
        part = slice(at, at + WRITE_ROWS)
        for base, shift, packed in packed_polls(store_key[part], ts_us[part], active[part]):
            # (a subquery, not WITH: Python's sqlite3 gives no rowcount for a statement that starts with WITH)
            given = (
                "(SELECT value >> ? AS store_key, ((value >> 1) & ?) + ? AS ts_us, value & 1 AS active "
                "FROM json_each(?)) AS given"
            )
            params = (shift + 1, (1 << shift) - 1, base, _json_ints(packed))
            changed += max(conn.exec_driver_sql(
                f"UPDATE polls_recent SET active = given.active FROM {given} WHERE polls_recent.store_key = "
                "given.store_key AND polls_recent.ts_us = given.ts_us AND polls_recent.active <> given.active",
                params,
            ).rowcount, 0)
            changed += max(conn.exec_driver_sql(
                f"INSERT INTO polls (store_key, ts_us, active) SELECT store_key, ts_us, active FROM {given} "
                "WHERE NOT EXISTS (SELECT 1 FROM polls_recent r WHERE r.store_key = given.store_key "
                f"AND r.ts_us = given.ts_us) {_POLL_CONFLICT}",
                params,
            ).rowcount, 0)
    return changed


def _copy_upsert_polls(conn, frame: pd.DataFrame, direct: bool) -> tuple[int, bool]:
    """PostgreSQL's fast path. Returns (rows changed, whether ``direct`` still holds).

    ``direct`` (the polls table was empty when the file began): COPY the chunk straight into
    ``polls`` -- a first load at COPY speed. Should a key repeat across chunks, the unique
    violation is rolled back to a savepoint and this and later chunks take the general path:
    COPY into a temp table, then one ``INSERT ... ON CONFLICT`` (the later row wins).
    """
    text = frame.to_csv(sep="\t", header=False, index=False)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if direct:
            cursor.execute("SAVEPOINT polls_direct")
            try:
                with cursor.copy("COPY polls (store_key, ts_us, active) FROM STDIN") as copy:
                    copy.write(text)
                cursor.execute("RELEASE SAVEPOINT polls_direct")
                return len(frame), True
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "sqlstate", None) != "23505":  # unique_violation
                    raise
                cursor.execute("ROLLBACK TO SAVEPOINT polls_direct")
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS polls_incoming "
            "(store_key integer, ts_us bigint, active boolean) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE polls_incoming")
        with cursor.copy("COPY polls_incoming (store_key, ts_us, active) FROM STDIN") as copy:
            copy.write(text)
        cursor.execute(
            f"INSERT INTO polls (store_key, ts_us, active) SELECT store_key, ts_us, active "
            f"FROM polls_incoming {_POLL_CONFLICT}"
        )
        return max(cursor.rowcount, 0), False
    finally:
        cursor.close()


class PollWriter(FeedWriter):
    """Upserts polls keyed by (store, ts_us); the later row for a key wins.

    New store ids get a row (and a ``store_key``) in ``stores`` first. Parsed chunks are held
    (as three numeric columns, about 17 bytes a row) until :data:`FLUSH_ROWS` rows have come,
    then sorted by the primary key (a stable sort, so of two rows for one key the later is still
    written last) and written: writing in key order keeps B-tree work local, and a feed ordered
    by time otherwise sends every chunk across every store's pages -- with the file's size, the
    number of chunks and the pages each touches both grow. Only keys that are new or change a
    status are counted, so re-ingesting an unchanged file reports 0.

    On SQLite a small write -- the hourly feed -- goes to ``polls_recent`` (see
    :class:`~storemon.models.RecentPoll`): a poll later than every poll stored for its store is
    inserted there; any other poll updates its key where it is (``polls_recent`` or ``polls``) or
    is added to ``polls``, so a key is never in both tables. A file that would take
    ``polls_recent`` past :func:`recent_limit` first folds it into ``polls``; a file bigger than
    the limit itself or than one write (:data:`FLUSH_ROWS`: a first load, a back-fill) goes to
    ``polls``, after a fold.
    """

    kind = "status"

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
        self.recent: int | None = None  # SQLite: rows in polls_recent (counted at the first write) ...
        self.recent_limit = 0  # ... and how many it may hold
        self.to_polls = False  # SQLite: this file's rows go to polls (it was too big for polls_recent)
        self.flushed = False  # rows were written already (the file is bigger than one write)
        self.direct: bool | None = None  # PostgreSQL: COPY straight into an empty polls table
        self.distinct = DistinctKeys()  # the file's distinct (store, timestamp) keys
        self.pending: list[dict[str, np.ndarray]] = []  # parsed chunks not written yet
        self.pending_rows = 0

    @property
    def stores(self) -> int:
        """Distinct stores among the rows written."""
        return int(self.seen.sum())

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
        keys = self._record_spans(conn, store_ids, span["min"].to_numpy(np.int64), span["max"].to_numpy(np.int64))
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
        self.distinct.add(keys, ts, overlaps=bool((ts <= self.file_last[keys]).any()))
        self.file_last[keys[ends]] = np.maximum(self.file_last[keys[ends]], ts[ends])
        if conn.dialect.name == "postgresql":
            frame = pd.DataFrame({"store_key": keys, "ts_us": ts, "active": active})
            if self.direct is None:  # decided once per file, at its first write
                self.direct = conn.exec_driver_sql("SELECT NOT EXISTS (SELECT 1 FROM polls)").scalar()
            changed, self.direct = _copy_upsert_polls(conn, frame, self.direct)
            return changed
        changed = self._write_sqlite(conn, keys, ts, active, whole_file=final and not self.flushed)
        self.flushed = True
        self.stored_last[keys[ends]] = np.maximum(self.stored_last[keys[ends]], ts[ends])
        return changed

    def _write_sqlite(self, conn, keys: np.ndarray, ts: np.ndarray, active: np.ndarray, whole_file: bool) -> int:
        """Write sorted, distinct polls to ``polls_recent`` or ``polls`` (see the class docstring).
        ``whole_file``: these are all the file's polls (it came in one write)."""
        if self.recent is None:
            self.recent = int(conn.exec_driver_sql("SELECT count(*) FROM polls_recent").scalar())
            self.recent_limit = recent_limit(len(self.key_of))
        if not self.to_polls and (not whole_file or self.recent + len(ts) > self.recent_limit):
            if self.recent:
                fold_recent_polls(conn)
            self.recent = 0
            self.to_polls = not whole_file or len(ts) > self.recent_limit
        if self.to_polls:
            return insert_polls(conn, keys, ts, active, _POLL_CONFLICT)
        fresh = ts > self.stored_last[keys]  # later than any poll of its store: in neither table
        changed = insert_polls(conn, keys[fresh], ts[fresh], active[fresh], "", table="polls_recent")
        self.recent += changed
        if not fresh.all():
            old = ~fresh
            changed += update_polls(conn, keys[old], ts[old], active[old])
        return changed

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
            else:
                cursor = _cursor(conn, "SELECT store_id, store_key, first_poll_us, last_poll_us FROM stores")
                try:
                    known = cursor.fetchall()
                finally:
                    cursor.close()
                ids = [row[0] for row in known]
                columns = [np.fromiter((row[i] for row in known), dtype=np.int64, count=len(known)) for i in (1, 2, 3)]
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
        for name, fill in (("first", high), ("last", low), ("db_first", high), ("db_last", low),
                           ("stored_last", low), ("file_last", low)):
            setattr(self, name, np.concatenate([getattr(self, name), np.full(grow, fill, dtype=np.int64)]))
        self.seen = np.concatenate([self.seen, np.zeros(grow, dtype=bool)])

    def _record_spans(self, conn, store_ids, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Create unknown stores now (their polls need a key); widen known spans at the end.
        Returns the store key of each of ``store_ids``. (Vectorised: a chunk of a big file names
        every store, so a Python loop per store per chunk grows with the square of the size.)"""
        at = self.known_ids(conn).get_indexer(store_ids)
        new = at < 0
        if new.any():
            top = int(self.key_of.max()) if len(self.key_of) else 0
            fresh = np.asarray(store_ids, dtype=object)[new]
            conn.exec_driver_sql(
                f"INSERT INTO stores (store_id, first_poll_us, last_poll_us) VALUES ({_placeholders(conn, 3)})",
                list(zip(fresh.tolist(), first[new].tolist(), last[new].tolist())),
            )
            added = _frame(conn, f"SELECT store_id, store_key FROM stores WHERE store_key > {_placeholders(conn, 1)}",
                           ["store_id", "store_key"], (top,))
            self.ids = self.ids.append(pd.Index(added["store_id"].astype(object)))
            self.key_of = np.concatenate([self.key_of, added["store_key"].to_numpy(np.int64)])
            self._grow()
            at = self.ids.get_indexer(store_ids)
        keys = self.key_of[at]
        created = keys[new]  # their row holds this chunk's span
        self.db_first[created], self.db_last[created] = first[new], last[new]
        old = keys[~new]
        self.first[old] = np.minimum(self.first[old], first[~new])
        self.last[old] = np.maximum(self.last[old], last[~new])
        self.seen[keys] = True
        return keys

    def finish(self, conn) -> int:
        """The rows still held, then the spans in ``stores`` the file widens: once per store (not
        once per store per chunk). Returns how many keys the last write made new or changed."""
        changed = self._flush(conn, final=True)
        self.rows_stored = self.distinct.count()
        mark = _placeholders(conn, 1)
        low, high = _lesser(conn)
        earlier = np.flatnonzero(self.first < self.db_first)  # a back-fill
        if len(earlier):
            conn.exec_driver_sql(
                f"UPDATE stores SET first_poll_us = {low}(first_poll_us, {mark}) WHERE store_key = {mark}",
                list(zip(self.first[earlier].tolist(), earlier.tolist())),
            )
        later = np.flatnonzero(self.last > self.db_last)  # every store of an hourly feed
        if not len(later):
            return changed
        last = self.last[later]
        base = int(last.min())
        shift = 62 - max(int(later.max()).bit_length(), 1)
        if conn.dialect.name == "sqlite" and int(last.max()) - base < (1 << shift):
            # One statement, the (key, instant) pairs packed as in insert_polls.
            packed = (later.astype(np.int64) << shift) | (last - base)
            conn.exec_driver_sql(
                "UPDATE stores SET last_poll_us = max(last_poll_us, given.ts_us) FROM (SELECT value >> ? AS "
                "store_key, (value & ?) + ? AS ts_us FROM json_each(?)) AS given "
                "WHERE stores.store_key = given.store_key",
                (shift, (1 << shift) - 1, base, _json_ints(packed)),
            )
        else:
            conn.exec_driver_sql(
                f"UPDATE stores SET last_poll_us = {high}(last_poll_us, {mark}) WHERE store_key = {mark}",
                list(zip(last.tolist(), later.tolist())),
            )
        return changed


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

    SPAN = 1 << 44
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
        if self.base is None:
            self.base = int(ts.min()) - self.SPAN // 2
        offset = ts - self.base
        fits = self.packed and offset.min() >= 0 and offset.max() < self.SPAN and store_keys.max() < (1 << 19)
        if self.packed and not fits:
            self.seen = self._unpack(self.seen)
            self.parts = [self._unpack(p) for p in self.parts]
            self.packed = False
        if self.packed:
            return (store_keys.astype(np.int64) << 44) | offset
        return store_keys.astype(np.float64) + 1j * ts.astype(np.float64)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return (packed >> 44).astype(np.float64) + 1j * ((packed & (self.SPAN - 1)) + self.base).astype(np.float64)

    def _fold(self) -> None:
        # The folded keys and each chunk's keys are sorted runs: a stable sort (timsort) merges
        # them in about linear time, where the default sort does not.
        merged = np.sort(np.concatenate([self.seen, *self.parts]), kind="stable")
        self.parts = []
        self.seen = merged[np.r_[True, merged[1:] != merged[:-1]]] if len(merged) else merged
        self.kept = len(self.seen)

    def count(self) -> int:
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
        mark = _placeholders(conn, 1)
        self.rows_stored += len(rows)
        if fresh and self.empty:
            self.replaced.update(fresh)
        elif fresh:
            conn.exec_driver_sql(f"DELETE FROM business_hours WHERE store_id = {mark}", [(s,) for s in fresh])
            self.replaced.update(fresh)
        conn.exec_driver_sql(
            f"INSERT INTO business_hours (store_id, day, start_s, end_s) VALUES ({_placeholders(conn, 4)})",
            list(
                zip(
                    rows["store_id"].tolist(),
                    rows["day"].tolist(),
                    rows["start_s"].tolist(),
                    rows["end_s"].tolist(),
                )
            ),
        )
        return None

    def finish(self, conn) -> None:
        # The same row given twice in one file (in different chunks) is kept once. Only stores
        # named in more than one chunk can hold such a repeat (each chunk was free of them).
        if self.again:
            mark = _placeholders(conn, 1)
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
        result = conn.exec_driver_sql(
            f"INSERT INTO store_timezones (store_id, timezone_str) VALUES ({_placeholders(conn, 2)}) "
            "ON CONFLICT (store_id) DO UPDATE SET timezone_str = excluded.timezone_str "
            "WHERE store_timezones.timezone_str <> excluded.timezone_str",
            list(zip(rows["store_id"].tolist(), rows["timezone_str"].tolist())),
        )
        return max(result.rowcount, 0)


# ---------------------------------------------------------------------------------------------
# Reading what a report needs (called inside one read transaction: one consistent snapshot)


def _cursor(conn, sql: str, params=()):
    """Run a query on the connection's DBAPI cursor (same transaction), for bulk reads.

    SQLAlchemy's Row objects cost microseconds each; a report reads millions of values.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    cursor.execute(sql, params)
    return cursor


def _frame(conn, sql: str, columns: list[str], params=()) -> pd.DataFrame:
    cursor = _cursor(conn, sql, params)
    try:
        return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
    finally:
        cursor.close()


def latest_poll_us(conn) -> int | None:
    """The latest poll instant in the database (``now`` of a report without ``as_of``)."""
    return conn.exec_driver_sql("SELECT max(last_poll_us) FROM stores").scalar()


def earliest_poll_us(conn) -> int | None:
    """The earliest poll instant in the database."""
    return conn.exec_driver_sql("SELECT min(first_poll_us) FROM stores").scalar()


def latest_poll_at_or_before(conn, now_us: int) -> int | None:
    """The latest poll at or before ``now_us``: one primary-key seek per store."""
    mark = _placeholders(conn, 1)
    in_polls = conn.exec_driver_sql(
        f"SELECT max((SELECT max(p.ts_us) FROM polls p WHERE p.store_key = s.store_key AND p.ts_us <= {mark})) "
        f"FROM stores s WHERE s.first_poll_us <= {mark}",
        (now_us, now_us),
    ).scalar()
    in_recent = conn.exec_driver_sql(f"SELECT max(ts_us) FROM polls_recent WHERE ts_us <= {mark}", (now_us,)).scalar()
    return max((v for v in (in_polls, in_recent) if v is not None), default=None)


def report_stores(conn, now_us: int) -> pd.DataFrame:
    """Stores with a poll at or before ``now_us``: store_key, store_id, first_poll_us."""
    return _frame(
        conn,
        f"SELECT store_key, store_id, first_poll_us FROM stores WHERE first_poll_us <= {_placeholders(conn, 1)}",
        ["store_key", "store_id", "first_poll_us"],
        (now_us,),
    )


def all_stores(conn) -> pd.DataFrame:
    """Every store: store_key, store_id, first_poll_us, sorted by store_key."""
    cursor = _cursor(conn, "SELECT store_key, store_id, first_poll_us FROM stores ORDER BY store_key")
    try:
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return pd.DataFrame({  # column by column: DataFrame.from_records costs more than the read
        "store_key": np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        "store_id": np.array([r[1] for r in rows], dtype=object),
        "first_poll_us": np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
    })


def polls_tables(conn) -> tuple[str, ...]:
    """Where polls are: SQLite writes new ones to polls_recent first, PostgreSQL never does."""
    return ("polls", "polls_recent") if conn.dialect.name == "sqlite" else ("polls",)


# Every stored poll (a key is in one of the two tables), for a FROM clause.
ALL_POLLS = "(SELECT store_key, ts_us, active FROM polls UNION ALL SELECT store_key, ts_us, active FROM polls_recent)"


def polls_between(conn, from_us: int, to_us: int, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Every poll with ``from_us <= ts_us <= to_us``: store_key, ts_us, active, sorted by
    store_key then ts_us. ``keys`` = ``(low, high)`` limits it to ``low <= store_key < high``
    (a report computed in batches of stores reads one batch at a time).

    The outer loop walks ``stores`` and seeks each store's range in the polls primary key, so
    the cost follows the polls in the range, not the length of history. Each store's polls come
    back as one text value -- ``(ts_us - from_us) * 2 + active`` in decimal, comma-separated,
    aggregated by the database -- which numpy parses in one call: a Python object per store
    instead of one per poll, about three times faster than fetching 1.85M rows.
    """
    mark = _placeholders(conn, 1)
    where, params = "", [from_us, from_us, to_us]
    if keys is not None:
        where = f"WHERE s.store_key >= {mark} AND s.store_key < {mark}"
        params += [int(keys[0]), int(keys[1])]
    if conn.dialect.name == "sqlite":
        sql = (
            f"SELECT s.store_key, (SELECT group_concat((p.ts_us - {mark}) * 2 + p.active) FROM polls p "
            f"WHERE p.store_key = s.store_key AND p.ts_us >= {mark} AND p.ts_us <= {mark}) AS packed "
            f"FROM stores s {where} ORDER BY s.store_key"
        )
    else:  # (PostgreSQL writes polls straight to polls: see PollWriter)
        sql = (
            f"SELECT s.store_key, string_agg(((p.ts_us - {mark}) * 2 + p.active::int)::text, ',' ORDER BY p.ts_us) "
            f"FROM stores s JOIN polls p ON p.store_key = s.store_key AND p.ts_us >= {mark} AND p.ts_us <= {mark} "
            f"{where} GROUP BY s.store_key ORDER BY s.store_key"
        )
    cursor = _cursor(conn, sql, params)
    try:
        rows = [row for row in cursor.fetchall() if row[1]]
    finally:
        cursor.close()
    keys_out, packed = _unpack_per_store(rows)
    if conn.dialect.name == "sqlite":  # polls_recent, one range read (it holds a few polls per store)
        key_range = f"AND store_key >= {mark} AND store_key < {mark}" if keys is not None else ""
        row = conn.exec_driver_sql(
            f"SELECT group_concat(store_key), group_concat((ts_us - {mark}) * 2 + active) FROM polls_recent "
            f"WHERE ts_us >= {mark} AND ts_us <= {mark} {key_range}",
            tuple(params),
        ).one()
        if row[0]:
            recent_keys = np.array(row[0].split(","), dtype=np.int64)
            recent = np.array(row[1].split(","), dtype=np.int64)
            order = np.lexsort((recent, recent_keys))
            recent_keys, recent = recent_keys[order], recent[order]
            # after each store's polls from polls (recent ones are usually the later: checked below)
            at = np.searchsorted(keys_out, recent_keys, side="right")
            keys_out, packed = np.insert(keys_out, at, recent_keys), np.insert(packed, at, recent)
    ts = (packed >> 1) + from_us
    frame = pd.DataFrame({"store_key": keys_out, "ts_us": ts, "active": (packed & 1).astype(bool)})
    if len(ts) > 1 and not np.all((np.diff(keys_out) > 0) | (np.diff(ts) > 0)):
        frame = frame.sort_values(["store_key", "ts_us"], kind="stable", ignore_index=True)
    return frame


def _unpack_per_store(rows: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(store_key, comma-separated numbers) rows -> (store key per number, the numbers)."""
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    texts = [row[1] for row in rows]
    counts = np.fromiter((t.count(",") + 1 for t in texts), dtype=np.int64, count=len(texts))
    packed = np.fromstring(",".join(texts), dtype=np.int64, sep=",")  # text mode: not deprecated
    if len(packed) != counts.sum():
        raise RuntimeError("polls_between: the aggregated polls did not parse as expected")
    return np.repeat(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)), counts), packed


def polls_of_stores(conn, store_keys: np.ndarray, from_us: int, to_us: int) -> pd.DataFrame:
    """Polls of the given stores with ``from_us <= ts_us < to_us`` (the report's look-back)."""
    columns = ["store_key", "ts_us", "active"]
    keys = [int(k) for k in store_keys]
    mark = _placeholders(conn, 1)
    frames = [
        _frame(
            conn,
            f"SELECT store_key, ts_us, active FROM {table} WHERE store_key IN ({_placeholders(conn, len(batch))}) "
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
    return _frame(conn, "SELECT store_id, day, start_s, end_s FROM business_hours", ["store_id", "day", "start_s", "end_s"])


def all_timezones(conn) -> pd.DataFrame:
    return _frame(conn, "SELECT store_id, timezone_str FROM store_timezones", ["store_id", "timezone_str"])


def hours_by_key(conn, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Business-hours rows of stores that have polls: store_key, day, start_s, end_s
    (``keys``: only ``low <= store_key < high``). Each store's rows come back as one text
    value (``day << 36 | start_s << 18 | end_s``, comma-separated), as in :func:`polls_between`."""
    mark = _placeholders(conn, 1)
    where = f"WHERE s.store_key >= {mark} AND s.store_key < {mark}" if keys else ""
    if conn.dialect.name == "sqlite":
        sql = (
            "SELECT s.store_key, (SELECT group_concat((h.day << 36) | (h.start_s << 18) | h.end_s) "
            f"FROM business_hours h WHERE h.store_id = s.store_id) FROM stores s {where}"
        )
    else:
        sql = (
            "SELECT s.store_key, string_agg(((h.day::bigint << 36) | (h.start_s::bigint << 18) | h.end_s)::text, ',') "
            f"FROM stores s JOIN business_hours h ON h.store_id = s.store_id {where} GROUP BY s.store_key"
        )
    cursor = _cursor(conn, sql, tuple(int(k) for k in keys) if keys else ())
    try:
        rows = [row for row in cursor.fetchall() if row[1]]
    finally:
        cursor.close()
    if not rows:
        return pd.DataFrame({c: np.empty(0, np.int64) for c in ("store_key", "day", "start_s", "end_s")})
    texts = [row[1] for row in rows]
    counts = np.fromiter((t.count(",") + 1 for t in texts), dtype=np.int64, count=len(texts))
    packed = np.fromstring(",".join(texts), dtype=np.int64, sep=",")
    mask = (1 << 18) - 1
    return pd.DataFrame({
        "store_key": np.repeat(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)), counts),
        "day": packed >> 36, "start_s": (packed >> 18) & mask, "end_s": packed & mask,
    })


def zones_by_key(conn, keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """Time zone names of stores that have polls: store_key, timezone_str (as given)."""
    mark = _placeholders(conn, 1)
    where = f"WHERE s.store_key >= {mark} AND s.store_key < {mark}" if keys else ""
    return _frame(
        conn,
        f"SELECT s.store_key, z.timezone_str FROM stores s JOIN store_timezones z ON z.store_id = s.store_id {where}",
        ["store_key", "timezone_str"],
        tuple(int(k) for k in keys) if keys else (),
    )


def ledger_stored_since(conn, version: int) -> pd.DataFrame:
    """Ledger rows that stored data after ``version`` (an id), oldest first: id, kind,
    polls_from_us, polls_to_us (what changed since a copy of the data at ``version`` was made)."""
    return _frame(
        conn,
        "SELECT id, kind, polls_from_us, polls_to_us FROM ingests WHERE outcome = 'stored' "
        f"AND id > {_placeholders(conn, 1)} ORDER BY id",
        ["id", "kind", "polls_from_us", "polls_to_us"],
        (int(version),),
    )


def ledger_fingerprint(conn, ledger_id: int) -> str | None:
    """Something that names one ledger row for good (its sha256 and time), or None if no such
    row: a database emptied and filled again may reuse the id, never with the same fingerprint."""
    row = conn.exec_driver_sql(
        f"SELECT sha256, started_at FROM ingests WHERE id = {_placeholders(conn, 1)}", (int(ledger_id),)
    ).first()
    return None if row is None else f"{row[0]}@{row[1]}"


# ---------------------------------------------------------------------------------------------
# Reading one store (its timeline: storemon.explain; polls come from polls_of_stores)


def store_row(conn, store_id: str) -> dict | None:
    """The ``stores`` row of one store id (store_key, store_id, first_poll_us, last_poll_us)."""
    row = conn.exec_driver_sql(
        f"SELECT store_key, store_id, first_poll_us, last_poll_us FROM stores WHERE store_id = {_placeholders(conn, 1)}",
        (store_id,),
    ).first()
    return dict(row._mapping) if row is not None else None


def hours_of_store(conn, store_id: str) -> pd.DataFrame:
    """One store's business-hours rows as stored (day, start_s, end_s), by day and start."""
    return _frame(
        conn,
        f"SELECT day, start_s, end_s FROM business_hours WHERE store_id = {_placeholders(conn, 1)} "
        "ORDER BY day, start_s, end_s",
        ["day", "start_s", "end_s"],
        (store_id,),
    ).astype(np.int64)


def timezone_of_store(conn, store_id: str) -> str | None:
    """One store's zone name as given, or None when it has none."""
    return conn.exec_driver_sql(
        f"SELECT timezone_str FROM store_timezones WHERE store_id = {_placeholders(conn, 1)}", (store_id,)
    ).scalar()
