"""Listing items and showing one item's history."""

from __future__ import annotations

import io
import json

import duckdb
import pytest

from analytics import (
    ItemHistory,
    QueryError,
    connect,
    list_items,
    run_query,
    show_item,
)
from eventlog import Event, EventLog, LogWriter, import_records


@pytest.fixture
def conn(log: EventLog) -> duckdb.DuckDBPyConnection:
    """Items c, a, b (enqueued in that order, then d, e together), in each status."""
    for batch in (["c"], ["a"], ["b"], ["e", "d"]):
        lines = "".join(json.dumps({"item_id": i, "job_id": "j"}) + "\n" for i in batch)
        import_records(log, io.BytesIO(lines.encode()), source="test")
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="attempt_started", item_id="a", run_id="r1"),
                Event(type="attempt_succeeded", item_id="a", run_id="r1"),
                Event(type="item_quarantined", item_id="b"),
                Event(type="attempt_started", item_id="d", run_id="r1"),
            ]
        )
    return connect(log)


def ids(table: object) -> list[str]:
    return table.column("item_id").to_pylist()  # type: ignore[attr-defined, no-any-return]


def test_items_are_listed_oldest_enqueued_first_then_by_id(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    assert ids(list_items(conn)) == ["c", "a", "b", "d", "e"]


@pytest.mark.parametrize("limit", [None, 0, 2, 10, 20_000])
def test_a_limit_keeps_the_first_items_whichever_way_they_are_read(
    conn: duckdb.DuckDBPyConnection, limit: int | None
) -> None:
    everything = list_items(conn)

    listed = list_items(conn, limit=limit)

    assert listed.schema == everything.schema
    assert listed.to_pylist() == everything.to_pylist()[:limit]


def test_items_can_be_listed_by_status(conn: duckdb.DuckDBPyConnection) -> None:
    assert ids(list_items(conn, statuses=["pending"])) == ["c", "e"]
    assert ids(list_items(conn, statuses=["running", "succeeded"])) == ["a", "d"]
    assert ids(list_items(conn, statuses=["discarded"], limit=5)) == []


def test_an_unknown_status_names_the_valid_ones(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(
        QueryError,
        match=(
            r"^unknown status 'done'; the statuses are "
            r"pending, running, succeeded, quarantined, discarded$"
        ),
    ):
        list_items(conn, statuses=["pending", "done"])


def test_items_can_be_filtered_by_a_condition(conn: duckdb.DuckDBPyConnection) -> None:
    listed = list_items(
        conn, statuses=["pending", "running"], where="item_id > 'c'", limit=1
    )

    assert ids(listed) == ["d"]


def test_a_mistake_in_the_condition_is_a_query_error(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(QueryError, match=r'^Binder Error: .*"nope".*'):
        list_items(conn, where="nope = 1")
    with pytest.raises(QueryError, match=r"^the where condition is empty$"):
        list_items(conn, where="  ")


def test_a_negative_limit_is_a_query_error(conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(QueryError, match=r"^the limit must be 0 or more, not -1$"):
        list_items(conn, limit=-1)


def test_an_item_is_shown_with_its_events_in_order(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    history = show_item(conn, "a")

    assert isinstance(history, ItemHistory)
    assert history.item["item_id"] == "a"
    assert history.item["status"] == "succeeded"
    assert history.events.column("type").to_pylist() == [
        "item_enqueued",
        "attempt_started",
        "attempt_succeeded",
    ]
    assert history.events.schema == run_query(conn, "FROM events LIMIT 0").schema


def test_an_unknown_item_has_no_history(conn: duckdb.DuckDBPyConnection) -> None:
    assert show_item(conn, "zzz") is None
    assert show_item(conn, "a' OR '1'='1") is None
