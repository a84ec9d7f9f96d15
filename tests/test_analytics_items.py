"""The `items` view: one row per item, derived from the item's events."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from analytics import connect, run_query
from eventlog import Event, EventLog, LogWriter, import_records


def enqueue(log: EventLog, *records: dict[str, Any]) -> None:
    """Import items the way `dlq import` does (into a sealed segment)."""
    lines = "".join(json.dumps(record) + "\n" for record in records)
    import_records(log, io.BytesIO(lines.encode()), source="test")


def record(log: EventLog, *events: Event) -> list[Event]:
    """Append events with a writer of their own, sealed when it closes."""
    with LogWriter(log) as writer:
        return writer.append(list(events))


def item(log: EventLog, item_id: str) -> dict[str, Any]:
    rows = run_query(
        connect(log), f"SELECT * FROM items WHERE item_id = '{item_id}'"
    ).to_pylist()
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def test_an_enqueued_item_is_pending_with_what_it_was_enqueued_with(
    log: EventLog,
) -> None:
    enqueue(
        log,
        {
            "item_id": "order-1",
            "job_id": "billing",
            "correlation_id": "req-9",
            "payload": {"order": 1},
            "error": "timeout after 30s",
            "error_type": "TimeoutError",
            "exit_code": 3,
            "signal": 9,
            "command": "bill --order 1",
        },
    )

    row = item(log, "order-1")

    assert row["status"] == "pending"
    assert row["job_id"] == "billing"
    assert row["correlation_id"] == "req-9"
    assert json.loads(row["payload"]) == {"order": 1}
    assert row["command"] == "bill --order 1"
    assert row["last_error"] == "timeout after 30s"
    assert row["last_error_type"] == "TimeoutError"
    assert row["last_exit_code"] == 3
    assert row["last_signal"] == 9
    assert row["attempts"] == 0
    assert row["failures"] == 1
    assert row["last_run_id"] is None
    assert row["enqueued_at"] == row["updated_at"]


def test_the_items_view_has_its_documented_columns(log: EventLog) -> None:
    described = run_query(connect(log), "DESCRIBE items").to_pylist()

    assert {row["column_name"]: row["column_type"] for row in described} == {
        "item_id": "VARCHAR",
        "status": "VARCHAR",
        "job_id": "VARCHAR",
        "correlation_id": "VARCHAR",
        "attempts": "BIGINT",
        "budget_used": "BIGINT",
        "failures": "BIGINT",
        "last_error_type": "VARCHAR",
        "last_error": "VARCHAR",
        "last_exit_code": "BIGINT",
        "last_signal": "BIGINT",
        "last_signature": "VARCHAR",
        "enqueued_at": "TIMESTAMP WITH TIME ZONE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "last_run_id": "VARCHAR",
        "command": "VARCHAR",
        "payload": "VARCHAR",
    }


@pytest.mark.parametrize(
    ("types", "status"),
    [
        (["attempt_started"], "running"),
        (["attempt_started", "attempt_succeeded"], "succeeded"),
        (["attempt_started", "attempt_failed"], "pending"),
        (["attempt_started", "attempt_interrupted"], "pending"),
        (["item_quarantined"], "quarantined"),
        (["item_discarded"], "discarded"),
        (["item_quarantined", "item_requeued"], "pending"),
        (["item_discarded", "item_requeued"], "pending"),
        (["attempt_started", "attempt_succeeded", "item_amended"], "succeeded"),
        (["item_quarantined", "item_amended"], "quarantined"),
        (["attempt_started", "attempt_succeeded", "item_enqueued"], "pending"),
        (["item_discarded", "item_enqueued"], "pending"),
        (["item_quarantined", "item_enqueued"], "pending"),
    ],
)
def test_the_status_follows_the_last_event_that_decides_it(
    log: EventLog, types: list[str], status: str
) -> None:
    enqueue(log, {"item_id": "a"})
    # One append: the events may share a microsecond, and still keep their order.
    record(log, *(Event(type=kind, item_id="a", run_id="r1") for kind in types))

    assert item(log, "a")["status"] == status


def test_the_status_follows_event_order_not_segment_order(log: EventLog) -> None:
    enqueue(log, {"item_id": "a"})
    first, second = LogWriter(log), LogWriter(log)
    if first.writer_id < second.writer_id:
        # The later event must sit in the segment whose name sorts first.
        first, second = second, first
    with first:
        first.append([Event(type="attempt_started", item_id="a", run_id="r1")])
    with second:
        second.append([Event(type="attempt_succeeded", item_id="a", run_id="r1")])

    assert item(log, "a")["status"] == "succeeded"


def test_attempts_count_finished_attempts_and_failures_count_failed_ones(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "a"})
    record(
        log,
        Event(type="attempt_started", item_id="a", run_id="r1", attempt=1),
        Event(type="attempt_failed", item_id="a", run_id="r1", attempt=1),
        Event(type="attempt_started", item_id="a", run_id="r2", attempt=2),
        Event(type="attempt_interrupted", item_id="a", run_id="r2", attempt=2),
        Event(type="attempt_started", item_id="a", run_id="r3", attempt=3),
        Event(type="attempt_succeeded", item_id="a", run_id="r3", attempt=3),
        Event(type="attempt_started", item_id="a", run_id="r4", attempt=4),
    )

    row = item(log, "a")

    assert row["attempts"] == 3
    assert row["failures"] == 2  # the enqueue and the failed attempt
    assert row["last_run_id"] == "r4"
    assert row["status"] == "running"


def test_the_last_error_is_the_latest_failure_even_where_it_has_no_value(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "a", "error": "first", "exit_code": 1})
    record(
        log,
        Event(
            type="attempt_failed",
            item_id="a",
            error="second",
            error_type="ValueError",
            exit_code=None,
            signal=15,
        ),
        Event(type="attempt_interrupted", item_id="a", error="not a failure"),
    )

    row = item(log, "a")

    assert row["last_error"] == "second"
    assert row["last_error_type"] == "ValueError"
    assert row["last_exit_code"] is None
    assert row["last_signal"] == 15


def test_the_payload_follows_amendments(log: EventLog) -> None:
    enqueue(log, {"item_id": "a", "payload": {"v": 1}})
    record(log, Event(type="item_amended", item_id="a", payload='{"v": 2}'))
    assert json.loads(item(log, "a")["payload"]) == {"v": 2}

    record(log, Event(type="item_amended", item_id="a", payload='{"v": 3}'))
    assert json.loads(item(log, "a")["payload"]) == {"v": 3}


def test_an_amendment_without_a_payload_keeps_the_payload(log: EventLog) -> None:
    enqueue(log, {"item_id": "a", "payload": {"v": 1}})
    record(log, Event(type="item_amended", item_id="a", data='{"note": "x"}'))

    assert json.loads(item(log, "a")["payload"]) == {"v": 1}


def test_a_new_enqueue_replaces_the_payload_and_command_but_not_enqueued_at(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "a", "payload": {"v": 1}, "command": "old"})
    record(log, Event(type="item_amended", item_id="a", payload='{"v": 2}'))
    first_enqueued_at = item(log, "a")["enqueued_at"]
    enqueue(log, {"item_id": "a", "payload": {"v": 3}, "command": "new"})

    row = item(log, "a")

    assert json.loads(row["payload"]) == {"v": 3}
    assert row["command"] == "new"
    assert row["failures"] == 2
    assert row["enqueued_at"] == first_enqueued_at
    assert row["updated_at"] > first_enqueued_at


def test_each_item_is_one_row_and_run_events_are_no_item(log: EventLog) -> None:
    enqueue(log, {"item_id": "a"}, {"item_id": "b"}, {"item_id": "a"})
    record(
        log,
        Event(type="run_started", run_id="r1"),
        Event(type="attempt_started", item_id="b", run_id="r1"),
        Event(type="run_finished", run_id="r1"),
    )

    rows = run_query(
        connect(log), "SELECT item_id, status FROM items ORDER BY item_id"
    ).to_pylist()

    assert rows == [
        {"item_id": "a", "status": "pending"},
        {"item_id": "b", "status": "running"},
    ]


def test_the_budget_counts_tried_attempts_since_the_last_requeue(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "a"})
    attempt = {"item_id": "a", "run_id": "r1"}
    record(
        log,
        Event(type="attempt_started", attempt=1, **attempt),
        Event(type="attempt_failed", attempt=1, **attempt),
        Event(type="attempt_started", attempt=2, **attempt),
        Event(type="attempt_interrupted", attempt=2, **attempt),
    )
    before_requeue = item(log, "a")
    record(
        log,
        Event(type="item_requeued", item_id="a", attempt=1),
        Event(type="attempt_started", attempt=3, **attempt),
        Event(type="attempt_failed", attempt=3, **attempt),
    )
    after_requeue = item(log, "a")

    # An interrupted attempt is an attempt, but costs no budget.
    assert (before_requeue["attempts"], before_requeue["budget_used"]) == (2, 1)
    assert (after_requeue["attempts"], after_requeue["budget_used"]) == (3, 1)
