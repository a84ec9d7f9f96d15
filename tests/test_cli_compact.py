"""`dlq compact`: live segments left by writers that died are sealed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import Event, EventLog, LogWriter

runner = CliRunner()

# A writer that appends, says so, and waits to be killed.
WRITER = """
import sys, time
from eventlog import Event, EventLog, LogWriter
writer = LogWriter(EventLog.open(sys.argv[1]))
writer.append([Event(type="item_enqueued", item_id=f"w-{i}") for i in range(3)])
writer.append([Event(type="item_discarded", item_id="w-0", reason="test")])
print("ready", flush=True)
time.sleep(600)
"""


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def event_ids(log: Path) -> list[str]:
    """The events' ids as `dlq query` reads them."""
    result = dlq(
        "query", "SELECT event_id FROM events", "--format", "json", "--log", log
    )
    assert result.exit_code == 0, result.stderr
    return [row["event_id"] for row in json.loads(result.stdout)]


@pytest.fixture
def killed_writer(tmp_path: Path) -> Path:
    """A log whose only writer was SIGKILLed after appending four events."""
    log = EventLog.open(tmp_path / "log", create=True)
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log.path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.kill()
        assert process.wait() == -9
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    return log.path


def test_compact_seals_the_segment_of_a_killed_writer(killed_writer: Path) -> None:
    log = killed_writer
    assert [p.suffix for p in (log / "segments").iterdir()] == [".jsonl"]
    before = event_ids(log)
    assert len(before) == 4

    result = dlq("compact", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "sealed 1 segments\n"
    assert list((log / "segments").iterdir()) == []
    assert [p.suffix for p in (log / "sealed").iterdir()] == [".parquet"]
    assert list((log / "staging").iterdir()) == []
    assert event_ids(log) == before


def test_compact_again_has_nothing_to_do(killed_writer: Path) -> None:
    assert dlq("compact", "--log", killed_writer).exit_code == 0
    sealed = sorted((killed_writer / "sealed").iterdir())

    result = dlq("compact", "--log", killed_writer)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "sealed 0 segments\n"
    assert sorted((killed_writer / "sealed").iterdir()) == sealed


def test_compact_leaves_a_running_writer_alone(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    with LogWriter(log) as writer:
        writer.append([Event(type="item_enqueued", item_id="busy")])
        live = sorted((log.path / "segments").iterdir())

        result = dlq("compact", "--log", log.path)

        assert result.exit_code == 0, result.stderr
        assert result.stderr == "sealed 0 segments\n"
        assert sorted((log.path / "segments").iterdir()) == live
        assert len(live) == 1


def test_compact_without_a_log(tmp_path: Path) -> None:
    result = dlq("compact", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")
    assert list(tmp_path.iterdir()) == []
