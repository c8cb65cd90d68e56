"""Database schema.

Times are stored as integers: microseconds since the Unix epoch, UTC (``*_us`` columns). That
keeps the real feed's microsecond precision exactly, makes "all polls between A and B" a range
read on one integer key, and hands the report engine numbers it can use without parsing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


class Store(db.Model):
    """A store that has polls: its exact text id, a compact integer key, and its poll span.

    ``store_id`` is kept byte for byte (ids are opaque: ``007`` keeps its zeros). Polls refer to
    the store by ``store_key``, which keeps the big table small and its key comparisons cheap.
    ``first_poll_us``/``last_poll_us`` (kept up to date by ingestion) let the report list "stores
    with a poll at or before now" and know how far back a store's history goes without scanning
    the polls table.
    """

    __tablename__ = "stores"
    store_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    first_poll_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_poll_us: Mapped[int] = mapped_column(BigInteger, nullable=False)


class _PollColumns:
    """A poll's key and status; on SQLite the key is the table's own B-tree (WITHOUT ROWID)."""

    store_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)

    __table_args__ = ({"sqlite_with_rowid": False},)


class Poll(_PollColumns, db.Model):
    """One observation of a store: active or not at an instant (UTC microseconds).

    Keyed by ``(store_key, ts_us)``. On SQLite the table is WITHOUT ROWID, so that key is the
    table's own B-tree: each store's polls are stored together in time order, and "the polls of
    every store between A and B" is one seek plus one contiguous range read per store -- the cost
    follows the polls in the range, not the length of history kept. (Appending the hourly feed
    here would touch one leaf per store: new polls land in :class:`RecentPoll` first.) On
    PostgreSQL, triggers keep a packed copy of this table for the report's read
    (:mod:`storemon.storage.chunks`).
    """

    __tablename__ = "polls"


class RecentPoll(_PollColumns, db.Model):
    """Polls just ingested, not yet folded into :class:`Poll` (same key and columns).

    Each hour's feed adds about one poll per store. Added to ``polls`` it changes one leaf page
    per store -- 14,000 pages (57 MB of write-ahead log) for 14,000 polls. Added here, to a table
    of at most a few polls per store, it changes the few hundred pages this table has. When the
    table would pass :data:`storemon.storage.polls.RECENT_POLLS_PER_STORE` polls per store, an ingest
    moves it into ``polls`` in key order (a "fold") and empties it. A (store, instant) key is in
    one of the two tables, never both; readers read both.
    """

    __tablename__ = "polls_recent"


class BusinessHours(db.Model):
    """One business-hours row as given: local wall-clock ``[start, end)`` on weekday ``day``.

    ``start_s`` / ``end_s`` are seconds after local midnight exactly as written in the feed
    (``23:59:59`` -> 86399, ``24:00:00`` -> 86400); their meaning (end of day, overnight, 24 h) is
    applied by the report engine, :mod:`storemon.compute`.
    """

    __tablename__ = "business_hours"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    day: Mapped[int] = mapped_column(SmallInteger, nullable=False)  # 0 = Monday ... 6 = Sunday
    start_s: Mapped[int] = mapped_column(Integer, nullable=False)
    end_s: Mapped[int] = mapped_column(Integer, nullable=False)


class SpecialHours(db.Model):
    """One special-hours row as given: on the local calendar date ``local_date`` the store is
    open ``[start, end)`` local wall-clock time, or closed (``start_s`` and ``end_s`` NULL).

    ``local_date`` is days since 1970-01-01; ``start_s`` / ``end_s`` are seconds after local
    midnight exactly as written, as in :class:`BusinessHours`. A store's rows for a date replace
    its weekly rows for the intervals starting that date (docs/report-rules.md). ``source`` is the
    name of the file that gave the row, as the ingest ledger shows it.
    """

    __tablename__ = "special_hours"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String, nullable=False)
    local_date: Mapped[int] = mapped_column(Integer, nullable=False)  # days since 1970-01-01
    start_s: Mapped[int | None] = mapped_column(Integer)  # NULL: closed that date
    end_s: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(255), nullable=False)

    # A store's rows, and one date's (what a file replaces and a removal deletes), are one seek.
    __table_args__ = (Index("ix_special_hours_store_date", "store_id", "local_date"),)


class StoreTimezone(db.Model):
    """A store's IANA time zone name, as given (unknown names are kept; the report defaults them)."""

    __tablename__ = "store_timezones"
    store_id: Mapped[str] = mapped_column(String, primary_key=True)
    timezone_str: Mapped[str] = mapped_column(String, nullable=False)


