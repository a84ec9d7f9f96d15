"""`dlq list` and `dlq show`: the items' current state, and one item's history."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import analytics
from dlq import app
from eventlog import (
    FIELD_NAMES,
    Event,
    EventLog,
    LogWriter,
    enqueue_event,
    new_record,
)

runner = CliRunner()


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def table_cells(text: str) -> list[list[str]]:
    """The cells of every row a rich table drew, its header row first."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in text.splitlines()
        if line.startswith(("│", "┃"))
    ]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory below ``root``."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


@dataclass
class Queue:
    """A log holding an item in each status, and the rows `list --json` owes."""

    path: Path
    rows: dict[str, dict[str, Any]]
    events: dict[str, list[Event]]

    def expected(self, *item_ids: str) -> list[dict[str, Any]]:
        return [self.rows[item_id] for item_id in item_ids]

    @property
    def in_order(self) -> list[str]:
        """The item ids in the order `dlq list` gives them."""
        return sorted(self.rows, key=lambda i: (self.rows[i]["enqueued_at"], i))


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    """Items written through the event log's own writer, one story each."""
    path = tmp_path / "log"
    log = EventLog.open(path, create=True)
    stories: dict[str, list[Event]] = {
        "pend-1": [_enqueued("pend-1", "nightly", error="timed out", exit_code=124)],
        "pend-2": [_enqueued("pend-2", "hourly", payload='{"n": 2}')],
        "done-1": [
            _enqueued("done-1", "nightly", error="refused", error_type="network"),
            Event(type="attempt_started", item_id="done-1", run_id="r1", attempt=1),
            Event(type="attempt_succeeded", item_id="done-1", run_id="r1", attempt=1),
        ],
        "run-1": [
            _enqueued("run-1", "hourly", command="./fix.sh"),
            Event(type="attempt_started", item_id="run-1", run_id="r2", attempt=1),
        ],
        "quar-1": [
            _enqueued("quar-1", "nightly", error="first"),
            Event(type="attempt_started", item_id="quar-1", run_id="r1", attempt=1),
            Event(
                type="attempt_failed",
                item_id="quar-1",
                run_id="r1",
                attempt=1,
                error="second",
                error_type="exit_code",
                exit_code=3,
            ),
            Event(type="item_quarantined", item_id="quar-1", reason="too many"),
        ],
        "disc-1": [
            _enqueued("disc-1", "hourly"),
            Event(type="item_discarded", item_id="disc-1", reason="obsolete"),
        ],
    }
    events: dict[str, list[Event]] = {}
    with LogWriter(log) as writer:
        for item_id, story in stories.items():
            events[item_id] = writer.append(story)

    conn = analytics.connect(log)

    def signature(error: str | None, values: dict[str, Any]) -> str:
        # What the failure's signature is made from: its message, or else
        # its exit code (the macro itself is tested on its own).
        if error is None:
            error = "no error message"
            if values.get("last_exit_code") is not None:
                error = f"exit code {values['last_exit_code']}"
        found = conn.execute("SELECT error_signature(?)", [error]).fetchone()
        assert found is not None
        return str(found[0])

    def row(item_id: str, status: str, **values: Any) -> dict[str, Any]:
        enqueue, *_ = events[item_id]
        return {
            "item_id": item_id,
            "status": status,
            "job_id": enqueue.job_id,
            "correlation_id": item_id,
            "attempts": 0,
            "budget_used": 0,
            "failures": 1,
            "last_error_type": None,
            "last_error": None,
            "last_exit_code": None,
            "last_signal": None,
            "last_signature": signature(values.get("last_error"), values),
            "enqueued_at": enqueue.ts,
            "updated_at": events[item_id][-1].ts,
            "last_run_id": None,
            "command": None,
            "payload": None,
        } | values

    rows = [
        row("pend-1", "pending", last_error="timed out", last_exit_code=124),
        row("pend-2", "pending", payload='{"n": 2}'),
        row(
            "done-1",
            "succeeded",
            attempts=1,
            budget_used=1,
            last_error="refused",
            last_error_type="network",
            last_run_id="r1",
        ),
        row("run-1", "running", last_run_id="r2", command="./fix.sh"),
        row(
            "quar-1",
            "quarantined",
            attempts=1,
            budget_used=1,
            failures=2,
            last_error="second",
            last_error_type="exit_code",
            last_exit_code=3,
            last_run_id="r1",
        ),
        row("disc-1", "discarded"),
    ]
    conn.close()
    return Queue(path, {r["item_id"]: r for r in rows}, events)


