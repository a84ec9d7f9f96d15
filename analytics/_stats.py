"""The numbers an operator asks for first: `dlq stats` and `dlq errors`.

Everything here is SQL over the views (see ``analytics._views``), so a person
can check any figure with ``dlq query``. The figures honour four filters:

==========  ==================================================================
job_id      only items, attempts and failures of this job
run_id      only the attempts and failures of this replay run, and the items
            it attempted
since       only attempts started and failures recorded at or after this
            moment, and items still in the queue's life then (updated since)
until       only attempts started and failures recorded at or before this
            moment, and items that had entered the queue by then
==========  ==================================================================

Statuses are the items' current ones: to see them as they were at a moment,
open the log with ``connect(log, as_of=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from analytics._errors import QueryError
from analytics._query import _fetch
from analytics._sql import as_utc
from analytics._views import BASE_VIEW, ITEM_STATUSES

# How many signatures `stats` names.
TOP_SIGNATURES = 5


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Which part of the log the figures count (see the module docstring)."""

    job_id: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and as_utc(self.since) > as_utc(self.until):
            raise QueryError(
                f"--since ({as_utc(self.since).isoformat()}) is after --until "
                f"({as_utc(self.until).isoformat()}); swap them"
            )

    def conditions(
        self, *, ts: str, job: str = "job_id", run: str | None = "run_id"
    ) -> tuple[list[str], list[Any]]:
        """SQL conditions (with their parameters) on rows with these columns."""
        sql: list[str] = []
        params: list[Any] = []
        if self.job_id is not None:
            sql.append(f"{job} = ?")
            params.append(self.job_id)
        if self.run_id is not None and run is not None:
            sql.append(f"{run} = ?")
            params.append(self.run_id)
        if self.since is not None:
            sql.append(f"{ts} >= ?")
            params.append(as_utc(self.since))
        if self.until is not None:
            sql.append(f"{ts} <= ?")
            params.append(as_utc(self.until))
        return sql, params

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "run_id": self.run_id,
            "since": as_utc(self.since).isoformat() if self.since else None,
            "until": as_utc(self.until).isoformat() if self.until else None,
        }


