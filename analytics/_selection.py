"""The questions a replay asks: which items to run, and what a dead run left open.

A replay may select from a log of millions of items, so its selection is
read in slices: the items are cut into ranges of ids that each hold about
:data:`SLICE_EVENTS` events, and each query aggregates one slice's events
only. The memory a selection needs is then that of one slice, whatever the
size of the log. A log of up to :data:`SLICE_EVENTS` events is one slice.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import duckdb

from analytics._errors import QueryError
from analytics._query import _check_condition, _fetch, check_statement
from analytics._sql import quote_literal
from analytics._views import BASE_VIEW

logger = logging.getLogger("analytics")

# What a replay needs to know of each item it runs.
_REPLAY_COLUMNS = (
    "item_id, job_id, correlation_id, payload, command, attempts, budget_used"
)

_ORDER = "ORDER BY enqueued_at, item_id"

# About how many events one query of a selection aggregates. Measured on a
# million single-event items and two cores, selecting them all peaked about
# 80 MiB (ids in import order) to 125 MiB (random ids) above the opened
# connection with 25,000, and 35 MiB more with 50,000. Most of it is DuckDB
# reading the log's row groups, which a smaller slice does not shrink,
# while every slice costs one more read of the log (see iter_pending).
SLICE_EVENTS = 25_000

# Up to this limit, a selection of several slices still takes the oldest
# items of the whole log: it keeps each slice's oldest (ids and times only),
# then reads the chosen items. Above it, the items come slice by slice.
PICK_OLDEST_UP_TO = 10_000

# How many events of sampled items place the bounds of each slice, and at
# most in all (which bounds the sample on a log of tens of millions).
_SAMPLED_PER_SLICE = 500
_SAMPLED_AT_MOST = 100_000

# hash() gives a UBIGINT.
_HASHES = 2**64


def _slices(conn: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> list[str]:
    """Conditions on ``items`` that cut the selection into slices, in order.

    Each slice is a range of item ids, and there are enough of them for each
    to hold about :data:`SLICE_EVENTS` events, counting only the events of
    ``item_ids`` when they are given. A single slice is the condition ``true``.
    """
    events_sql = f"FROM {BASE_VIEW} WHERE item_id IS NOT NULL"
    if item_ids:
        events_sql += f" AND item_id IN ({_marks(len(item_ids))})"
    counted = _fetch(conn, f"SELECT count(*) AS n {events_sql}", item_ids)
    events: int = counted.column("n")[0].as_py()
    count = -(-events // max(1, SLICE_EVENTS))
    if count <= 1:
        return ["true"]

    # The bounds are quantiles of the events of a sample of the items: those
    # whose hash is below a threshold, so every call on a connection cuts
    # the same slices.
    wanted = min(count * _SAMPLED_PER_SLICE, _SAMPLED_AT_MOST)
    below = min(_HASHES - 1, _HASHES * wanted // events)
    sampled = _fetch(
        conn,
        f"SELECT item_id {events_sql} AND hash(item_id) <= {below}::UBIGINT "
        "ORDER BY item_id",
        item_ids,
    ).column("item_id")
    if len(sampled) == 0:  # a few items hold every event
        return ["true"]
    quantiles = (sampled[len(sampled) * k // count].as_py() for k in range(1, count))
    bounds = [quote_literal(bound) for bound in dict.fromkeys(quantiles)]

    # Ranges of ids rather than `hash(item_id) % n = k`: DuckDB (2.0) moves a
    # range on the grouping column below the GROUP BY, into the scan of the
    # events, so a query aggregates only its slice, and the scan skips row
    # groups whose ids all lie outside it (an import writes ids in input
    # order). It leaves a modulo above the GROUP BY, so every query would
    # aggregate every event. tests/test_analytics_selection.py checks this.
    return (
        [f"item_id < {bounds[0]}"]
        + [
            f"item_id >= {low} AND item_id < {high}"
            for low, high in itertools.pairwise(bounds)
        ]
        + [f"item_id >= {bounds[-1]}"]
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _pending_sql(
    *,
    item_ids: Sequence[str],
    job_id: str | None,
    where: str | None,
    include_quarantined: bool,
    columns: str,
    signature: str | None = None,
    in_slice: str = "true",
) -> tuple[str, list[Any]]:
    statuses = "'pending', 'quarantined'" if include_quarantined else "'pending'"
    conditions = [in_slice, f"status IN ({statuses})"]
    params: list[Any] = []
    if item_ids:
        conditions.append(f"item_id IN ({_marks(len(item_ids))})")
        params.extend(item_ids)
    if job_id is not None:
        conditions.append("job_id = ?")
        params.append(job_id)
    if signature is not None:
        conditions.append("last_signature = ?")
        params.append(signature)
    if where is not None:
        _check_condition(where)
        # The newline ends a trailing `--` comment before the parenthesis.
        conditions.append(f"({where}\n)")
    sql = f"SELECT {columns} FROM items WHERE {' AND '.join(conditions)}"
    return sql, params


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise QueryError(f"the limit must be 0 or more, not {limit}")


def _picks_oldest(slices: Sequence[str], limit: int | None) -> bool:
    """Whether a selection picks the oldest items of all slices first."""
    return len(slices) > 1 and limit is not None and limit <= PICK_OLDEST_UP_TO


# Limitation: on a log of more than SLICE_EVENTS events, a selection without
# a limit, or with one above PICK_OLDEST_UP_TO, gives its items oldest first
# within each slice (a range of item ids), not across the log, because
# ordering them all would hold them all in memory; where ids grow with time
# the two orders are close. Keeping the items' enqueue times in order, apart
# from the events, would lift it.
# Limitation: every slice reads the log again, skipping only row groups
# whose ids all lie outside it, so with ids in random order selecting costs
# time in the square of the log's size (about 0.1 s per slice per million
# events on two cores, 4 s for a million items); storing the events
# partitioned by item would lift it.
# Limitation: an error that only some values raise (a failed cast in
# `where`) surfaces when the slice that holds such an item is read, after
# the slices before it were given, because each slice is its own query; a
# wrong name or type in `where` still fails before the first batch.
def iter_pending(
    conn: duckdb.DuckDBPyConnection,
    *,
    item_ids: Sequence[str] = (),
    job_id: str | None = None,
    where: str | None = None,
    signature: str | None = None,
    limit: int | None = None,
    include_quarantined: bool = False,
    batch_size: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """The items a replay should run, oldest enqueued first, in batches.

    Each item is a dict of item_id, job_id, correlation_id, payload, command,
    attempts and budget_used. The result streams from DuckDB in batches of
    ``batch_size``, so a replay holds one batch at a time, and it is read one
    slice of the log at a time (see the module's docstring), so the memory
    it needs does not grow with the log.

    On a log of more than :data:`SLICE_EVENTS` events, "oldest first" holds
    within each slice: the slices come one after the other. A ``limit`` of
    at most :data:`PICK_OLDEST_UP_TO` still takes the oldest items of the
    whole log, oldest first.

    Raises:
        QueryError: ``where`` is not valid SQL over ``items``, or ``limit``
            is negative.
        ForbiddenQueryError: ``where`` is not a single condition.
    """
    _check_limit(limit)
    slices = _slices(conn, item_ids)
    logger.debug(
        "selecting in %d slices of the log%s",
        len(slices),
        f", the oldest {limit} of all first" if _picks_oldest(slices, limit) else "",
    )
    if _picks_oldest(slices, limit):
        assert limit is not None
        ids = _pick_oldest(
            conn,
            slices,
            limit,
            item_ids=item_ids,
            job_id=job_id,
            where=where,
            signature=signature,
            include_quarantined=include_quarantined,
        )
        if ids:
            sql = f"SELECT {_REPLAY_COLUMNS} FROM items WHERE item_id IN "
            sql += f"({_marks(len(ids))}) {_ORDER}"
            yield from _stream(conn, sql, ids, batch_size)
        return

    remaining = limit
    for index, in_slice in enumerate(slices):
        if index and remaining == 0:
            return
        sql, params = _pending_sql(
            item_ids=item_ids,
            job_id=job_id,
            where=where,
            signature=signature,
            include_quarantined=include_quarantined,
            columns=_REPLAY_COLUMNS,
            in_slice=in_slice,
        )
        sql += f" {_ORDER}"
        if remaining is not None:
            sql += f" LIMIT {int(remaining)}"
        for batch in _stream(conn, sql, params, batch_size):
            if remaining is not None:
                remaining -= len(batch)
            yield batch


def _stream(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any],
    batch_size: int,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of a checked statement, ``batch_size`` at a time."""
    check_statement(sql)
    try:
        reader = conn.sql(sql, params=list(params) or None).to_arrow_reader(batch_size)
    except duckdb.Error:
        _fetch(conn, sql, params)  # raises the error as a QueryError
        raise
    for batch in reader:
        yield batch.to_pylist()


def _pick_oldest(
    conn: duckdb.DuckDBPyConnection,
    slices: Sequence[str],
    limit: int,
    *,
    item_ids: Sequence[str],
    job_id: str | None,
    where: str | None,
    signature: str | None,
    include_quarantined: bool,
) -> list[str]:
    """The ids of the ``limit`` oldest selected items of all slices, in order.

    Each slice gives its ``limit`` oldest, by enqueue time and id only; the
    oldest of those are kept as the slices go, so at most twice ``limit``
    are held.
    """
    kept: list[tuple[tuple[int, datetime | None, str], str]] = []
    for in_slice in slices:
        sql, params = _pending_sql(
            item_ids=item_ids,
            job_id=job_id,
            where=where,
            signature=signature,
            include_quarantined=include_quarantined,
            columns="item_id, enqueued_at",
            in_slice=in_slice,
        )
        sql += f" {_ORDER} LIMIT {int(limit)}"
        check_statement(sql)
        rows = _fetch(conn, sql, params).to_pylist()
        found = [
            (_order_key(row["enqueued_at"], row["item_id"]), row["item_id"])
            for row in rows
        ]
        kept = heapq.nsmallest(limit, kept + found)
    return [item_id for _, item_id in kept]


def _order_key(
    enqueued_at: datetime | None, item_id: str
) -> tuple[int, datetime | None, str]:
    """Sort like ``ORDER BY enqueued_at, item_id``: no enqueue time goes last.

    Python orders str by code point, as DuckDB orders UTF-8 text by byte.
    """
    if enqueued_at is None:
        return (1, None, item_id)
    return (0, enqueued_at, item_id)


def count_pending(
    conn: duckdb.DuckDBPyConnection,
    *,
    item_ids: Sequence[str] = (),
    job_id: str | None = None,
    where: str | None = None,
    signature: str | None = None,
    limit: int | None = None,
    include_quarantined: bool = False,
    sample: int = 10,
) -> tuple[int, list[str]]:
    """How many items :func:`iter_pending` would give, and the first few ids.

    The ids are the first ``sample`` that :func:`iter_pending` gives, in its
    order. Counting reads the log one slice at a time, as
    :func:`iter_pending` does, and stops once ``limit`` is reached.

    Raises:
        QueryError: ``where`` is not valid SQL over ``items``, or ``limit``
            is negative.
        ForbiddenQueryError: ``where`` is not a single condition.
    """
    _check_limit(limit)
    selection: dict[str, Any] = {
        "item_ids": item_ids,
        "job_id": job_id,
        "where": where,
        "signature": signature,
        "include_quarantined": include_quarantined,
    }
    slices = _slices(conn, item_ids)
    if _picks_oldest(slices, limit):
        assert limit is not None
        ids = _pick_oldest(conn, slices, limit, **selection)
        return len(ids), ids[:sample]

    count = 0
    firsts: list[str] = []
    for index, in_slice in enumerate(slices):
        if index and limit is not None and count >= limit:
            break
        sql, params = _pending_sql(
            **selection, columns="item_id, enqueued_at", in_slice=in_slice
        )
        counted = f"SELECT count(*) AS n FROM ({sql})"
        check_statement(counted)
        found: int = _fetch(conn, counted, params).column("n")[0].as_py()
        count += found
        wanted = min(sample, limit if limit is not None else sample) - len(firsts)
        if found and wanted > 0:
            first = f"{sql} {_ORDER} LIMIT {int(wanted)}"
            check_statement(first)
            firsts += _fetch(conn, first, params).column("item_id").to_pylist()
    if limit is not None:
        count = min(count, limit)
    return count, firsts


def open_attempts(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Attempts that started and have no outcome: item, job, run and number.

    Only a run that never finished (see :func:`open_runs`) can leave an
    attempt open, so only the attempt events of such runs are read: with no
    open run this costs one look at the runs, and otherwise memory in
    proportion to the attempts of the open runs.
    """
    runs = open_runs(conn)
    if not runs:
        return []
    # Limitation: an attempt is open when it is the latest attempt event of
    # its item among the open runs' events; an attempt event of a finished
    # run, or of none, is not looked at, because a replay records each
    # attempt's outcome before its run_finished (recovery does it for a run
    # that died) and the replay lock keeps a later run from touching the item
    # before the dead run is recovered.
    sql = f"""
        SELECT item_id,
               arg_max(job_id, event_id) AS job_id,
               arg_max(correlation_id, event_id) AS correlation_id,
               arg_max(run_id, event_id) AS run_id,
               arg_max(attempt, event_id) AS attempt
        FROM {BASE_VIEW}
        WHERE type LIKE 'attempt\\_%' ESCAPE '\\' AND item_id IS NOT NULL
          AND run_id IN ({_marks(len(runs))})
        GROUP BY item_id
        HAVING arg_max(type, event_id) = 'attempt_started'
        ORDER BY item_id
    """
    rows: list[dict[str, Any]] = _fetch(conn, sql, runs).to_pylist()
    return rows


def open_runs(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs that started and never recorded that they finished."""
    sql = f"""
        SELECT run_id FROM {BASE_VIEW}
        WHERE type IN ('run_started', 'run_finished') AND run_id IS NOT NULL
        GROUP BY run_id
        HAVING count(*) FILTER (WHERE type = 'run_finished') = 0
        ORDER BY run_id
    """
    runs: list[str] = _fetch(conn, sql).column("run_id").to_pylist()
    return runs


def mean_attempt_ms(conn: duckdb.DuckDBPyConnection) -> float | None:
    """The mean duration of the finished attempts in the log, if any."""
    sql = f"""
        SELECT avg(duration_ms) AS mean FROM {BASE_VIEW}
        WHERE type IN ('attempt_succeeded', 'attempt_failed')
    """
    value = _fetch(conn, sql).column("mean")[0].as_py()
    return float(value) if value is not None else None
