"""The ingest ledger: the ``ingests`` table, one row per file offered for ingestion
(:class:`~storemon.models.IngestRecord`), and the data version read from it.

Written by :mod:`storemon.ingest` inside each file's own transaction; read by the ingest (was
this content stored before?), the API and the dashboard (the list), and the reports (the data
version, and what changed since a version: :mod:`storemon.snapshot`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import insert, select

from ..models import IngestRecord
from .sql import frame, placeholders


def _utcnow() -> datetime:
    """Now, as an aware UTC datetime (the ledger's times)."""
    return datetime.now(UTC)


def ledger_find(conn, kind: str, sha256: str) -> dict | None:
    """The last time this content was stored for this feed, or None."""
    mark = placeholders(conn, 1)
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


def ledger_stored_since(conn, version: int) -> pd.DataFrame:
    """Ledger rows that stored data after ``version`` (an id), oldest first: id, kind,
    polls_from_us, polls_to_us (what changed since a copy of the data at ``version`` was made)."""
    return frame(
        conn,
        "SELECT id, kind, polls_from_us, polls_to_us FROM ingests WHERE outcome = 'stored' "
        f"AND id > {placeholders(conn, 1)} ORDER BY id",
        ["id", "kind", "polls_from_us", "polls_to_us"],
        (int(version),),
    )


def ledger_fingerprint(conn, ledger_id: int) -> str | None:
    """Something that names one ledger row for good (its sha256 and time), or None if no such
    row: a database emptied and filled again may reuse the id, never with the same fingerprint."""
    row = conn.exec_driver_sql(
        f"SELECT sha256, started_at FROM ingests WHERE id = {placeholders(conn, 1)}", (int(ledger_id),)
    ).first()
    return None if row is None else f"{row[0]}@{row[1]}"