def _enqueued(item_id: str, job: str, **fields: Any) -> Event:
    return enqueue_event(new_record(item_id, job_id=job, **fields))


def listed(*args: str | Path) -> list[dict[str, Any]]:
    """`dlq list --json ARGS`, which must succeed, parsed."""
    result = dlq("list", "--json", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


# -- list ----------------------------------------------------------------------


def test_list_json_gives_every_item_exactly(queue: Queue) -> None:
    assert listed("--log", queue.path) == queue.expected(*queue.in_order)


def test_list_table_shows_the_main_columns(queue: Queue) -> None:
    result = dlq("list", "--log", queue.path)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "6 items\n"
    header, *rows = table_cells(result.stdout)
    assert header == [
        "item_id",
        "job_id",
        "status",
        "attempts",
        "last_error",
        "updated_at",
    ]
    expected = queue.expected(*queue.in_order)
    assert rows == [
        [
            row["item_id"],
            row["job_id"],
            row["status"],
            str(row["attempts"]),
            row["last_error"] or "",
            row["updated_at"],
        ]
        for row in expected
    ]


def test_list_of_an_empty_log(tmp_path: Path) -> None:
    EventLog.open(tmp_path / "log", create=True)

    assert listed("--log", tmp_path / "log") == []
    result = dlq("list", "--log", tmp_path / "log")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "0 items\n"
    assert table_cells(result.stdout)[1:] == []


def test_list_by_one_status(queue: Queue) -> None:
    rows = listed("--status", "pending", "--log", queue.path)

    assert rows == queue.expected("pend-1", "pend-2")


def test_list_status_is_repeatable(queue: Queue) -> None:
    rows = listed("--status", "discarded", "--status", "succeeded", "--log", queue.path)

    assert [row["item_id"] for row in rows] == [
        item_id for item_id in queue.in_order if item_id in {"done-1", "disc-1"}
    ]
    assert rows == queue.expected(*(row["item_id"] for row in rows))


@pytest.mark.parametrize(
    ("status", "item_id"),
    [("running", "run-1"), ("quarantined", "quar-1"), ("succeeded", "done-1")],
)
def test_list_each_status(queue: Queue, status: str, item_id: str) -> None:
    assert listed("--status", status, "--log", queue.path) == queue.expected(item_id)


def test_an_unknown_status_is_refused_naming_the_valid_ones(queue: Queue) -> None:
    result = dlq(
        "list", "--status", "pending", "--status", "failed", "--log", queue.path
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: unknown status 'failed'; the statuses are pending, running, "
        "succeeded, quarantined, discarded\n"
    )


def test_list_where(queue: Queue) -> None:
    rows = listed("--where", "job_id = 'nightly' AND attempts > 0", "--log", queue.path)

    assert [row["item_id"] for row in rows] == [
        item_id for item_id in queue.in_order if item_id in {"done-1", "quar-1"}
    ]


def test_list_where_and_status_together(queue: Queue) -> None:
    rows = listed(
        "--where", "job_id = 'nightly'", "--status", "pending", "--log", queue.path
    )

    assert rows == queue.expected("pend-1")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "true; DROP TABLE items",
            "the where condition must be a single condition, without `;`",
        ),
        (
            "true) UNION SELECT * FROM items WHERE (true",
            "the where condition closes a parenthesis it did not open; "
            "it must be a single condition",
        ),
    ],
    ids=["semicolon", "parenthesis"],
)
def test_a_where_that_escapes_its_condition_is_refused(
    queue: Queue, where: str, message: str
) -> None:
    before = snapshot(queue.path)

    result = dlq("list", "--where", where, "--log", queue.path)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    assert snapshot(queue.path) == before


def test_a_where_with_a_mistake_is_one_line(queue: Queue) -> None:
    result = dlq("list", "--where", "no_such_column = 1", "--log", queue.path)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "no_such_column" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("limit", [0, 1, 2, 6, 20_000])
