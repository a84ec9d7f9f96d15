"""The questions a replay asks: which items to run, and what a dead run left open."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from analytics._query import _check_condition, _fetch, check_statement

# What a replay needs to know of each item it runs.
_REPLAY_COLUMNS = (
    "item_id, job_id, correlation_id, payload, command, attempts, budget_used"
)


def _pending_sql(
    *,
    item_ids: Sequence[str],
    job_id: str | None,
    where: str | None,
    include_quarantined: bool,
    columns: str,
) -> tuple[str, list[Any]]:
    statuses = "'pending', 'quarantined'" if include_quarantined else "'pending'"
    conditions = [f"status IN ({statuses})"]
    params: list[Any] = []
    if item_ids:
        conditions.append(f"item_id IN ({', '.join('?' * len(item_ids))})")
        params.extend(item_ids)
    if job_id is not None:
        conditions.append("job_id = ?")
        params.append(job_id)
    if where is not None:
        _check_condition(where)
        conditions.append(f"({where}\n)")
    sql = f"SELECT {columns} FROM items WHERE {' AND '.join(conditions)}"
    return sql, params


def iter_pending(
    conn: duckdb.DuckDBPyConnection,
    *,
    item_ids: Sequence[str] = (),
    job_id: str | None = None,
    where: str | None = None,
    limit: int | None = None,
    include_quarantined: bool = False,
    batch_size: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """The items a replay should run, oldest enqueued first, in batches.

    Each item is a dict of item_id, job_id, correlation_id, payload, command,
    attempts and budget_used. The result streams from DuckDB in batches of
    ``batch_size``, so a replay holds one batch at a time.

    Raises:
        QueryError: ``where`` is not valid SQL over ``items``.
        ForbiddenQueryError: ``where`` is not a single condition.
    """
    sql, params = _pending_sql(
        item_ids=item_ids,
        job_id=job_id,
        where=where,
        include_quarantined=include_quarantined,
        columns=_REPLAY_COLUMNS,
    )
    sql += " ORDER BY enqueued_at, item_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    check_statement(sql)
    try:
        reader = conn.sql(sql, params=params or None).to_arrow_reader(batch_size)
    except duckdb.Error:
        _fetch(conn, sql, params)  # raises the error as a QueryError
        raise
    for batch in reader:
        yield batch.to_pylist()


def count_pending(
    conn: duckdb.DuckDBPyConnection,
    *,
    item_ids: Sequence[str] = (),
    job_id: str | None = None,
    where: str | None = None,
    limit: int | None = None,
    include_quarantined: bool = False,
    sample: int = 10,
) -> tuple[int, list[str]]:
    """How many items :func:`iter_pending` would give, and the first few ids."""
    sql, params = _pending_sql(
        item_ids=item_ids,
        job_id=job_id,
        where=where,
        include_quarantined=include_quarantined,
        columns="item_id, enqueued_at",
    )
    counted = f"SELECT count(*) AS n FROM ({sql})"
    firsts = f"{sql} ORDER BY enqueued_at, item_id LIMIT {int(sample)}"
    check_statement(counted)
    count = _fetch(conn, counted, params).column("n")[0].as_py()
    if limit is not None:
        count = min(count, limit)
        firsts = f"{sql} ORDER BY enqueued_at, item_id LIMIT {min(sample, int(limit))}"
    ids = _fetch(conn, firsts, params).column("item_id").to_pylist()
    return count, ids


def open_attempts(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Attempts that started and have no outcome: item, job, run and number."""
    sql = """
        SELECT item_id,
               arg_max(job_id, event_id) AS job_id,
               arg_max(correlation_id, event_id) AS correlation_id,
               arg_max(run_id, event_id) AS run_id,
               arg_max(attempt, event_id) AS attempt
        FROM _events_base
        WHERE type LIKE 'attempt\\_%' ESCAPE '\\' AND item_id IS NOT NULL
        GROUP BY item_id
        HAVING arg_max(type, event_id) = 'attempt_started'
        ORDER BY item_id
    """
    rows: list[dict[str, Any]] = _fetch(conn, sql).to_pylist()
    return rows


def open_runs(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs that started and never recorded that they finished."""
    sql = """
        SELECT run_id FROM _events_base
        WHERE type IN ('run_started', 'run_finished') AND run_id IS NOT NULL
        GROUP BY run_id
        HAVING count(*) FILTER (WHERE type = 'run_finished') = 0
        ORDER BY run_id
    """
    runs: list[str] = _fetch(conn, sql).column("run_id").to_pylist()
    return runs


def mean_attempt_ms(conn: duckdb.DuckDBPyConnection) -> float | None:
    """The mean duration of the finished attempts in the log, if any."""
    sql = """
        SELECT avg(duration_ms) AS mean FROM _events_base
        WHERE type IN ('attempt_succeeded', 'attempt_failed')
    """
    value = _fetch(conn, sql).column("mean")[0].as_py()
    return float(value) if value is not None else None
