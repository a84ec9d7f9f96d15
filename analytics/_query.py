"""Running SQL on an opened log: user queries, and the item listings built on them.

Every statement that carries a person's SQL is checked before it runs: it must
be exactly one statement, and one that only reads (SELECT and its relatives,
or EXPLAIN of one). The connection's own lock-down (see
:func:`analytics.connect`) stops file access; this check also stops what the
lock-down lets through, such as ``COPY`` to a file or ``ATTACH``-ing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from analytics._errors import ForbiddenQueryError, QueryError
from analytics._sql import one_line, quote_literal
from analytics._views import BASE_VIEW, ITEM_STATUSES

_ALLOWED = (
    "only a single read-only SELECT (or WITH, FROM, VALUES, DESCRIBE, SHOW, "
    "SUMMARIZE or EXPLAIN of one) is allowed"
)

# The statement types that only read. DuckDB gives SELECT to WITH, FROM,
# VALUES, TABLE, DESCRIBE, SHOW, SUMMARIZE and PIVOT/UNPIVOT with fixed
# values; a PIVOT that must first look up its values is a MULTI statement.
_READ_ONLY = duckdb.StatementType.SELECT


@dataclass(frozen=True, slots=True)
class ItemHistory:
    """One item as :func:`show_item` gives it.

    Attributes:
        item: the item's row of the ``items`` view, column name to value.
        events: the item's events, oldest first, as the ``events`` view has them.
    """

    item: dict[str, Any]
    events: pa.Table


def check_statement(sql: str) -> None:
    """Make sure ``sql`` is exactly one statement, and one that only reads.

    Raises:
        QueryError: ``sql`` is not valid SQL, or is empty.
        ForbiddenQueryError: it is several statements, or one that does more
            than read.
    """
    statements = _split(sql)
    if not statements:
        raise QueryError(f"the query is empty; {_ALLOWED}")
    if len(statements) > 1:
        raise ForbiddenQueryError(f"{_ALLOWED}; got {len(statements)} statements")
    statement = statements[0]
    kind = _kind(statement)
    if kind == _READ_ONLY:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        _check_explained(statement.query)
        return
    word = _first_word(statement.query)
    if kind == duckdb.StatementType.MULTI and word == "PIVOT":
        raise ForbiddenQueryError(
            f"{_ALLOWED}; a PIVOT must list its values (PIVOT ... ON col IN (...))"
        )
    raise ForbiddenQueryError(f"{_ALLOWED}; {word} statements are refused")


def _split(sql: str) -> list[duckdb.Statement]:
    try:
        return duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc


def _kind(statement: duckdb.Statement) -> duckdb.StatementType | None:
    """The statement's type, or None for one the Python client cannot name.

    Some types (such as UPDATE EXTENSIONS) have no name in the client, which
    raises ValueError for them; none of them only reads.
    """
    try:
        return statement.type
    except ValueError:
        return None


def _words(sql: str) -> list[tuple[int, str, duckdb.token_type]]:
    """The tokens of ``sql`` that are not comments: start, text and kind."""
    tokens = duckdb.tokenize(sql)
    ends = [position for position, _ in tokens[1:]] + [len(sql)] if tokens else []
    return [
        (position, sql[position:end].strip(), kind)
        for (position, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]


def _first_word(sql: str) -> str:
    words = _words(sql)
    return words[0][1].upper() if words else "such"


def _check_explained(sql: str) -> None:
    """Allow ``EXPLAIN [ANALYZE] [(options)] <statement>`` only of a read.

    EXPLAIN ANALYZE runs the statement it explains, so that statement must
    pass the same check.
    """
    words = _words(sql)
    index = 1  # past EXPLAIN
    if index < len(words) and words[index][1].upper() in {"ANALYZE", "ANALYSE"}:
        index += 1
    if index < len(words) and words[index][1] == "(":
        depth = 0
        while index < len(words):
            depth += {"(": 1, ")": -1}.get(words[index][1], 0)
            index += 1
            if depth == 0:
                break
    if index >= len(words):
        raise ForbiddenQueryError(f"{_ALLOWED}; cannot tell what this EXPLAIN explains")
    explained = _split(sql[words[index][0] :])
    if len(explained) != 1 or _kind(explained[0]) != _READ_ONLY:
        word = _first_word(explained[0].query) if explained else "such"
        raise ForbiddenQueryError(
            f"{_ALLOWED}; EXPLAIN of {word} statements is refused"
        )


def run_query(conn: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run one read-only statement of a person's SQL on an opened log.

    Args:
        conn: a connection from :func:`analytics.connect`.
        sql: one SELECT-like statement over ``events`` and ``items``.

    Returns:
        The statement's result.

    Raises:
        QueryError: the SQL is wrong (DuckDB's message, on one line).
        ForbiddenQueryError: the statement was refused: not a single read,
            or it tried to reach a file outside the log.
    """
    check_statement(sql)
    return _fetch(conn, sql)


