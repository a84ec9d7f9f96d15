"""`dlq replay` on the command line: options in, the summary out, exit codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from analytics import connect, run_query
from dlq._app import app
from eventlog import EventLog, import_records

WORKERS = Path(__file__).parent / "workers"

SUMMARY_FIELDS = {
    "run_id",
    "status",
    "selected",
    "succeeded",
    "failed",
    "quarantined",
    "skipped",
    "interrupted",
    "recovered",
    "canary_failed",
    "duration_s",
    "throughput",
    "error_types",
}


def worker(name: str, *args: object) -> list[str]:
    """The argv that runs the script ``tests/workers/<name>.py``."""
    return [sys.executable, "-S", str(WORKERS / f"{name}.py"), *map(str, args)]


def enqueue(log: EventLog, *records: dict[str, Any]) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    import_records(log, io.BytesIO(lines.encode()), source="test")


def dlq_replay(log: EventLog, *args: str) -> Result:
    """Run `dlq replay --log LOG ARGS...` in this process."""
    return CliRunner().invoke(
        app, ["replay", "--log", str(log.path), *args], catch_exceptions=False
    )


def query(log: EventLog, sql: str) -> list[dict[str, Any]]:
    conn = connect(log)
    try:
        rows: list[dict[str, Any]] = run_query(conn, sql).to_pylist()
    finally:
        conn.close()
    return rows


def log_files(log: EventLog) -> dict[str, bytes]:
    return {
        str(path.relative_to(log.path)): path.read_bytes()
        for path in sorted(log.path.rglob("*"))
        if path.is_file()
    }


def fields(text: str) -> dict[str, str]:
    """The ``key: value`` lines of a summary for people."""
    pairs = (line.split(":", 1) for line in text.splitlines())
    return {key: value.strip() for key, value in pairs}


def test_the_json_summary_has_every_field_and_exit_0_when_all_succeed(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(3)))

    result = dlq_replay(log, "--json", "-j", "2", "--", "true", "{item_id}")

    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_FIELDS
    assert summary["run_id"].startswith("run-")
    assert summary["status"] == "succeeded"
    assert (summary["selected"], summary["succeeded"], summary["failed"]) == (3, 3, 0)
    assert summary["quarantined"] == summary["skipped"] == summary["interrupted"] == 0
    assert summary["recovered"] == 0
    assert summary["canary_failed"] is False
    assert summary["error_types"] == {}
    assert summary["duration_s"] >= 0
    assert summary["throughput"] >= 0
    assert result.stdout.count("\n") == 1
    (finished,) = query(log, "SELECT run_id FROM events WHERE type = 'run_finished'")
    assert finished["run_id"] == summary["run_id"]


def test_some_failed_items_exit_1_with_their_error_types(log: EventLog) -> None:
    enqueue(
        log,
        {"item_id": "good", "payload": {"fail": False}},
        {"item_id": "bad-1", "payload": {"fail": True}},
        {"item_id": "bad-2", "payload": {"fail": True}},
    )

    result = dlq_replay(log, "--json", "--", *worker("judge"))

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert (summary["succeeded"], summary["failed"]) == (1, 2)
    assert summary["error_types"] == {"exit_code": 2}
    rows = query(log, "SELECT item_id, status, last_error FROM items ORDER BY 1")
    told = "RuntimeError: told to fail"
    assert rows == [
        {"item_id": "bad-1", "status": "pending", "last_error": told},
        {"item_id": "bad-2", "status": "pending", "last_error": told},
        {"item_id": "good", "status": "succeeded", "last_error": None},
    ]


def test_the_summary_for_people_names_the_totals_and_the_errors(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "good"}, {"item_id": "bad"})

    result = dlq_replay(
        log, "--", "/bin/sh", "-c", 'test "$DLQ_ITEM_ID" = good || exit 5'
    )

    assert result.exit_code == 1
    summary = fields(result.stdout)
    assert list(summary) == [
        "run",
        "status",
        "selected",
        "succeeded",
        "failed",
        "quarantined",
        "skipped",
        "interrupted",
        "duration",
        "throughput",
        "errors",
    ]
    assert summary["run"].startswith("run-")
    assert summary["status"] == "failed"
    assert (summary["selected"], summary["succeeded"], summary["failed"]) == (
        "2",
        "1",
        "1",
    )
    assert summary["errors"] == "exit_code 1"
    assert summary["duration"].endswith(" s")
    assert summary["throughput"].endswith(" items/s")


def test_a_failing_canary_exits_1_and_says_the_rest_were_not_run(
    log: EventLog,
) -> None:
    enqueue(
        log,
        *({"item_id": f"c{n}", "payload": {"fail": True}} for n in range(2)),
        *({"item_id": f"r{n}", "payload": {"fail": False}} for n in range(3)),
    )

    result = dlq_replay(
        log, "--canary", "2", "--min-success", "0.5", "--", *worker("judge")
    )

    assert result.exit_code == 1
    summary = fields(result.stdout)
    assert summary["status"] == "canary_failed"
    assert summary["selected"] == "2"
    assert summary["canary"] == "too few canary items succeeded; the rest were not run"
    (row,) = query(log, "SELECT count(*) AS n FROM items WHERE status = 'pending'")
    assert row["n"] == 5


def test_an_unknown_placeholder_is_a_usage_error_exit_2(log: EventLog) -> None:
    enqueue(log, {"item_id": "order-1"})
    before = log_files(log)

    result = dlq_replay(log, "--", "echo", "--id={itemid}")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: unknown placeholder {itemid} in '--id={itemid}'; use {item_id}, "
        "{job_id}, {attempt}, {payload} or {payload.KEY}\n"
    )
    assert log_files(log) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-j", "0"], "--parallel must be at least 1"),
        (["--backoff", "linear"], "--backoff must be none, fixed or exponential"),
        (["--timeout", "-1"], "--timeout must be more than 0 seconds"),
        (["--min-success", "2"], "--min-success must be a fraction from 0 to 1"),
    ],
)
def test_options_that_cannot_work_exit_2_and_run_nothing(
    log: EventLog, args: list[str], message: str
) -> None:
    enqueue(log, {"item_id": "order-1"})
    before = log_files(log)

    result = dlq_replay(log, *args, "--", "true")

    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert log_files(log) == before


def test_a_where_that_is_not_valid_sql_exits_1_and_records_no_run(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "order-1"})

    result = dlq_replay(log, "--where", "no_such_column = 1", "--", "true")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "no_such_column" in result.stderr
    assert result.stdout == ""
    assert query(log, "SELECT type FROM events") == [{"type": "item_enqueued"}]


def test_a_dry_run_says_what_would_run_and_writes_nothing(log: EventLog) -> None:
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(3)))
    before = log_files(log)

    result = dlq_replay(log, "--dry-run", "--", "true")

    assert result.exit_code == 0
    assert result.stdout == (
        "would run: 3 items\n"
        "first:     order-0, order-1, order-2\n"
        "estimated: unknown\n"
        "dry run: nothing was run or written\n"
    )
    assert log_files(log) == before


@pytest.mark.parametrize(
    ("args", "count", "first"),
    [
        ([], 6, ["a1", "a2", "a3", "b1", "b2", "b3"]),
        (["--item", "b2", "--item", "a1"], 2, ["a1", "b2"]),
        (["--job", "beta"], 3, ["b1", "b2", "b3"]),
        (["--where", "last_error LIKE 'Timeout%'"], 2, ["a1", "b1"]),
        (["--job", "alpha", "--limit", "2"], 2, ["a1", "a2"]),
        (["--limit", "4"], 4, ["a1", "a2", "a3", "b1"]),
    ],
)
def test_the_selection_options_choose_the_items(
    log: EventLog, args: list[str], count: int, first: list[str]
) -> None:
    enqueue(
        log,
        *(
            {"item_id": f"{job[0]}{n}", "job_id": job, "error": error}
            for job in ("alpha", "beta")
            for n, error in enumerate(["Timeout", "KeyError", "ValueError"], 1)
        ),
    )

    result = dlq_replay(log, "--dry-run", "--json", *args)

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "count": count,
        "first_items": first,
        "mean_duration_ms": None,
        "estimated_s": None,
        "dry_run": True,
    }


def test_a_replay_of_a_log_that_does_not_exist_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = CliRunner().invoke(app, ["replay", "--log", str(missing), "--", "true"])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert str(missing) in result.stderr
    assert not missing.exists()


def test_the_options_given_are_the_options_the_run_records(log: EventLog) -> None:
    enqueue(log, {"item_id": "order-1", "job_id": "j"})
    (item,) = query(log, "SELECT last_signature FROM items")
    signature = item["last_signature"]

    result = dlq_replay(
        log,
        *("-j", "3", "--timeout", "9", "--attempts", "2", "--backoff", "fixed"),
        *("--delay", "0.5", "--max-attempts", "4", "--rate", "100"),
        *("--canary", "5", "--min-success", "0.5", "--shell"),
        *("--item", "order-1", "--job", "j", "--where", "attempts = 0"),
        *("--signature", signature, "--limit", "7", "--force", "--json"),
        *("--", "test", "{item_id}", "=", "order-1"),
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["succeeded"] == 1
    (started,) = query(log, "SELECT data FROM events WHERE type = 'run_started'")
    assert json.loads(started["data"]) == {
        "options": {
            "command": ["test", "{item_id}", "=", "order-1"],
            "shell": True,
            "parallel": 3,
            "timeout": 9.0,
            "grace": 5.0,
            "attempts": 2,
            "backoff": "fixed",
            "delay": 0.5,
            "max_attempts": 4,
            "rate": 100.0,
            "canary": 5,
            "min_success": 0.5,
        },
        "selection": {
            "item_ids": ["order-1"],
            "job_id": "j",
            "where": "attempts = 0",
            "signature": signature,
            "limit": 7,
            "force": True,
        },
    }
