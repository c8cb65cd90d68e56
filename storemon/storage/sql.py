"""How the storage modules run SQL: parameter marks, the dialect's two-argument min and max, and
bulk reads on the driver's own cursor, as tuples or as a DataFrame.

Every helper takes a SQLAlchemy connection and runs in its current transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd


def placeholders(conn, n: int) -> str:
    """``n`` parameter marks of the connection's driver, comma-separated (``?`` or ``%s``)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def min_max_names(conn) -> tuple[str, str]:
    """SQL names of the two-argument min / max functions."""
    return ("min", "max") if conn.dialect.name == "sqlite" else ("least", "greatest")


@contextmanager
def dbapi_cursor(conn) -> Iterator:
    """The driver's own cursor on the connection (same transaction), closed when the block ends.

    For bulk work: SQLAlchemy's Row objects cost microseconds each and a report reads millions of
    values; PostgreSQL's COPY is a method of the driver's cursor.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def fetch_all(conn, sql: str, params=()) -> list[tuple]:
    """Every row of a query, as the driver's tuples."""
    with dbapi_cursor(conn) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def frame(conn, sql: str, columns: list[str], params=()) -> pd.DataFrame:
    """Every row of a query, as a DataFrame with these column names."""
    return pd.DataFrame.from_records(fetch_all(conn, sql, params), columns=columns)