def _fetch(
    conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> pa.Table:
    """Run an already checked statement and give its result as Arrow."""
    try:
        return conn.sql(sql, params=list(params) or None).to_arrow_table()
    except duckdb.PermissionException as exc:
        raise ForbiddenQueryError(
            f"queries may read only the log's events: {one_line(exc)}"
        ) from exc
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc


def list_items(
    conn: duckdb.DuckDBPyConnection,
    *,
    statuses: Sequence[str] = (),
    where: str | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The items, oldest enqueued first, optionally filtered.

    Args:
        conn: a connection from :func:`analytics.connect`.
        statuses: keep only items in one of these statuses (all if empty).
        where: a SQL condition over the columns of ``items``, such as
            ``"job_id = 'nightly' AND attempts > 2"``.
        limit: at most this many items.

    Returns:
        Rows of the ``items`` view, ordered by ``enqueued_at`` then ``item_id``.

    Raises:
        QueryError: an unknown status, a negative limit, or a mistake in
            ``where``.
        ForbiddenQueryError: ``where`` is not a single condition (it tries to
            end the statement, or close a parenthesis it did not open).
    """
    unknown = sorted(set(statuses) - set(ITEM_STATUSES))
    if unknown:
        raise QueryError(
            f"unknown status {', '.join(map(repr, unknown))}; "
            f"the statuses are {', '.join(ITEM_STATUSES)}"
        )
    if limit is not None and limit < 0:
        raise QueryError(f"the limit must be 0 or more, not {limit}")

    conditions = []
    if statuses:
        # Known statuses only (checked above), so they can be written as text.
        conditions.append(f"status IN ({', '.join(map(quote_literal, statuses))})")
    if where is not None:
        _check_condition(where)
        # The newline ends a trailing `--` comment before the parenthesis.
        conditions.append(f"({where}\n)")
    filtered = "FROM items"
    if conditions:
        filtered += " WHERE " + " AND ".join(conditions)

    if limit is None or limit > _PICK_FIRST_UP_TO:
        sql = f"SELECT * {filtered} {_ORDER}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        check_statement(sql)
        return _fetch(conn, sql)

    # Sorting every item with all its columns to keep a few is slow (the
    # payloads and errors of a million items are copied around). So pick the
    # ids first, which reads only the columns the filter and order need, then
    # read those items, which reads only their events.
    sql = f"SELECT item_id {filtered} {_ORDER} LIMIT {int(limit)}"
    check_statement(sql)
    ids = _fetch(conn, sql).column("item_id").to_pylist()
    if not ids:
        sql = f"SELECT * FROM items WHERE false {_ORDER}"
    else:
        sql = f"SELECT * FROM items WHERE item_id IN ({_marks(len(ids))}) {_ORDER}"
    return _fetch(conn, sql, ids)


def select_items(
    conn: duckdb.DuckDBPyConnection,
    *,
    item_ids: Sequence[str] = (),
    where: str | None = None,
) -> list[dict[str, Any]]:
    """The items a person names to change their state, oldest enqueued first.

    Each item is a dict of item_id, status, job_id, correlation_id,
    budget_used and counted_attempts: the attempts that succeeded or failed
    over the item's whole life, which an ``item_requeued`` event records in
    its ``attempt`` so that the item's ``budget_used`` starts again from 0.

    Args:
        conn: a connection from :func:`analytics.connect`.
        item_ids: only these items; an id the log does not have is left out.
        where: only the items that meet this SQL condition over ``items``,
            checked as for :func:`list_items`.

    Raises:
        QueryError: a mistake in ``where``.
        ForbiddenQueryError: ``where`` is not a single condition.
    """
    conditions = ["true"]
    params: list[Any] = []
    if item_ids:
        conditions.append(f"item_id IN ({_marks(len(item_ids))})")
        params.extend(item_ids)
    if where is not None:
        _check_condition(where)
        # The newline ends a trailing `--` comment before the parenthesis.
        conditions.append(f"({where}\n)")
    # The condition sees only `items`; the attempts are counted afterwards,
    # from the events of the chosen items alone.
    sql = f"""
        WITH chosen AS (
            SELECT item_id, status, job_id, correlation_id, budget_used, enqueued_at
            FROM items WHERE {" AND ".join(conditions)}
        ),
        counted AS (
            SELECT item_id, count(*) AS n FROM {BASE_VIEW}
            WHERE type IN ('attempt_succeeded', 'attempt_failed')
              AND item_id IN (SELECT item_id FROM chosen)
            GROUP BY item_id
        )
        SELECT item_id, status, job_id, correlation_id, budget_used,
               coalesce(counted.n, 0) AS counted_attempts
        FROM chosen LEFT JOIN counted USING (item_id)
        {_ORDER}
    """
    check_statement(sql)
    rows: list[dict[str, Any]] = _fetch(conn, sql, params).to_pylist()
    return rows


_ORDER = "ORDER BY enqueued_at, item_id"

# Up to this limit list_items picks the items' ids before reading their rows.
_PICK_FIRST_UP_TO = 10_000


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _check_condition(where: str) -> None:
    """Make sure ``where`` cannot reach outside the parentheses it is put in."""
    words = _words(where)
    if not words:
        raise QueryError("the where condition is empty")
    depth = 0
    for _, text, kind in words:
        if kind != duckdb.token_type.operator:
            continue  # a parenthesis in a string or a name is only a character
        if ";" in text:
            raise ForbiddenQueryError(
                "the where condition must be a single condition, without `;`"
            )
        for char in text:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                raise ForbiddenQueryError(
                    "the where condition closes a parenthesis it did not open; "
                    "it must be a single condition"
                )
    if depth:
        raise QueryError("the where condition leaves a parenthesis open")


def show_item(conn: duckdb.DuckDBPyConnection, item_id: str) -> ItemHistory | None:
    """One item's row and its events, or None if the log has no such item.

    Args:
        conn: a connection from :func:`analytics.connect`.
        item_id: the item's id.

    Raises:
        QueryError: DuckDB could not read the log.
    """
    rows = _fetch(conn, "SELECT * FROM items WHERE item_id = ?", [item_id])
    if rows.num_rows == 0:
        return None
    events = _fetch(
        conn, "SELECT * FROM events WHERE item_id = ? ORDER BY event_id", [item_id]
    )
    return ItemHistory(item=rows.to_pylist()[0], events=events)
