"""`-v` and DLQ_LOG_LEVEL: what dlq logs on stderr, and only when asked."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import EventLog, import_records

runner = CliRunner()


def dlq(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(
        app,
        [str(arg) for arg in args],
        env={"DLQ_LOG_LEVEL": None, **(env or {})},
        catch_exceptions=False,
    )


def replay_twice_and_quarantine(log: EventLog, *options: str, **env: str) -> Result:
    """Replay one item that always fails: a retry, then its quarantine."""
    lines = json.dumps({"item_id": "order-1"}) + "\n"
    import_records(log, io.BytesIO(lines.encode()), source="test")
    return dlq(
        *options,
        "replay", "--json", "-j", "1", "--attempts", "2", "--delay", "0",
        "--max-attempts", "2", "--log", log.path, "--", "sh", "-c", "exit 3",
        env=dict(env),
    )  # fmt: skip


def what_a_replay_logs(result: Result) -> list[str]:
    """The log lines `replay_twice_and_quarantine` owes at DEBUG, in order."""
    run_id = json.loads(result.stdout)["run_id"]
    return [
        f"DEBUG reprocessor: run {run_id} selects pending items",
        "DEBUG analytics: selecting in 1 slices of the log",
        "DEBUG reprocessor: spawning order-1 attempt 1: sh -c 'exit 3'",
        "DEBUG reprocessor: retrying order-1 in 0.0 s (try 2 of 2): attempt 1 "
        "failed with exit code 3",
        "DEBUG reprocessor: spawning order-1 attempt 2: sh -c 'exit 3'",
        "DEBUG reprocessor: quarantining order-1: 2 attempts used of --max-attempts 2",
    ]


def in_order(expected: list[str], lines: list[str]) -> bool:
    """Whether ``expected`` are among ``lines``, in this order."""
    found = iter(lines)
    return all(line in found for line in expected)


@pytest.mark.parametrize(
    ("options", "env"),
    [(["-v"], {}), (["--verbose"], {}), ([], {"DLQ_LOG_LEVEL": "DEBUG"})],
    ids=["-v", "--verbose", "DLQ_LOG_LEVEL"],
)
def test_verbose_replay_logs_its_selection_spawns_retries_and_quarantines(
    log: EventLog, options: list[str], env: dict[str, str]
) -> None:
    result = replay_twice_and_quarantine(log, *options, **env)

    assert result.exit_code == 1, result.stderr
    lines = result.stderr.splitlines()
    assert in_order(what_a_replay_logs(result), lines), lines
    writer = next(
        line for line in lines if line.startswith("DEBUG eventlog: opened segment ")
    ).rpartition(" ")[2]
    assert lines[-1] == f"DEBUG eventlog: sealed segment {writer} (7 events)"
    run_id = json.loads(result.stdout)["run_id"]
    # The run's line comes as it ends, before its writer seals its segment.
    assert lines[-2].startswith(
        f"INFO reprocessor: run {run_id} failed: 1 selected, 0 succeeded, 0 failed, "
        "1 quarantined, 0 skipped, 0 interrupted in "
    )


def test_without_verbose_nothing_but_warnings_reach_stderr(log: EventLog) -> None:
    result = replay_twice_and_quarantine(log)

    assert result.exit_code == 1, result.stderr
    assert result.stderr == ""


def test_without_verbose_a_skipped_item_is_a_warning(log: EventLog) -> None:
    import_records(log, io.BytesIO(b'{"item_id": "no-command"}\n'), source="test")

    result = dlq("replay", "--json", "--log", log.path)

    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines() == [
        "WARNING reprocessor: skipped no-command: it has no recorded command"
    ]


def test_info_level_logs_one_line_per_run_and_no_detail(log: EventLog) -> None:
    result = replay_twice_and_quarantine(log, DLQ_LOG_LEVEL="info")

    assert result.exit_code == 1, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["INFO"]


def test_verbose_import_logs_the_published_file(tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"item_id": "a"}\n{"item_id": "b"}\n')
    log = tmp_path / "log"

    result = dlq("-v", "import", source, "--log", log)

    assert result.exit_code == 0, result.stderr
    (published,) = list((log / "sealed").iterdir())
    assert result.stderr.splitlines() == [
        f"DEBUG eventlog: published import {published.stem} from {source}: 2 events",
        "imported 2 items",
    ]


def test_logging_is_as_it_was_after_a_verbose_command(log: EventLog) -> None:
    assert dlq("-v", "list", "--log", log.path).exit_code == 0

    for name in ("eventlog", "analytics", "reprocessor", "dlq"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


@pytest.mark.parametrize("level", ["LOUD", "10", "notset"])
def test_a_bad_log_level_is_bad_usage(log: EventLog, level: str) -> None:
    result = dlq("list", "--log", log.path, env={"DLQ_LOG_LEVEL": level})

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: DLQ_LOG_LEVEL {level!r} is not a log level; use one of DEBUG, "
        "INFO, WARNING, ERROR, CRITICAL\n"
    )
