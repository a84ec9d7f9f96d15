"""What a replay records: every attempt, how it ended, and what the item became.

The commands are real subprocesses, small scripts in ``tests/workers/``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from replaying import enqueue, history, query, run, worker

from eventlog import EventLog, import_records
from reprocessor import Selection
from reprocessor._attempt import OUTPUT_TAIL_BYTES


def calls(path: Path) -> list[dict[str, Any]]:
    """What each run of ``record.py`` received, in the order they ran."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_succeeding_item_leaves_the_pending_set(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(3)))

    summary = await run(log, worker("record", tmp_path / "calls"))

    assert (summary.selected, summary.succeeded, summary.failed) == (3, 3, 0)
    assert summary.exit_code == 0
    assert summary.status == "succeeded"
    assert query(log, "SELECT count(*) AS n FROM items WHERE status = 'pending'") == [
        {"n": 0}
    ]
    item, events = history(log, "order-1")
    assert item["status"] == "succeeded"
    assert item["last_run_id"] == summary.run_id
    assert [(e["type"], e["attempt"], e["run_id"]) for e in events] == [
        ("item_enqueued", None, None),
        ("attempt_started", 1, summary.run_id),
        ("attempt_succeeded", 1, summary.run_id),
    ]
    assert events[2]["exit_code"] == 0
    assert events[2]["duration_ms"] >= 0
    assert len(calls(tmp_path / "calls")) == 3


async def test_an_attempt_is_recorded_as_started_before_its_command_runs(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(4)))

    summary = await run(log, worker("check_started", log.path))

    assert summary.succeeded == 4, query(log, "SELECT last_error FROM items")


async def test_a_failing_item_stays_pending_with_the_new_failure(
    log: EventLog,
) -> None:
    enqueue(
        log,
        {"item_id": "order-1", "error": "old failure", "error_type": "TimeoutError"},
    )

    summary = await run(log, worker("fail"))

    assert (summary.selected, summary.succeeded, summary.failed) == (1, 0, 1)
    assert summary.exit_code == 1
    assert summary.status == "failed"
    # Counted as `dlq stats` and the views count it: the recorded type,
    # exit_code, refined by the message, a ValueError.
    assert summary.error_types == {"validation": 1}
    (attempt,) = query(log, "SELECT error_type FROM attempts WHERE outcome = 'failed'")
    assert attempt["error_type"] == "validation"
    item, events = history(log, "order-1")
    assert item["status"] == "pending"
    assert item["attempts"] == 1
    assert item["failures"] == 2
    assert item["last_error"] == "ValueError: cannot process order-1"
    assert item["last_error_type"] == "exit_code"
    assert item["last_exit_code"] == 1
    assert [e["type"] for e in events] == [
        "item_enqueued",
        "attempt_started",
        "attempt_failed",
    ]
    assert events[0]["error"] == "old failure"
    failed = events[2]
    assert failed["error"] == "ValueError: cannot process order-1"
    assert failed["exit_code"] == 1
    assert failed["signal"] is None
    assert failed["output"].startswith("[stdout]\nprocessing order-1\n\n[stderr]\n")
    assert "Traceback (most recent call last):" in failed["output"]
    assert failed["output"].endswith("ValueError: cannot process order-1\n")


async def test_correlation_ids_and_payloads_are_carried_unchanged(
    log: EventLog, tmp_path: Path
) -> None:
    # The payload's exact text (spacing, key order, escapes) is what is kept.
    payload_text = '{"z": 1.50, "a": ["é", null],  "n": {"deep": "\\u00e9"}}'
    lines = "".join(
        f'{{"item_id": "{item_id}", "correlation_id": "{correlation_id}", '
        f'"payload": {payload_text}}}\n'
        for item_id, correlation_id in [("with", "req-7"), ("fails", "req-8")]
    )
    lines += '{"item_id": "without"}\n'
    import_records(log, io.BytesIO(lines.encode()), source="test")
    before = {row["item_id"]: row for row in query(log, "SELECT * FROM items")}

    await run(log, worker("fail"), Selection(item_ids=("fails",)))
    await run(log, worker("record", tmp_path / "calls"))

    after = {row["item_id"]: row for row in query(log, "SELECT * FROM items")}
    assert before["with"]["payload"] == payload_text
    for item_id in ("with", "fails", "without"):
        assert after[item_id]["payload"] == before[item_id]["payload"]
        assert after[item_id]["correlation_id"] == before[item_id]["correlation_id"]
    attempt_ids = query(
        log,
        "SELECT item_id, list(DISTINCT correlation_id) AS ids FROM events "
        "WHERE type LIKE 'attempt%' GROUP BY item_id ORDER BY item_id",
    )
    assert attempt_ids == [
        {"item_id": "fails", "ids": ["req-8"]},
        {"item_id": "with", "ids": ["req-7"]},
        {"item_id": "without", "ids": ["without"]},
    ]
    received = {call["env"]["DLQ_ITEM_ID"]: call for call in calls(tmp_path / "calls")}
    assert received["with"]["stdin"] == received["fails"]["stdin"] == payload_text
    assert received["with"]["env"]["DLQ_CORRELATION_ID"] == "req-7"
    assert received["without"]["env"]["DLQ_CORRELATION_ID"] == "without"


