"""A log on a disk that fills up, through the CLI: fail cleanly, then go on.

The log lives on a 4 MiB tmpfs mounted for the test (skipped, saying why,
where mounting is not allowed), filled with a file but for a little room.
``dlq import``, ``dlq add`` and ``dlq replay`` (whose attempts record many
kilobytes of output each) are run as real processes until the disk refuses
them. Each must fail with one line of error and no traceback, and leave the
log readable and verifying clean, with every event it held before. Once the
filler file is removed, the same commands run again and finish the work.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import analytics
from eventlog import EventLog, verify_log

WORKER = Path(__file__).parents[1] / "workers" / "loud.py"
DLQ = (sys.executable, "-m", "dlq")
ITEMS = 24
IMPORTED = 1500
# Room left on the disk once it is filled: enough for the first events of a
# replay, not for all of them, nor for the import.
ROOM = 200 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at a directory of its own, unmounted when the test ends."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no `mount` command here to make a small file system to fill")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a 4 MiB tmpfs to fill (needs root or CAP_SYS_ADMIN): "
            + mounted.stderr.strip()
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def dlq(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DLQ, *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        check=False,
    )


def fill(disk: Path, room: int) -> Path:
    """Fill ``disk`` with one file, then give back ``room`` bytes of it."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb") as fh, pytest.raises(OSError, match="No space") as full:  # noqa: PT012
        while True:
            fh.write(chunk)
            fh.flush()
    assert full.value.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - room, 0))
    return filler


def events_of(log: Path) -> list[dict[str, Any]]:
    """The log's events, after checking that it verifies clean."""
    opened = EventLog.open(log)
    report = verify_log(opened)
    assert report.clean, "\n".join(str(problem) for problem in report.problems)
    columns = ["event_id", "type", "item_id"]
    return [row for t in opened.iter_tables(columns) for row in t.to_pylist()]


def statuses(log: Path) -> collections.Counter[str]:
    with analytics.connect(log) as conn:
        return collections.Counter(
            analytics.list_items(conn).column("status").to_pylist()
        )


def assert_failed_cleanly(result: subprocess.CompletedProcess[str]) -> None:
    """A non-zero exit with one line of error that says the disk is full."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: "), line
    assert "No space left on device" in line, line
    assert "free some space and run the command again" in line, line


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_a_full_disk_fails_each_command_cleanly_and_the_rerun_completes(
    small_disk: Path, tmp_path: Path, figures: Any
) -> None:
    log = small_disk / "log"
    queue = write_jsonl(
        tmp_path / "queue.jsonl",
        [{"item_id": f"it-{n:03d}", "payload": {"n": n}} for n in range(ITEMS)],
    )
    # Random hex in each payload, so that the Parquet file does not compress
    # into the room left.
    more = write_jsonl(
        tmp_path / "more.jsonl",
        [
            {"item_id": f"more-{n:04d}", "payload": {"blob": os.urandom(300).hex()}}
            for n in range(IMPORTED)
        ],
    )
    assert dlq("import", queue, "--log", log).returncode == 0
    filler = fill(small_disk, ROOM)
    replay = ["replay", "--log", log, "-j", "4", "--", sys.executable, "-I", "-S"]
    replay += [WORKER, "16"]

    # Full: each command fails, keeping what the log held.
    before = events_of(log)
    imported = dlq("import", more, "--log", log)
    assert_failed_cleanly(imported)
    after_import = events_of(log)
    assert after_import == before

    replayed = dlq(*replay)
    assert_failed_cleanly(replayed)
    after_replay = events_of(log)
    assert {e["event_id"] for e in before} <= {e["event_id"] for e in after_replay}
    # The replay got some way before the disk refused it.
    assert statuses(log)["succeeded"] > 0

    added = dlq("add", "late", "--error", "x" * 100_000, "--log", log)
    assert_failed_cleanly(added)
    after_add = events_of(log)
    assert after_add == after_replay

    # Room again: the same commands finish the work.
    filler.unlink()
    assert dlq(*replay).returncode == 0
    result = dlq("import", more, "--log", log)
    assert (result.returncode, result.stderr) == (0, f"imported {IMPORTED} items\n")
    assert dlq("add", "late", "--error", "x" * 100_000, "--log", log).returncode == 0

    events = events_of(log)
    counts = collections.Counter(e["event_id"] for e in events)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    enqueued = collections.Counter(
        e["item_id"] for e in events if e["type"] == "item_enqueued"
    )
    assert set(enqueued.values()) == {1}
    assert len(enqueued) == ITEMS + IMPORTED + 1
    assert statuses(log) == {"succeeded": ITEMS, "pending": IMPORTED + 1}

    kept = {e["event_id"] for e in events}
    lost = sum(e["event_id"] not in kept for e in after_add)
    figures.add(
        "disk full (4 MiB tmpfs, CLI)",
        trials=1,
        faults=sum(r.returncode != 0 for r in (imported, replayed, added)),
        events_checked=len(events),
        events_lost=lost,
    )
    assert lost == 0
