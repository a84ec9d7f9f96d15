"""Small questions for a notebook, each answered as an Arrow table.

An Arrow table goes to pandas (``table.to_pandas()``) or polars
(``polars.from_arrow(table)``) without copying its columns, and plots from
there. Every helper takes a connection from :func:`analytics.connect`, so the
same connection also answers any SQL of one's own::

    conn = analytics.connect("path/to/.dlq")
    analytics.status_counts(conn).to_pandas().plot.bar(x="status", y="items")
    conn.sql("SELECT * FROM errors LIMIT 5").to_arrow_table()
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from analytics._errors import QueryError
from analytics._query import _fetch
from analytics._stats import top_errors

# What failures_over_time accepts as a bucket: a count and a unit.
_INTERVAL = re.compile(r"^\s*\d+\s+(second|minute|hour|day|week)s?\s*$")


def status_counts(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    """Items per status (``status``, ``items``), most first."""
    return _fetch(
        conn,
        "SELECT status, count(*) AS items FROM items GROUP BY status "
        "ORDER BY items DESC, status",
    )


def error_type_counts(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    """Failures and failed items per error type, most failures first."""
    return _fetch(
        conn,
        "SELECT error_type, count(*) AS failures, count(DISTINCT item_id) AS items "
        "FROM failures GROUP BY error_type ORDER BY failures DESC, error_type",
    )


def failures_over_time(
    conn: duckdb.DuckDBPyConnection, bucket: str = "1 hour"
) -> pa.Table:
    """Failures per time bucket and error type (``bucket``, ``error_type``,
    ``failures``), oldest bucket first.

    Args:
        bucket: the width of a bucket, such as ``"15 minutes"`` or ``"1 day"``.

    Raises:
        QueryError: ``bucket`` is not a count and a unit.
    """
    if not _INTERVAL.match(bucket):
        raise QueryError(
            f"the bucket {bucket!r} is not a count and a unit, such as '1 hour'"
        )
    return _fetch(
        conn,
        "SELECT time_bucket(CAST(? AS INTERVAL), ts) AS bucket, error_type, "
        "count(*) AS failures FROM failures GROUP BY ALL ORDER BY bucket, error_type",
        [bucket.strip()],
    )


def top_signatures(conn: duckdb.DuckDBPyConnection, limit: int = 10) -> pa.Table:
    """The ``limit`` most frequent error signatures, from the ``errors`` view."""
    return top_errors(conn, limit)


def success_by_run(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    """Each run's attempts and its success rate, oldest run first."""
    return _fetch(
        conn,
        "SELECT run_id, started_at, status, attempts, succeeded, failed, "
        "succeeded / nullif(succeeded + failed, 0) AS success_rate "
        "FROM runs ORDER BY started_at, run_id",
    )
