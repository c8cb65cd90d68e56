"""Storage: the database behind storemon -- engines and schema, the ingest ledger, the feed
writers and the reads. No computation here (that is :mod:`storemon.compute`).

Where each part lives:

* :mod:`.engine` -- engine set-up (SQLite's WAL, busy timeout and ``BEGIN``), schema creation
  and column upgrades, write transactions and the ingest lock, the busy and read-only errors.
* :mod:`.ledger` -- the ingest ledger (table ``ingests``) and the data version read from it.
* :mod:`.writers` -- one writer class per feed (status, hours, time zones), and the status
  writer's per-file bookkeeping (:class:`StoreKeys`, :class:`DistinctKeys`).
* :mod:`.polls` -- the bulk writes of polls: ``polls`` and ``polls_recent`` and their fold
  (SQLite: JSON arrays unpacked by ``json_each``; PostgreSQL: binary COPY).
* :mod:`.chunks` -- PostgreSQL: ``poll_chunks``, the polls packed ahead of time for the
  report's read, and the triggers on ``polls`` that keep it.
* :mod:`.reads` -- what a report reads (one read transaction), and one store's rows.
* :mod:`.special` -- special hours (the fourth feed): its writer, its reads, the removal of one
  store's date.
* :mod:`.sql` -- how the modules above run SQL: parameter marks, the driver's cursor for bulk
  work (:func:`~.sql.dbapi_cursor`), a query as a DataFrame.
* :mod:`.packing` -- small integers packed into one int64 (:func:`~.packing.pack`), lists of
  them as text.

The rest of storemon uses the names below, as ``storage.X``. The sizes read at call time --
``FLUSH_ROWS`` in :mod:`.writers`, ``WRITE_ROWS``, ``RECENT_POLLS_PER_STORE`` and
``RECENT_POLLS_MIN`` in :mod:`.polls` -- are not among them: set one on its own module (a test's
``monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", 0)``), where it is read; a copy here
would change nothing.
"""

from .engine import (
    PAGE_CACHE,
    READ_ONLY_MEMORY_S,
    DatabaseBusy,
    DatabaseReadOnly,
    add_missing_columns,
    configure_engine,
    dispose_all,
    empty_database,
    init_schema,
    is_locked_error,
    is_read_only_error,
    jobs_url_beside,
    lock_for_ingest,
    note_read_only,
    read_only_reason,
    remove_database,
    write_transaction,
)
from .ledger import _utcnow as _utcnow  # (storemon.ingest stamps its ledger rows with it)
from .ledger import data_version, ledger_add, ledger_find, ledger_fingerprint, ledger_list, ledger_stored_since
from .polls import fold_recent_polls, insert_polls, packed_polls, recent_limit, update_polls
from .reads import (
    ALL_POLLS,
    all_hours,
    all_stores,
    all_timezones,
    earliest_poll_us,
    hours_by_key,
    hours_of_store,
    latest_poll_at_or_before,
    latest_poll_us,
    polls_between,
    polls_of_stores,
    polls_tables,
    report_stores,
    store_row,
    timezone_of_store,
    zones_by_key,
)
from .special import SpecialHoursWriter, remove_special, special_by_key, special_of_store
from .writers import DistinctKeys, FeedWriter, HoursWriter, PollWriter, StoreKeys, TimezoneWriter

__all__ = [
    "ALL_POLLS",
    "PAGE_CACHE",
    "READ_ONLY_MEMORY_S",
    "DatabaseBusy",
    "DatabaseReadOnly",
    "DistinctKeys",
    "FeedWriter",
    "HoursWriter",
    "PollWriter",
    "SpecialHoursWriter",
    "StoreKeys",
    "TimezoneWriter",
    "add_missing_columns",
    "all_hours",
    "all_stores",
    "all_timezones",
    "configure_engine",
    "data_version",
    "dispose_all",
    "earliest_poll_us",
    "empty_database",
    "fold_recent_polls",
    "hours_by_key",
    "hours_of_store",
    "init_schema",
    "insert_polls",
    "is_locked_error",
    "is_read_only_error",
    "jobs_url_beside",
    "latest_poll_at_or_before",
    "latest_poll_us",
    "ledger_add",
    "ledger_find",
    "ledger_fingerprint",
    "ledger_list",
    "ledger_stored_since",
    "lock_for_ingest",
    "note_read_only",
    "packed_polls",
    "polls_between",
    "polls_of_stores",
    "polls_tables",
    "read_only_reason",
    "recent_limit",
    "remove_database",
    "remove_special",
    "report_stores",
    "special_by_key",
    "special_of_store",
    "store_row",
    "timezone_of_store",
    "update_polls",
    "write_transaction",
    "zones_by_key",
]
