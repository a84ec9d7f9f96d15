"""Many writers at once: every event lands exactly once, in each writer's order.

Processes each own a writer; threads share one. Readers and sealers run
alongside and must never see an event twice or miss one that was there.
"""

from __future__ import annotations

import collections
import contextlib
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import (
    FIELD_NAMES,
    GENESIS_HASH,
    Event,
    EventLog,
    LogWriter,
    canonical_bytes,
    chain_hash,
    event_from_row,
    read_live_segment,
)

HELPERS = Path(__file__).parent / "helpers"

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog.open(tmp_path / "log", create=True)


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start helper processes; any still running when the test ends is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(script: str, *args: str, **options: Any) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(HELPERS / script), *args]
        process = subprocess.Popen(command, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        process.wait()


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def assert_chains_hold(events: Iterable[Event]) -> None:
    by_writer: dict[str, list[Event]] = collections.defaultdict(list)
    for event in events:
        by_writer[event.writer].append(event)
    for writer, chain in by_writer.items():
        chain.sort(key=lambda e: e.seq)
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1)), writer
        previous = GENESIS_HASH
        for event in chain:
            values = tuple(getattr(event, f) for f in FIELD_NAMES if f != "hash")
            assert event.hash == chain_hash(previous, canonical_bytes(values))
            previous = event.hash


def start_writers(
    spawn: Spawn, log: EventLog, count: int, events: int, *options: str
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` writer processes and let them all go at once."""
    writers = [
        spawn(
            "eventlog_writer.py",
            str(log.path),
            str(events),
            "--prefix",
            f"w{n}",
            "--wait-for-go",
            *options,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for n in range(count)
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    return writers


def finish(writers: list[subprocess.Popen[bytes]]) -> list[list[str]]:
    """Wait for the writers; return each one's acknowledged event ids."""
    acknowledged = []
    for writer in writers:
        assert writer.stdout is not None
        with writer.stdout:
            acknowledged.append(writer.stdout.read().decode().split())
        assert writer.wait() == 0
    return acknowledged


def assert_listing_holds_each_writers_segments(log: EventLog) -> None:
    """A writer's segments are numbered from 1; a listing shows 1..n."""
    numbers: dict[str, list[int]] = collections.defaultdict(list)
    for segment in log.segments():
        writer_id, number = segment.name.rsplit("-", 1)
        numbers[writer_id].append(int(number))
    for writer_id, listed in numbers.items():
        assert listed == list(range(1, len(listed) + 1)), writer_id


def assert_reading_sees_a_prefix_of_each_writer(log: EventLog) -> None:
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for table in log.iter_tables(["writer", "seq"]):
        columns = table.column("writer").to_pylist(), table.column("seq").to_pylist()
        for writer_id, seq in zip(*columns, strict=True):
            seen[writer_id].append(seq)
    for writer_id, seqs in seen.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), writer_id


def test_processes_appending_at_once_each_land_every_event_once_in_order(
    log: EventLog, spawn: Spawn
) -> None:
    writers = start_writers(spawn, log, 4, 2_000)
    acknowledged = finish(writers)

    events = stored_events(log)
    assert len(events) == 8_000
    assert collections.Counter(e.event_id for e in events) == collections.Counter(
        event_id for ids in acknowledged for event_id in ids
    )
    by_writer: dict[str, list[Event]] = collections.defaultdict(list)
    for event in events:
        by_writer[event.writer].append(event)
    assert len(by_writer) == 4
    for chain in by_writer.values():
        chain.sort(key=lambda e: e.seq)
        prefix = (chain[0].item_id or "").split("-")[0]
        assert [e.item_id for e in chain] == [f"{prefix}-{i}" for i in range(2_000)]
    assert_chains_hold(events)
    assert all(segment.sealed for segment in log.segments())


def test_readers_and_sealers_see_each_writers_events_once_while_segments_roll(
    log: EventLog, spawn: Spawn
) -> None:
    # Every append fills a segment, so segments are created and sealed all
    # the time, by their writers and by two sealer processes racing them.
    sealers = [
        spawn(
            "eventlog_sealer.py",
            str(log.path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    writers = start_writers(spawn, log, 3, 120, "--segment-max-bytes", "1")

    reads = 0
    while any(writer.poll() is None for writer in writers) or reads < 3:
        assert_listing_holds_each_writers_segments(log)
        if reads % 20 == 0:
            assert_reading_sees_a_prefix_of_each_writer(log)
        reads += 1
    acknowledged = finish(writers)
    for sealer in sealers:
        sealer.communicate(b"")
        assert sealer.returncode == 0

    log.seal_abandoned()
    events = stored_events(log)
    assert sorted(e.event_id for e in events) == sorted(
        event_id for ids in acknowledged for event_id in ids
    )
    assert_chains_hold(events)
    assert all(len(log.read_segment(s)) == 1 for s in log.segments())


def test_threads_sharing_a_writer_get_every_append_acknowledged_in_file_order(
    log: EventLog,
) -> None:
    threads_count, appends = 8, 150
    acknowledged: list[list[list[Event]]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    with LogWriter(log) as writer:

        def work(n: int) -> None:
            rng = random.Random(n)
            try:
                for i in range(appends):
                    batch = [
                        Event(type="attempt_started", item_id=f"t{n}-{i}-{j}")
                        for j in range(rng.randint(1, 3))
                    ]
                    acknowledged[n].append(writer.append(batch))
            except BaseException as exc:
                errors.append(exc)
                raise

        threads = [
            threading.Thread(target=work, args=(n,)) for n in range(threads_count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        [segment] = log.segments()
        in_file_order = [
            event_from_row(row) for row in read_live_segment(segment.path).to_pylist()
        ]

    assert errors == []
    batches = [batch for per_thread in acknowledged for batch in per_thread]
    all_acknowledged = sorted(
        (event for batch in batches for event in batch), key=lambda e: e.seq
    )
    assert [e.seq for e in in_file_order] == list(range(1, len(all_acknowledged) + 1))
    assert in_file_order == all_acknowledged
    for batch in batches:
        assert [e.seq for e in batch] == list(
            range(batch[0].seq, batch[0].seq + len(batch))
        )
    for per_thread in acknowledged:
        seqs = [event.seq for batch in per_thread for event in batch]
        assert seqs == sorted(seqs)
    assert stored_events(log) == in_file_order
    assert_chains_hold(in_file_order)