def test_list_limit(queue: Queue, limit: int) -> None:
    rows = listed("--limit", str(limit), "--log", queue.path)

    assert rows == queue.expected(*queue.in_order[:limit])


def test_a_negative_limit_is_bad_usage(queue: Queue) -> None:
    result = dlq("list", "--limit", "-1", "--log", queue.path)

    assert result.exit_code == 2
    assert "--limit" in result.stderr


def test_list_without_a_log_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = dlq("list", "--log", missing)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no dead-letter queue at {missing}: add items with `dlq add` or "
        "`dlq import`, or point --log (or DLQ_LOG) at one\n"
    )
    assert not missing.exists()


def test_list_reads_live_segments_of_a_running_writer(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    with LogWriter(log) as writer:
        writer.append([_enqueued("live-1", "nightly")])

        rows = listed("--log", log.path)

    assert [row["item_id"] for row in rows] == ["live-1"]


# -- show ----------------------------------------------------------------------


def test_show_prints_the_state_then_a_timeline_of_every_event(queue: Queue) -> None:
    result = dlq("show", "quar-1", "--log", queue.path)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    state, _, timeline = result.stdout.partition("timeline")
    row = queue.rows["quar-1"]
    assert state.splitlines()[:4] == [
        "item_id:         quar-1",
        "status:          quarantined",
        "job_id:          nightly",
        "correlation_id:  quar-1",
    ]
    assert "last_error:      second\n" in state
    assert f"enqueued_at:     {row['enqueued_at']}\n" in state
    header, *rows = table_cells(timeline)
    assert header == [
        "ts",
        "type",
        "attempt",
        "run_id",
        "by",
        "exit_code",
        "detail",
    ]
    events = queue.events["quar-1"]
    assert rows == [
        [
            event.ts,
            event.type,
            _text(event.attempt),
            _text(event.run_id),
            f"{event.user}@{event.host}",
            _text(event.exit_code),
            _text(event.error or event.reason),
        ]
        for event in events
    ]
    assert rows[-1][-1] == "too many"  # a quarantine's reason


def test_the_timeline_gives_one_line_per_event_cut_with_an_ellipsis(
    tmp_path: Path,
) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    long_error = "Traceback (most recent call last):\n  File x\nValueError: bad"
    with LogWriter(log) as writer:
        writer.append(
            [
                _enqueued("long-1", "nightly", error=long_error),
                Event(
                    type="attempt_failed",
                    item_id="long-1",
                    run_id="r1",
                    attempt=1,
                    error="E" * 200,
                    signal=9,
                ),
            ]
        )

    result = dlq("show", "long-1", "--log", log.path)

    assert result.exit_code == 0, result.stderr
    _, *rows = table_cells(result.stdout.partition("timeline")[2])
    assert [row[1] for row in rows] == ["item_enqueued", "attempt_failed"]
    assert rows[0][-1] == "Traceback (most recent call last): …"
    assert rows[1][-2] == "signal 9"
    assert rows[1][-1].endswith("…")
    assert set(rows[1][-1][:-1]) == {"E"}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def test_show_json_has_the_item_and_every_event(queue: Queue) -> None:
    result = dlq("show", "done-1", "--json", "--log", queue.path)

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"item", "events"}
    assert document["item"] == queue.rows["done-1"]
    events = queue.events["done-1"]
    assert document["events"] == [
        {name: getattr(event, name) for name in FIELD_NAMES} for event in events
    ]


def test_show_json_is_one_line(queue: Queue) -> None:
    result = dlq("show", "pend-2", "--json", "--log", queue.path)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout)["item"]["payload"] == '{"n": 2}'


def test_show_an_unknown_item(queue: Queue) -> None:
    result = dlq("show", "nope", "--log", queue.path)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no item 'nope' in {queue.path}; `dlq list` shows the items\n"
    )


def test_show_without_a_log(tmp_path: Path) -> None:
    result = dlq("show", "x", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")


NOT_UTF8 = b"\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["list", "--where", f"item_id = '{NOT_UTF8}'"], "--where"),
        (["list", "--status", "pending", "--status", NOT_UTF8], "--status"),
        (["show", NOT_UTF8], "ITEM_ID"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused(
    queue: Queue, args: list[str], name: str
) -> None:
    result = dlq(*args, "--log", queue.path)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {name} is not valid UTF-8 text\n"
