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


class Poll(db.Model):
    """One observation of a store: active or not at an instant (UTC microseconds).

    Keyed by ``(store_key, ts_us)``. On SQLite the table is WITHOUT ROWID, so that key is the
    table's own B-tree: each store's polls are stored together in time order, and "the polls of
    every store between A and B" is one seek plus one contiguous range read per store -- the cost
    follows the polls in the range, not the length of history kept. Appending the hourly feed
    touches one leaf per store.
    """

    __tablename__ = "polls"
    store_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)

    __table_args__ = ({"sqlite_with_rowid": False},)


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


class StoreTimezone(db.Model):
    """A store's IANA time zone name, as given (unknown names are kept; the report defaults them)."""

    __tablename__ = "store_timezones"
    store_id: Mapped[str] = mapped_column(String, primary_key=True)
    timezone_str: Mapped[str] = mapped_column(String, nullable=False)


class Report(db.Model):
    """A report job and its state, shared by every web process through the database."""

    __tablename__ = "reports"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued/running/complete/failed
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
    worker: Mapped[str | None] = mapped_column(String(128))  # host:pid that runs it
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(255))
    # The finished CSV (about 1 MB at 14K stores) kept with the state, so a web process on
    # another host, without the REPORTS_DIR it was written to, can still hand it out.
    csv: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (Index("ix_reports_status", "status"),)
