"""Benchmarks 1 and 2: durable appends, one event at a time and grouped."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench._report import (
    INFO,
    Figure,
    judge,
    median,
    per_second,
    percent,
    rate,
    ratio,
    say,
)
from bench._workspace import Workspace
from eventlog import Event, EventLog, LogWriter
from eventlog._writer import Stamper

_ROUNDS = 10
_WARM_UP = 20
_TARGET_SHARE = 0.8
_THREADS = 8
_BATCH = 1_000


def new_event(number: int) -> Event:
    """An event as a replay records a failed attempt: the common append."""
    return Event(
        type="attempt_failed",
        item_id=f"itm-{number:09d}",
        job_id="billing-sync",
        run_id="run-20240601-0001",
        attempt=1,
        command="python -m billing.retry",
        exit_code=1,
        duration_ms=1_234,
        error_type="HTTPError",
        error=f"503 Service Unavailable from POST /v1/charges (order {number})",
    )


def stored_lines(count: int) -> list[bytes]:
    """The JSONL lines that ``count`` appended events take in a segment.

    Stamped by the writer's own stamper, so each has the real length.
    """
    stamper = Stamper()
    return [stamper.stamp(new_event(number))[1] for number in range(count)]


def _append_singly(writer: LogWriter, start: int, stop: int) -> float:
    started = time.perf_counter()
    for number in range(start, stop):
        writer.append([new_event(number)])
    return time.perf_counter() - started


def _write_raw(fd: int, lines: list[bytes]) -> float:
    started = time.perf_counter()
    for line in lines:
        os.write(fd, line)
        os.fsync(fd)
    return time.perf_counter() - started


def bench_append(space: Workspace) -> list[Figure]:
    """Durable single-event appends beside raw ``os.write`` + ``os.fsync``.

    Both write the same line bytes to a file in the log's ``segments/``
    directory, in rounds that alternate which goes first, so that the
    machine's slow and fast moments fall on both.
    """
    total = space.size(2_000, least=_ROUNDS * 10)
    per_round = total // _ROUNDS
    total = per_round * _ROUNDS
    log = EventLog.open(space.fresh("append-log"), create=True)
    lines = stored_lines(total)
    raw_path = log.path / "segments" / "raw-fsync.bin"
    append_times: list[float] = []
    raw_times: list[float] = []
    fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with LogWriter(log) as writer:
            # Both files exist and have been synced once before timing starts.
            _append_singly(writer, total, total + _WARM_UP)
            _write_raw(fd, lines[:_WARM_UP])
            for index in range(_ROUNDS):
                start, stop = index * per_round, (index + 1) * per_round
                if index % 2:
                    append_times.append(_append_singly(writer, start, stop))
                    raw_times.append(_write_raw(fd, lines[start:stop]))
                else:
                    raw_times.append(_write_raw(fd, lines[start:stop]))
                    append_times.append(_append_singly(writer, start, stop))
    finally:
        os.close(fd)
    appended = per_second(total, sum(append_times))
    raw = per_second(total, sum(raw_times))
    shares = [r / a for a, r in zip(append_times, raw_times, strict=True)]
    say(
        f"  {total:,} appends each way, {_ROUNDS} alternating rounds, "
        f"{len(lines[0])}-byte lines; per-round share of the raw rate "
        f"{percent(min(shares))} to {percent(max(shares))}"
    )
    share = appended / raw
    return [
        Figure(
            "1 append",
            f"LogWriter.append([event]): {rate(appended, 'appends/s')}",
            f"os.write+os.fsync, same bytes: {rate(raw, 'writes/s')}",
            percent(share),
            f">= {percent(_TARGET_SHARE)} of raw",
            judge(share >= _TARGET_SHARE),
        )
    ]


def _threads_single(writer: LogWriter, threads: int, each: int) -> float:
    """``threads`` threads appending ``each`` single events; return seconds."""
    gate = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        gate.wait()
        try:
            for number in range(offset, offset + each):
                writer.append([new_event(number)])
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(index * each,)) for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    gate.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def _batches(writer: LogWriter, batches: int) -> float:
    started = time.perf_counter()
    for index in range(batches):
        first = index * _BATCH
        writer.append([new_event(first + n) for n in range(_BATCH)])
    return time.perf_counter() - started


def _one_writer(log_dir: Path) -> LogWriter:
    writer = LogWriter(EventLog.open(log_dir, create=True))
    writer.append([new_event(0)])  # creates and syncs the segment
    return writer


def bench_group(space: Workspace) -> list[Figure]:
    """Group commit: many threads, or big batches, beside single appends.

    Three times in turn: one thread appending single events (the reference),
    eight threads sharing one writer appending single events, one thread
    appending batches of 1,000. Each figure is the median of the three.
    """
    singles = space.size(1_000, least=50)
    each = space.size(1_000, least=20)
    batches = space.size(100, least=5)
    single_rates, thread_rates, batch_rates = [], [], []
    for _ in range(3):
        with _one_writer(space.fresh("single-log")) as writer:
            single_rates.append(
                per_second(singles, _threads_single(writer, 1, singles))
            )
        with _one_writer(space.fresh("threads-log")) as writer:
            seconds = _threads_single(writer, _THREADS, each)
            thread_rates.append(per_second(_THREADS * each, seconds))
        with _one_writer(space.fresh("batch-log")) as writer:
            batch_rates.append(per_second(batches * _BATCH, _batches(writer, batches)))
    single, threads, batch = (
        median(single_rates),
        median(thread_rates),
        median(batch_rates),
    )
    say(
        f"  {singles:,} single appends; {_THREADS} threads x {each:,}; "
        f"{batches:,} batches of {_BATCH:,} (seals a full segment on the way "
        "if one fills, as a long-running writer would)"
    )
    reference = f"1 thread, single events: {rate(single, 'events/s')}"
    return [
        Figure(
            "2 group commit",
            f"{_THREADS} threads, single events: {rate(threads, 'events/s')}",
            reference,
            ratio(threads / single),
            "none set (context)",
            INFO,
        ),
        Figure(
            "2 group commit",
            f"1 thread, batches of {_BATCH:,}: {rate(batch, 'events/s')}",
            reference,
            ratio(batch / single),
            "none set (context)",
            INFO,
        ),
    ]