async def test_the_payload_is_on_stdin_and_the_environment_names_the_attempt(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(
        log,
        {
            "item_id": "order-1",
            "job_id": "billing",
            "correlation_id": "req-1",
            "payload": {"amount": 12},
        },
        {"item_id": "no-payload"},
    )

    summary = await run(log, worker("record", tmp_path / "calls"))

    received = {call["env"]["DLQ_ITEM_ID"]: call for call in calls(tmp_path / "calls")}
    assert received["order-1"]["stdin"] == '{"amount": 12}'
    assert received["order-1"]["env"] == {
        "DLQ_ITEM_ID": "order-1",
        "DLQ_JOB_ID": "billing",
        "DLQ_CORRELATION_ID": "req-1",
        "DLQ_ATTEMPT": "1",
        "DLQ_RUN_ID": summary.run_id,
    }
    assert received["no-payload"]["stdin"] == "null"
    assert received["no-payload"]["env"]["DLQ_JOB_ID"] == "default"


async def test_a_command_that_never_reads_its_stdin_succeeds(log: EventLog) -> None:
    # Far more than a pipe holds: writing it would block if nobody gave up.
    enqueue(log, {"item_id": "big", "payload": {"blob": "x" * 2_000_000}})

    summary = await run(log, ("true",))

    assert summary.succeeded == 1
    item, _ = history(log, "big")
    assert item["status"] == "succeeded"


async def test_the_output_kept_is_a_bounded_tail_of_each_stream(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "chatty"})

    summary = await run(log, worker("noisy", 3))

    assert summary.failed == 1
    _, events = history(log, "chatty")
    failed = events[-1]
    assert failed["type"] == "attempt_failed"
    assert failed["exit_code"] == 2
    assert failed["error_type"] == "exit_code"
    assert failed["error"] == "OSError: disk full after output"
    output = failed["output"]
    assert len(output) <= 2 * OUTPUT_TAIL_BYTES + len("[stdout]\n\n[stderr]\n")
    stdout, stderr = output.split("\n[stderr]\n")
    assert stdout.startswith("[stdout]\n")
    assert stdout.endswith("x\nstdout ends here\n")
    assert stderr.endswith("x\nOSError: disk full after output\n")
    assert len(stderr) == OUTPUT_TAIL_BYTES


async def test_a_command_that_does_not_exist_fails_as_not_found(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "order-1"})
    missing = str(tmp_path / "no-such-program")

    summary = await run(log, (missing, "{item_id}"))

    assert summary.failed == 1
    assert summary.error_types == {"not_found": 1}
    item, events = history(log, "order-1")
    assert item["status"] == "pending"
    assert events[-1]["type"] == "attempt_failed"
    assert events[-1]["error_type"] == "not_found"
    assert events[-1]["error"] == f"command not found: {missing}"
    assert events[-1]["exit_code"] is None


async def test_a_command_killed_by_a_signal_fails_naming_the_signal(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "order-1"})

    summary = await run(log, ("/bin/sh", "-c", "kill -KILL $$"))

    assert summary.error_types == {"signal": 1}
    _, events = history(log, "order-1")
    assert events[-1]["type"] == "attempt_failed"
    assert events[-1]["error_type"] == "signal"
    assert events[-1]["signal"] == 9
    assert events[-1]["exit_code"] is None
    assert events[-1]["error"] == "killed by SIGKILL"


async def test_without_a_command_each_item_runs_its_own_and_one_without_is_skipped(
    log: EventLog, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    enqueue(
        log,
        {"item_id": "own", "command": f"echo ran >> {done}"},
        {"item_id": "broken", "command": "echo 'KeyError: sku' >&2; exit 4"},
        {"item_id": "none"},
    )

    summary = await run(log)

    assert (summary.succeeded, summary.failed, summary.skipped) == (1, 1, 1)
    assert summary.exit_code == 1
    assert done.read_text() == "ran\n"
    rows = query(
        log,
        "SELECT item_id, status, attempts, last_error FROM items ORDER BY item_id",
    )
    assert rows == [
        {"item_id": "broken", "status": "pending", "attempts": 1,
         "last_error": "KeyError: sku"},
        {"item_id": "none", "status": "pending", "attempts": 0, "last_error": None},
        {"item_id": "own", "status": "succeeded", "attempts": 1, "last_error": None},
    ]  # fmt: skip


async def test_the_run_records_its_command_selection_options_and_totals(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "a", "job_id": "j"}, {"item_id": "b", "job_id": "j"})

    summary = await run(
        log, ("true", "{item_id}"), Selection(job_id="j"), parallel=2, timeout=30
    )

    started, finished = query(
        log,
        "SELECT type, run_id, command, data FROM events "
        "WHERE type LIKE 'run%' ORDER BY event_id",
    )
    assert (started["type"], started["run_id"]) == ("run_started", summary.run_id)
    assert started["command"] == "true '{item_id}'"
    recorded = json.loads(started["data"])
    assert recorded["selection"] == {
        "item_ids": [],
        "job_id": "j",
        "where": None,
        "signature": None,
        "limit": None,
        "force": False,
    }
    assert recorded["options"]["command"] == ["true", "{item_id}"]
    assert recorded["options"]["parallel"] == 2
    assert recorded["options"]["timeout"] == 30
    assert (finished["type"], finished["run_id"]) == ("run_finished", summary.run_id)
    totals = json.loads(finished["data"])
    assert totals["selected"] == 2
    assert totals["succeeded"] == 2
    assert totals["status"] == "succeeded"