class IngestRecord(db.Model):
    """The ingest ledger: one row per file offered for ingestion, whatever came of it.

    A file whose content (``sha256``) was already stored for the same feed is not applied again
    unless forced (outcome ``unchanged``), so re-running the start-up ingest of ``data/`` never
    reverts what was uploaded since. The row of a stored file is written in the file's own
    transaction: the ledger says ``stored`` exactly when the rows are there. The highest id with
    outcome ``stored`` is the data version a report is computed from.

    ``polls_from_us``/``polls_to_us``: for a stored status file, the earliest and latest poll
    instant it wrote, so every poll it added or changed lies in that range. With the ids this
    tells a reader holding a copy of the polls as of an older version (the report cache,
    :mod:`storemon.snapshot`) exactly which stretch of the time line to read again.
    """

    __tablename__ = "ingests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # status / hours / timezones / special_hours
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)  # bytes
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    rows_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_stored: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_skipped: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # stored/unchanged/refused/failed
    message: Mapped[str | None] = mapped_column(Text)  # why refused or failed; what was skipped
    source: Mapped[str] = mapped_column(String(8), nullable=False)  # cli / http
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    polls_from_us: Mapped[int | None] = mapped_column(BigInteger)  # status files: first poll written
    polls_to_us: Mapped[int | None] = mapped_column(BigInteger)  # ... and last

    __table_args__ = (Index("ix_ingests_sha256", "sha256"),)


class Report(db.Model):
    """A report job and its state, shared by every web process through the database.

    The table lives in the ``jobs`` bind: on SQLite a file of its own beside the data, so that
    triggering a report or recording its progress never waits for an ingest holding the data
    file's write lock; elsewhere the same database.
    """

    __tablename__ = "reports"
    __bind_key__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued/running/complete/failed/expired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    as_of_us: Mapped[int | None] = mapped_column(BigInteger)  # as_of asked for, if any
    now_us: Mapped[int | None] = mapped_column(BigInteger)  # the `now` the report used
    latest_poll_us: Mapped[int | None] = mapped_column(BigInteger)  # the latest poll at or before now
    warning: Mapped[str | None] = mapped_column(Text)  # e.g. now long after the latest poll
    store_count: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # 0..1
    stage: Mapped[str | None] = mapped_column(String(64))
    # host:pid:token of the process that runs it (the random token tells it from a later process
    # that reuses the pid)
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(255))
    # Data version (the ingest ledger's last stored id) the report was asked at / computed from.
    data_version: Mapped[int | None] = mapped_column(BigInteger)
    # A report asked for the same `now` and data version as an earlier one is that one's result:
    # it is not computed again, it names the report that is (or was) computed.
    reuse_of: Mapped[str | None] = mapped_column(String(64))
    # The extra periods asked for ("30d,2h", as storemon.times.parse_periods writes them), if any.
    periods: Mapped[str | None] = mapped_column(String(64))
    # The finished CSV, gzip-compressed (about 200 KB at 14K stores) kept with the state, so a
    # web process on another host, without the REPORTS_DIR it was written to, can hand it out.
    csv_gz: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (Index("ix_reports_status", "status"), Index("ix_reports_now_version", "now_us", "data_version"))
