"""Sealing may be interrupted at any step and every event is still read once.

A seal writes the Parquet file aside in ``staging/``, renames it into
``sealed/``, then removes the JSONL file. Each test builds, with real files,
the state a crash after one of those steps leaves, and reads the log.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from eventlog import Event, EventLog, LogWriter, event_from_row, read_live_segment

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture(scope="module")
def abandoned_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log holding one live segment whose writer exited without closing it."""
    path = tmp_path_factory.mktemp("template") / "log"
    EventLog.open(path, create=True)
    helper = [sys.executable, str(HELPERS / "eventlog_writer.py"), str(path)]
    subprocess.run(
        [*helper, "20", "--max-batch", "3", "--abandon"],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def log(abandoned_template: Path, tmp_path: Path) -> EventLog:
    shutil.copytree(abandoned_template, tmp_path / "log")
    return EventLog.open(tmp_path / "log")


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def only_segment_name(log: EventLog) -> str:
    [segment] = log.segments()
    return segment.name


def staging(log: EventLog) -> list[Path]:
    return sorted((log.path / "staging").iterdir())


def test_abandoned_segment_is_live_and_read_from_jsonl(log: EventLog) -> None:
    [segment] = log.segments()

    assert not segment.sealed
    events = stored_events(log)
    assert [e.item_id for e in events] == [f"item-{i}" for i in range(20)]


def test_crash_while_writing_aside_leaves_a_temp_file_readers_ignore(
    log: EventLog,
) -> None:
    expected = stored_events(log)
    name = only_segment_name(log)
    live = log.segment_path(name, sealed=False)
    leftover = log.staging_path(f".{name}.parquet.4242")
    pq.write_table(read_live_segment(live).slice(0, 7), leftover)

    assert [s.sealed for s in log.segments()] == [False]
    assert stored_events(log) == expected

    assert log.seal_abandoned() == 1

    assert staging(log) == []
    assert [s.sealed for s in log.segments()] == [True]
    assert stored_events(log) == expected


def test_crash_after_publishing_before_removing_jsonl_reads_each_event_once(
    log: EventLog,
) -> None:
    expected = stored_events(log)
    name = only_segment_name(log)
    live = log.segment_path(name, sealed=False)
    content = live.read_bytes()
    assert log.seal(name)
    live.write_bytes(content)  # as if the crash came before the removal

    [segment] = log.segments()
    assert segment.sealed
    assert stored_events(log) == expected

    assert log.seal_abandoned() == 0

    assert not live.exists()
    assert log.segment_path(name, sealed=True).exists()
    assert stored_events(log) == expected


def test_completed_seal_leaves_only_the_parquet_file(log: EventLog) -> None:
    expected = stored_events(log)
    name = only_segment_name(log)

    assert log.seal(name)

    assert not log.segment_path(name, sealed=False).exists()
    assert [s.sealed for s in log.segments()] == [True]
    assert stored_events(log) == expected
    assert log.seal_abandoned() == 0
    assert log.seal(name) is False
    assert stored_events(log) == expected


def test_seal_abandoned_leaves_a_running_writers_segment_live(log: EventLog) -> None:
    abandoned = only_segment_name(log)

    with LogWriter(log) as writer:
        writer.append([Event(type="run_started", run_id="r1")])

        assert log.seal_abandoned() == 1

        live = [s for s in log.segments() if not s.sealed]
        assert [s.name.split("-")[0] for s in live] == [writer.writer_id]
        writer.append([Event(type="run_finished", run_id="r1")])

    segments = log.segments()
    assert all(s.sealed for s in segments)
    assert abandoned in {s.name for s in segments}
    events = stored_events(log)
    assert len(events) == 22
    assert [e.type for e in events if e.writer == writer.writer_id] == [
        "run_started",
        "run_finished",
    ]


def test_seal_abandoned_removes_an_unlocked_hidden_segment_a_crash_left(
    log: EventLog,
) -> None:
    # A writer creates its segment under a hidden name, locks it, then renames
    # it; a crash between the steps leaves an empty hidden file behind.
    leftover = log.path / "segments" / ".0123456789ab-000001.jsonl"
    leftover.write_bytes(b"")
    before = stored_events(log)

    log.seal_abandoned()

    assert not leftover.exists()
    assert stored_events(log) == before


def test_seal_abandoned_keeps_a_hidden_segment_its_writer_still_holds(
    log: EventLog,
) -> None:
    hidden = log.path / "segments" / ".0123456789ab-000001.jsonl"
    with hidden.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)

        log.seal_abandoned()

        assert hidden.exists()
