"""A write the disk refuses fails the writer and keeps nothing of that append.

The disk is really full: a small tmpfs is mounted for the test (which needs
root; the test is skipped with the reason otherwise). A second test provokes
the same failure path without root, through a file-size limit (EFBIG).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventlog import (
    Event,
    EventLog,
    LogWriter,
    WriterFailedError,
    event_from_row,
    read_live_segment,
)

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted when the test ends."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here to make a small file system to fill")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a small tmpfs to fill (needs root): " + mounted.stderr.strip()
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def live_events(path: Path) -> list[Event]:
    return [event_from_row(row) for row in read_live_segment(path).to_pylist()]


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def test_full_disk_fails_the_writer_and_the_segment_ends_at_the_last_ack(
    small_disk: Path,
) -> None:
    log = EventLog.open(small_disk / "log", create=True)
    # Room to make once the disk is full, to show the log is still usable.
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 64 * 1024)
    writer = LogWriter(log)
    acknowledged: list[Event] = []

    # Batches of several 3 KB events, so the failing write is cut short
    # part of the way through a batch.
    with pytest.raises(WriterFailedError) as caught:  # noqa: PT012
        for size in itertools.cycle([1, 3, 7]):
            batch = [
                Event(type="attempt_failed", item_id=f"item-{len(acknowledged) + i}")
                for i in range(size)
            ]
            for event in batch:
                event.output = "x" * 3000
            acknowledged += writer.append(batch)
            assert len(acknowledged) < 1000, "the disk never filled up"

    assert acknowledged
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"could not write to the log at {log.path}: ")
    [segment] = log.segments()
    assert not segment.sealed
    stored = segment.path.read_bytes()
    assert stored.endswith(b"\n")
    assert stored.count(b"\n") == len(acknowledged)
    assert live_events(segment.path) == acknowledged

    with pytest.raises(WriterFailedError):
        writer.append([Event(type="run_started")])
    writer.close()
    assert [s.sealed for s in log.segments()] == [False]
    assert stored_events(log) == acknowledged

    filler.unlink()
    with LogWriter(log) as later:
        [after] = later.append([Event(type="run_started")])
    assert log.seal_abandoned() == 1
    assert all(s.sealed for s in log.segments())
    events = stored_events(log)
    assert sorted(e.event_id for e in events) == sorted(
        e.event_id for e in [*acknowledged, after]
    )


def test_file_size_limit_fails_the_writer_without_a_torn_line(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    limit = 50_000

    helper = [sys.executable, str(HELPERS / "eventlog_writer.py"), str(log.path)]
    options = ["--max-batch", "6", "--output-bytes", "700"]
    result = subprocess.run(
        [*helper, "10000", *options, "--file-size-limit", str(limit)],
        capture_output=True,
        check=True,
    )

    *acknowledged, failure = result.stdout.decode().split("\n")[:-1]
    assert failure == f"failed {errno.EFBIG}"
    [segment] = log.segments()
    assert not segment.sealed
    stored = segment.path.read_bytes()
    assert len(stored) <= limit
    assert stored.endswith(b"\n")
    assert [e.event_id for e in live_events(segment.path)] == acknowledged
    assert os.listdir(log.path / "staging") == []