def _where(conditions: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def queue_stats(
    conn: duckdb.DuckDBPyConnection, filters: StatsFilter = StatsFilter()
) -> dict[str, Any]:
    """The queue's figures, as one dictionary of plain values and datetimes.

    Keys: ``filters``; ``items`` (total and one count per status, and the
    oldest pending item); ``attempts`` (total, succeeded, failed, interrupted,
    running, and ``success_rate``: succeeded over succeeded plus failed);
    ``duration_ms`` of finished attempts (mean, p50, p95, max); ``last_run``
    (the latest run with attempts that pass the filters, from the ``runs``
    view); ``error_types`` (failures per error type, most first) and
    ``top_signatures`` (the most frequent, from the ``failures`` view).

    Raises:
        QueryError: DuckDB could not compute them, or the filters contradict.
    """
    return {
        "filters": filters.as_dict(),
        "items": _item_counts(conn, filters),
        **_attempt_figures(conn, filters),
        "last_run": _last_run(conn, filters),
        **_failure_figures(conn, filters),
    }


def _item_counts(conn: duckdb.DuckDBPyConnection, filters: StatsFilter) -> Any:
    conditions: list[str] = []
    params: list[object] = []
    if filters.job_id is not None:
        conditions.append("job_id = ?")
        params.append(filters.job_id)
    if filters.run_id is not None:
        conditions.append(
            f"item_id IN (SELECT item_id FROM {BASE_VIEW} "
            "WHERE run_id = ? AND type = 'attempt_started')"
        )
        params.append(filters.run_id)
    if filters.since is not None:
        conditions.append("updated_at >= ?")
        params.append(as_utc(filters.since))
    if filters.until is not None:
        conditions.append("enqueued_at <= ?")
        params.append(as_utc(filters.until))
    counts = ", ".join(
        f"count(*) FILTER (WHERE status = '{status}') AS {status}"
        for status in ITEM_STATUSES
    )
    row = _one(
        conn,
        f"""
        SELECT
            count(*) AS total,
            {counts},
            arg_min(item_id, (enqueued_at, item_id))
                FILTER (WHERE status = 'pending') AS oldest_id,
            min(enqueued_at) FILTER (WHERE status = 'pending') AS oldest_at
        FROM items{_where(conditions)}
        """,
        params,
    )
    oldest_id, oldest_at = row.pop("oldest_id"), row.pop("oldest_at")
    row["oldest_pending"] = (
        None if oldest_id is None else {"item_id": oldest_id, "enqueued_at": oldest_at}
    )
    return row


def _attempt_figures(
    conn: duckdb.DuckDBPyConnection, filters: StatsFilter
) -> dict[str, Any]:
    conditions, params = filters.conditions(ts="started_at")
    row = _one(
        conn,
        f"""
        SELECT
            count(*) AS total,
            count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
            count(*) FILTER (WHERE outcome = 'failed') AS failed,
            count(*) FILTER (WHERE outcome = 'interrupted') AS interrupted,
            count(*) FILTER (WHERE outcome IS NULL) AS running,
            avg(duration_ms) AS mean,
            quantile_cont(duration_ms, 0.5) AS p50,
            quantile_cont(duration_ms, 0.95) AS p95,
            max(duration_ms) AS max
        FROM attempts{_where(conditions)}
        """,
        params,
    )
    decided = row["succeeded"] + row["failed"]
    durations = {key: row.pop(key) for key in ("mean", "p50", "p95", "max")}
    row["success_rate"] = row["succeeded"] / decided if decided else None
    return {
        "attempts": row,
        "duration_ms": {
            key: None if value is None else round(float(value), 1)
            for key, value in durations.items()
        },
    }


def _last_run(conn: duckdb.DuckDBPyConnection, filters: StatsFilter) -> Any:
    conditions, params = filters.conditions(ts="ts")
    conditions.append("type = 'attempt_started'")
    found = _one(
        conn,
        f"SELECT arg_max(run_id, event_id) AS run_id FROM {BASE_VIEW}"
        + _where(conditions),
        params,
    )
    if found["run_id"] is None:
        return None
    return _one(conn, "SELECT * FROM runs WHERE run_id = ?", [found["run_id"]])


def _failure_figures(
    conn: duckdb.DuckDBPyConnection, filters: StatsFilter
) -> dict[str, Any]:
    conditions, params = filters.conditions(ts="ts")
    table = _fetch(
        conn,
        f"""
        SELECT
            grouping(error_type) = 1 AS by_signature,
            signature,
            mode(error_type) AS error_type,
            count(*) AS failures,
            count(DISTINCT item_id) AS items,
            any_value(signature_text) AS text
        FROM failures{_where(conditions)}
        GROUP BY GROUPING SETS ((signature), (error_type))
        ORDER BY failures DESC, signature, error_type
        """,
        params,
    )
    error_types: dict[str, int] = {}
    signatures: list[dict[str, Any]] = []
    for row in table.to_pylist():
        if not row.pop("by_signature"):
            error_types[row["error_type"]] = row["failures"]
        elif len(signatures) < TOP_SIGNATURES:
            signatures.append(row)
    return {"error_types": error_types, "top_signatures": signatures}


def top_errors(conn: duckdb.DuckDBPyConnection, limit: int | None = None) -> pa.Table:
    """The ``errors`` view, most frequent signature first.

    Raises:
        QueryError: a negative limit, or DuckDB could not compute it.
    """
    if limit is not None and limit < 0:
        raise QueryError(f"the limit must be 0 or more, not {limit}")
    sql = "SELECT * FROM errors ORDER BY failures DESC, signature"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return _fetch(conn, sql)


def _one(
    conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = _fetch(conn, sql, params).to_pylist()
    return rows[0]
