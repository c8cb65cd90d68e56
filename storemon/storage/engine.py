"""The database engines: set-up, schema, write transactions and the errors they raise.

* :func:`configure_engine` tunes a SQLite engine (WAL, busy timeout, a real ``BEGIN``);
  :func:`jobs_url_beside` places the report jobs' database; :func:`dispose_all` closes the pools.
* :func:`init_schema` creates missing tables and :func:`add_missing_columns` adds the nullable
  columns a newer version gave a table; :func:`empty_database` and :func:`remove_database` start
  over.
* :func:`write_transaction` is one write transaction, waiting a bounded time for the writer
  before it; :func:`lock_for_ingest` serialises writers on PostgreSQL as SQLite does by itself.
* A wait that runs out is :class:`DatabaseBusy`, a refused write :class:`DatabaseReadOnly`;
  :func:`read_only_reason` says why a database cannot be written, for ``/health``.
* :func:`sqlite_without_memory_statistics` lets SQLite connections of several threads work side
  by side.

Times here are seconds (``wait_seconds``, :data:`READ_ONLY_MEMORY_S`) or milliseconds (busy
timeouts, ``_ms``).
"""

from __future__ import annotations

import _sqlite3
import ctypes
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from .. import models  # noqa: F401  (registers the tables)
from ..extensions import db
from .chunks import IS_KEPT, drop_poll_chunks, make_poll_chunks


def sqlite_without_memory_statistics() -> bool:
    """Turn off SQLite's memory statistics in this process, when no SQLite connection is open
    yet; True if they are off.

    SQLite counts every allocation under one process-wide mutex (``SQLITE_CONFIG_MEMSTATUS``, on
    by default; its documentation recommends turning it off for speed), so the report's batches
    read by several threads wait for each other inside SQLite: with it on, two threads read the
    10x polls in 0.72x the time of one, with it off in 0.60x. Python's ``sqlite3`` has no call
    for it, so the C library that module uses is asked through ``ctypes``: statistics can only
    be changed while SQLite is shut down, which is safe only while it holds no memory -- no
    connection open -- so nothing is done otherwise (or when the library is not reachable). Were
    the statistics already off (by some other code in the process, none of storemon's), the
    memory would read 0 with connections open too: that case is not told apart.
    Called once, when this module is imported; connections opened later behave the same but for
    the statistics, which storemon does not read.
    """
    global _memory_statistics_off
    if not _memory_statistics_off:
        try:
            library = ctypes.CDLL(_sqlite3.__file__)  # its symbols include the SQLite library's
            library.sqlite3_memory_used.restype = ctypes.c_int64
            if library.sqlite3_memory_used() == 0 and library.sqlite3_shutdown() == 0:
                off = library.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
                _memory_statistics_off = library.sqlite3_initialize() == 0 and off
        except (OSError, AttributeError):
            pass
    return _memory_statistics_off


_SQLITE_CONFIG_MEMSTATUS = 9  # sqlite3.h
_memory_statistics_off = False


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
    """A write refused because the database is read-only (SQLite's file or folder, or a
    PostgreSQL server that accepts only reads), however it is wrapped."""
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


_INGEST_LOCK = 0x5709E  # PostgreSQL advisory lock key: one ingest transaction at a time


def lock_for_ingest(conn, key: int = _INGEST_LOCK) -> None:
    """Serialise ingest transactions, as SQLite's BEGIN IMMEDIATE does for it.

    On PostgreSQL two files arriving at once (from two web hosts, say) could otherwise both
    create the same new store, or both replace one store's hours and leave the union.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")


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
    if engine.dialect.name == "postgresql":
        _configure_postgresql(engine)
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


def _configure_postgresql(engine: Engine) -> None:
    """PostgreSQL sessions without JIT compilation: storemon's queries are index range scans
    whose row estimates (a table just loaded, a key range) can pass ``jit_above_cost``, and then
    compiling the expressions costs more (60 to 180 ms a query, measured) than running them."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()


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
        if engine.dialect.name == "postgresql" and "polls" in db.metadatas[key].tables:
            tune_postgresql(engine)


# PostgreSQL only: what a fresh schema gets beside the models' tables (see tune_postgresql).
POSTGRESQL_TUNING = {
    "polls_ts_brin": (
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'polls' AND indexname = 'polls_ts_brin')",
        "CREATE INDEX IF NOT EXISTS polls_ts_brin ON polls USING brin (ts_us)",
    ),
    "stores fillfactor": (
        "SELECT coalesce('fillfactor=50' = ANY(reloptions), false) FROM pg_class WHERE oid = 'stores'::regclass",
        "ALTER TABLE stores SET (fillfactor = 50)",
    ),
    "poll_chunks": (IS_KEPT, make_poll_chunks),
}


def tune_postgresql(engine: Engine) -> list[str]:
    """Give a PostgreSQL schema what the models cannot say; returns what it added.

    * A BRIN index on ``polls.ts_us``: polls are appended in time order, so "the polls between
      A and B" (a warm report reading what the last ingests wrote) reads the few pages that
      hold them, where the primary key would walk every store's entries.
    * ``stores`` with half-empty pages (fillfactor 50): every hourly file moves every store's
      ``last_poll_us``, and with room on its page the new row version is a HOT update, which
      writes no index entry (measured: 14,000 updates in 17 ms instead of 93 to 170 ms).
    * ``poll_chunks``, the polls packed for the report's read, and the triggers that keep it
      (:mod:`storemon.storage.chunks`).

    Checked first, so a database that has them (or a read-only one) is not written; processes
    starting at once take turns on an advisory lock. On an existing database the index and the
    chunks are built at the first start-up (a scan of ``polls`` each; writes wait meanwhile,
    reads do not).
    """
    added = []
    with engine.connect() as conn:
        missing = [name for name, (check, _) in POSTGRESQL_TUNING.items() if not conn.exec_driver_sql(check).scalar()]
        conn.rollback()  # (the checks' transaction)
        if not missing:
            return added
        with conn.begin():
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_INGEST_LOCK + 1})")
            for name in missing:
                check, change = POSTGRESQL_TUNING[name]
                if not conn.exec_driver_sql(check).scalar():
                    if callable(change):
                        change(conn)
                    else:
                        conn.exec_driver_sql(change)
                    added.append(name)
    return added


def empty_database() -> None:
    """Drop storemon's tables and create them again, empty (on PostgreSQL with what
    :func:`tune_postgresql` adds)."""
    db.drop_all()
    db.create_all()
    if db.engine.dialect.name == "postgresql":
        tune_postgresql(db.engine)  # (poll_chunks emptied: the new polls has no triggers yet)


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
    if url.get_backend_name() == "postgresql":
        with db.engine.begin() as conn:
            drop_poll_chunks(conn)
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


sqlite_without_memory_statistics()
