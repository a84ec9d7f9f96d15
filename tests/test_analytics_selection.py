"""What a replay selects, read one slice of the log at a time, and what a dead
run left open.

The logs here are small, so each test that needs several slices makes them
small too (``SLICE_EVENTS``), and checks that the log was indeed cut.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

import analytics._selection as selection
from analytics import (
    QueryError,
    connect,
    count_pending,
    iter_pending,
    list_items,
    open_attempts,
    open_runs,
    run_query,
)
from eventlog import Event, EventLog, LogWriter, import_records

REPLAY_COLUMNS = [
    "item_id",
    "job_id",
    "correlation_id",
    "payload",
    "command",
    "attempts",
    "budget_used",
]


def enqueue(log: EventLog, *records: dict[str, Any]) -> None:
    """Import items the way `dlq import` does (into a sealed segment)."""
    lines = "".join(json.dumps(record) + "\n" for record in records)
    import_records(log, io.BytesIO(lines.encode()), source="test")


@pytest.fixture
def queue(log: EventLog) -> Iterator[EventLog]:
    """Sixty pending items over two jobs, and items in every other status.

    The items are enqueued in three imports, the highest ids first, so the
    oldest items are not the first ids. Some items went through attempts,
    and the last events are in a live segment, still being written.
    """
    for first in (40, 20, 0):
        enqueue(
            log,
            *(
                {
                    "item_id": f"p{n:02d}",
                    "job_id": "alpha" if n % 3 else "beta",
                    "payload": {"n": n},
                    "error": "TimeoutError" if n % 2 else "KeyError",
                    "command": f"run {n}",
                }
                for n in range(first, first + 20)
            ),
        )
    enqueue(log, *({"item_id": name} for name in ("done", "dropped", "poison", "busy")))
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="attempt_started", item_id="done", attempt=1),
                Event(type="attempt_succeeded", item_id="done", attempt=1),
                Event(type="item_discarded", item_id="dropped"),
                Event(type="item_quarantined", item_id="poison"),
                Event(type="attempt_started", item_id="busy", attempt=1),
            ]
        )
    live = LogWriter(log)
    try:
        # Three failed attempts: an item with more events than the others.
        for attempt in (1, 2, 3):
            live.append(
                [
                    Event(type="attempt_started", item_id="p07", attempt=attempt),
                    Event(type="attempt_failed", item_id="p07", attempt=attempt),
                ]
            )
        # Never enqueued: pending, with no enqueue time.
        live.append([Event(type="attempt_failed", item_id="stray", attempt=1)])
        yield log
    finally:
        live.close()


@pytest.fixture
def conn(queue: EventLog) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(queue)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def sliced(
    conn: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> duckdb.DuckDBPyConnection:
    """The queue, read ten events to a slice."""
    monkeypatch.setattr(selection, "SLICE_EVENTS", 10)
    assert len(selection._slices(conn, ())) > 5
    return conn


def rows_of(batches: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch]


def ids_of(batches: Iterator[list[dict[str, Any]]]) -> list[str]:
    return [row["item_id"] for row in rows_of(batches)]


def selected_ids(conn: duckdb.DuckDBPyConnection, where: str) -> list[str]:
    """The ids the whole `items` view gives for a condition, oldest first."""
    sql = f"SELECT item_id FROM items WHERE {where} ORDER BY enqueued_at, item_id"
    ids: list[str] = run_query(conn, sql).column("item_id").to_pylist()
    return ids


PENDING = "status = 'pending'"


def test_a_small_log_is_one_slice_given_oldest_first(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    assert selection._slices(conn, ()) == ["true"]
    assert ids_of(iter_pending(conn)) == selected_ids(conn, PENDING)
    assert ids_of(iter_pending(conn))[:3] == ["p40", "p41", "p42"]


def test_every_pending_item_comes_exactly_once_from_several_slices(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    ids = ids_of(iter_pending(sliced, batch_size=4))

    assert len(ids) == len(set(ids)) == 61
    assert sorted(ids) == sorted(selected_ids(sliced, PENDING))
    assert ids_of(iter_pending(sliced, batch_size=4)) == ids  # the same slices


def test_the_slices_come_one_after_the_other_each_oldest_first(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    expected = [
        item_id
        for in_slice in selection._slices(sliced, ())
        for item_id in selected_ids(sliced, f"({in_slice}) AND {PENDING}")
    ]

    assert ids_of(iter_pending(sliced)) == expected
    assert expected != selected_ids(sliced, PENDING)  # the orders do differ


def test_each_item_comes_with_what_a_replay_needs(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    columns = ", ".join(REPLAY_COLUMNS)
    everything = run_query(sliced, f"SELECT {columns} FROM items WHERE {PENDING}")

    rows = rows_of(iter_pending(sliced))

    assert all(list(row) == REPLAY_COLUMNS for row in rows)
    by_id = {row["item_id"]: row for row in everything.to_pylist()}
    assert {row["item_id"]: row for row in rows} == by_id
    assert by_id["p07"]["attempts"] == by_id["p07"]["budget_used"] == 3


def test_batches_hold_at_most_batch_size_items(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    sizes = [len(batch) for batch in iter_pending(sliced, batch_size=4)]

    assert max(sizes) == 4
    assert sum(sizes) == 61


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        (
            {"item_ids": ("p03", "p44", "done", "no-such-item")},
            "item_id IN ('p03', 'p44')",
        ),
        ({"job_id": "beta"}, f"job_id = 'beta' AND {PENDING}"),
        (
            {"where": "last_error = 'KeyError'"},
            f"last_error = 'KeyError' AND {PENDING}",
        ),
        (
            {"job_id": "alpha", "where": "payload->>'n' > '5'"},
            f"job_id = 'alpha' AND payload->>'n' > '5' AND {PENDING}",
        ),
        ({"include_quarantined": True}, "status IN ('pending', 'quarantined')"),
    ],
)
@pytest.mark.parametrize("slice_events", [10, 100_000])
def test_the_filters_select_the_same_items_in_every_slicing(
    conn: duckdb.DuckDBPyConnection,
    monkeypatch: pytest.MonkeyPatch,
    filters: dict[str, Any],
    where: str,
    slice_events: int,
) -> None:
    monkeypatch.setattr(selection, "SLICE_EVENTS", slice_events)
    expected = selected_ids(conn, where)
    assert expected  # the filter keeps something

    ids = ids_of(iter_pending(conn, **filters))
    count, firsts = count_pending(conn, **filters, sample=3)

    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids)) == count
    assert firsts == ids[:3]


@pytest.mark.parametrize("limit", [0, 1, 7, 61, 100])
def test_a_limit_takes_the_oldest_items_of_the_whole_log(
    sliced: duckdb.DuckDBPyConnection, limit: int
) -> None:
    oldest = list_items(sliced, statuses=["pending"], limit=limit)

    ids = ids_of(iter_pending(sliced, limit=limit, batch_size=4))

    assert ids == oldest.column("item_id").to_pylist()
    assert count_pending(sliced, limit=limit, sample=5) == (len(ids), ids[:5])


@pytest.mark.parametrize("limit", [5, 30, 61, 100])
def test_a_limit_above_picking_caps_the_items_taken_slice_by_slice(
    sliced: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(selection, "PICK_OLDEST_UP_TO", 4)
    everything = ids_of(iter_pending(sliced))

    ids = ids_of(iter_pending(sliced, limit=limit, batch_size=4))

    assert ids == everything[:limit]
    assert count_pending(sliced, limit=limit, sample=5) == (len(ids), ids[:5])


def test_counting_gives_the_first_ids_in_the_order_they_come(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    ids = ids_of(iter_pending(sliced))

    assert count_pending(sliced) == (61, ids[:10])
    assert count_pending(sliced, sample=0) == (61, [])


def test_an_item_with_no_enqueue_time_comes_last(
    conn: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "SLICE_EVENTS", 10)

    assert ids_of(iter_pending(conn, limit=61))[-1] == "stray"
    assert ids_of(iter_pending(conn, item_ids=("stray", "p00"))) == ["p00", "stray"]


def test_a_negative_limit_is_a_query_error(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(QueryError, match=r"^the limit must be 0 or more, not -1$"):
        next(iter_pending(sliced, limit=-1))
    with pytest.raises(QueryError, match=r"^the limit must be 0 or more, not -1$"):
        count_pending(sliced, limit=-1)


@pytest.mark.parametrize("limit", [None, 3])
def test_a_wrong_where_fails_before_the_first_batch(
    sliced: duckdb.DuckDBPyConnection, limit: int | None
) -> None:
    batches = iter_pending(sliced, where="no_such_column = 1", limit=limit)

    with pytest.raises(QueryError, match=r"no_such_column"):
        next(batches)


def plan(conn: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    (row,) = conn.sql(f"EXPLAIN (FORMAT json) {sql}").fetchall()
    nodes: list[dict[str, Any]] = json.loads(row[1])
    return nodes[0]


def nodes_in(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        yield from nodes_in(child)


def test_a_slice_is_cut_in_the_scan_of_the_events_below_the_aggregation(
    sliced: duckdb.DuckDBPyConnection,
) -> None:
    in_slice = selection._slices(sliced, ())[2]
    sql, _ = selection._pending_sql(
        item_ids=(),
        job_id=None,
        where=None,
        include_quarantined=False,
        columns="item_id",
        in_slice=in_slice,
    )

    (grouping,) = [
        node for node in nodes_in(plan(sliced, sql)) if node["name"] == "HASH_GROUP_BY"
    ]

    (scan,) = [node for node in nodes_in(grouping) if node["name"] == "READ_PARQUET"]
    bounds = re.findall(r"'[^']*'", in_slice)
    assert len(bounds) == 2  # a slice between two others
    assert all(bound in scan["extra_info"].get("Filters", "") for bound in bounds)


def started(item_id: str, run_id: str, attempt: int = 1) -> Event:
    return Event(
        type="attempt_started", item_id=item_id, run_id=run_id, attempt=attempt
    )


def failed(item_id: str, run_id: str, attempt: int = 1) -> Event:
    return Event(type="attempt_failed", item_id=item_id, run_id=run_id, attempt=attempt)


def test_an_open_attempt_is_one_a_run_that_never_finished_left(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": name, "job_id": "j"} for name in "abcd"))
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="run_started", run_id="r-done"),
                started("d", "r-done"),  # left open, but its run finished
                Event(type="run_finished", run_id="r-done"),
                Event(type="run_started", run_id="r-dead"),
                started("a", "r-dead"),
                started("b", "r-dead"),
                failed("b", "r-dead"),
                started("c", "r-dead"),
                failed("c", "r-dead"),
                started("c", "r-dead", attempt=2),
            ]
        )
    conn = connect(log)
    try:
        runs = open_runs(conn)
        attempts = open_attempts(conn)
    finally:
        conn.close()

    assert runs == ["r-dead"]
    assert attempts == [
        {
            "item_id": "a",
            "job_id": None,
            "correlation_id": None,
            "run_id": "r-dead",
            "attempt": 1,
        },
        {
            "item_id": "c",
            "job_id": None,
            "correlation_id": None,
            "run_id": "r-dead",
            "attempt": 2,
        },
    ]


def test_with_every_run_finished_no_attempt_is_open(log: EventLog) -> None:
    enqueue(log, {"item_id": "a"})
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="run_started", run_id="r1"),
                started("a", "r1"),
                Event(type="run_finished", run_id="r1"),
            ]
        )
    conn = connect(log)
    try:
        assert (open_runs(conn), open_attempts(conn)) == ([], [])
    finally:
        conn.close()
