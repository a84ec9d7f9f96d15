"""`dlq compact`: live segments left by writers that died are sealed, and
small sealed files are merged, with every event read once at every instant."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import Event, EventLog, LogWriter, verify_log

runner = CliRunner()

# A writer that appends, says so, and waits to be killed.
WRITER = """
import sys, time
from eventlog import Event, EventLog, LogWriter, verify_log
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
    assert result.stderr == "sealed 1 segments, merged 0 files into 0\n"
    assert list((log / "segments").iterdir()) == []
    assert [p.suffix for p in (log / "sealed").iterdir()] == [".parquet"]
    assert list((log / "staging").iterdir()) == []
    assert event_ids(log) == before


def test_compact_again_has_nothing_to_do(killed_writer: Path) -> None:
    assert dlq("compact", "--log", killed_writer).exit_code == 0
    sealed = sorted((killed_writer / "sealed").iterdir())

    result = dlq("compact", "--log", killed_writer)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "sealed 0 segments, merged 0 files into 0\n"
    assert sorted((killed_writer / "sealed").iterdir()) == sealed


def test_compact_leaves_a_running_writer_alone(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    with LogWriter(log) as writer:
        writer.append([Event(type="item_enqueued", item_id="busy")])
        live = sorted((log.path / "segments").iterdir())

        result = dlq("compact", "--log", log.path)

        assert result.exit_code == 0, result.stderr
        assert result.stderr == "sealed 0 segments, merged 0 files into 0\n"
        assert sorted((log.path / "segments").iterdir()) == live
        assert len(live) == 1


def test_compact_without_a_log(tmp_path: Path) -> None:
    result = dlq("compact", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")
    assert list(tmp_path.iterdir()) == []


def small_log(tmp_path: Path) -> Path:
    """A log of four added items, an import, then two more added items."""
    log = tmp_path / "log"
    for item in ("a", "b", "c", "d"):
        assert dlq("add", item, "--log", log).exit_code == 0
    source = tmp_path / "items.jsonl"
    source.write_text("".join(f'{{"item_id": "i{n}"}}\n' for n in range(5)))
    assert dlq("import", source, "--log", log).exit_code == 0
    for item in ("e", "f"):
        assert dlq("add", item, "--log", log).exit_code == 0
    return log


def read_in_order(log: Path) -> list[str]:
    """Every event id in the order readers list and read the segments."""
    return [
        event_id
        for table in EventLog.open(log).iter_tables(["event_id"])
        for event_id in table.column("event_id").to_pylist()
    ]


def test_compact_merges_small_files_keeping_the_events_in_order(
    tmp_path: Path,
) -> None:
    log = small_log(tmp_path)
    before = read_in_order(log)
    assert len(list((log / "sealed").iterdir())) == 7

    result = dlq("compact", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "sealed 0 segments, merged 7 files into 1\n"
    assert list((log / "sealed").iterdir()) == []
    assert len(list((log / "merged").iterdir())) == 1
    assert list((log / "staging").iterdir()) == []
    assert read_in_order(log) == before
    assert event_ids(log) == sorted(before)
    verified = dlq("verify", "--log", log)
    assert verified.exit_code == 0, verified.stdout
    assert verified.stderr == "verified 11 events of 7 writers in 1 files: intact\n"


def test_compact_keeps_a_running_writer_in_its_place(tmp_path: Path) -> None:
    log = small_log(tmp_path)
    with LogWriter(EventLog.open(log)) as writer:
        writer.append([Event(type="run_started", run_id="r1")])
        before = read_in_order(log)

        result = dlq("compact", "--log", log)

        assert result.exit_code == 0, result.stderr
        assert result.stderr.startswith("sealed 0 segments, merged ")
        assert read_in_order(log) == before
        assert [p.stem for p in (log / "segments").iterdir()] == [
            f"{writer.writer_id}-000001"
        ]
        writer.append([Event(type="run_finished", run_id="r1")])
    assert verify_log(EventLog.open(log)).clean


COMPACT = """
import sys
from eventlog import EventLog, compact_log
done = compact_log(EventLog.open(sys.argv[1]))
print(done.sealed, done.merged, done.into)
"""


@pytest.mark.parametrize("step", ["written", "published", "removing"])
def test_a_compaction_killed_at_any_step_leaves_every_event_once(
    tmp_path: Path, step: str
) -> None:
    log = small_log(tmp_path)
    before = read_in_order(log)
    environment = {**os.environ, "DLQ_TEST_CRASH_AT": step}

    killed = subprocess.run(
        [sys.executable, "-c", COMPACT, str(log)], env=environment, check=False
    )

    assert killed.returncode == -signal.SIGKILL
    assert read_in_order(log) == before
    assert collections.Counter(event_ids(log)) == collections.Counter(before)
    assert verify_log(EventLog.open(log)).clean
    staged = list((log / "staging").iterdir())
    assert (staged != []) == (step == "written")

    result = dlq("compact", "--log", log)

    assert result.exit_code == 0, result.stderr
    merged = "7 files into 1" if step == "written" else "0 files into 0"
    assert result.stderr == f"sealed 0 segments, merged {merged}\n"
    assert list((log / "sealed").iterdir()) == []
    assert list((log / "staging").iterdir()) == []
    assert read_in_order(log) == before
    report = verify_log(EventLog.open(log))
    assert report.clean, [str(p) for p in report.problems]
