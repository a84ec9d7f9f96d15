"""How hard a replay tries: timeouts, retries with backoff, the lifetime cap
that quarantines an item, and the start rate.

Timing logic runs on trio's autojump clock; the subprocesses it waits for
still take real time, which that clock does not follow, so the tests through
the engine only check that the waits it must make were made.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from replaying import enqueue, history, query, run, worker

from eventlog import EventLog
from reprocessor import (
    ReplayOptions,
    ReplayUsageError,
    Selection,
    replay,
)
from reprocessor._engine import _RateLimiter


def is_running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# -- timeouts ----------------------------------------------------------------


async def test_a_hanging_command_is_killed_with_its_children_and_times_out(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "stuck"})
    pids = tmp_path / "pids"

    summary = await run(log, worker("hang", pids), timeout=1.5)

    assert summary.failed == 1
    assert summary.error_types == {"timeout": 1}
    item, events = history(log, "stuck")
    assert item["status"] == "pending"
    timed_out = events[-1]
    assert timed_out["type"] == "attempt_failed"
    assert timed_out["error_type"] == "timeout"
    assert timed_out["error"] == "timed out after 1.5 s"
    assert timed_out["duration_ms"] >= 1500
    worker_pid, child_pid = map(int, pids.read_text().split())
    assert not is_running(worker_pid)
    assert not is_running(child_pid)


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "deaf"})
    state = tmp_path / "state"

    summary = await run(log, worker("stubborn", state), timeout=1.5, grace=0.3)

    assert summary.error_types == {"timeout": 1}
    pid, *received = state.read_text().splitlines()
    # It was asked to stop, carried on, and was then killed.
    assert received == ["SIGTERM"]
    assert not is_running(int(pid))
    _, events = history(log, "deaf")
    assert events[-1]["error_type"] == "timeout"
    assert events[-1]["duration_ms"] >= 1800


async def test_a_command_that_ends_within_the_timeout_is_unaffected(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "quick"})

    summary = await run(log, ("true",), timeout=60)

    assert summary.succeeded == 1


async def test_a_child_the_command_leaves_behind_is_killed_when_it_ends(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "daemon"})
    pid_file = tmp_path / "pid"

    summary = await run(log, ("/bin/sh", "-c", f"sleep 600 & echo $! > {pid_file}"))

    assert summary.succeeded == 1
    assert not is_running(int(pid_file.read_text()))


# -- retries and the lifetime cap ----------------------------------------------


async def test_an_item_failing_once_succeeds_on_its_second_try(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, *({"item_id": f"flaky-{n}"} for n in range(3)))

    summary = await run(log, worker("fail_once", tmp_path), attempts=3, backoff="none")

    assert (summary.selected, summary.succeeded, summary.failed) == (3, 3, 0)
    assert summary.error_types == {"network": 3}  # ConnectionError
    assert summary.exit_code == 0
    item, events = history(log, "flaky-1")
    assert item["status"] == "succeeded"
    assert item["attempts"] == 2
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("item_enqueued", None),
        ("attempt_started", 1),
        ("attempt_failed", 1),
        ("attempt_started", 2),
        ("attempt_succeeded", 2),
    ]
    assert events[2]["error"] == "ConnectionError: first try of flaky-1 fails"


async def test_with_one_try_per_run_a_failing_once_item_needs_a_second_run(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "flaky"})

    first = await run(log, worker("fail_once", tmp_path))
    second = await run(log, worker("fail_once", tmp_path))

    assert (first.failed, first.exit_code) == (1, 1)
    assert (second.succeeded, second.exit_code) == (1, 0)


async def test_an_item_reaching_max_attempts_is_quarantined(log: EventLog) -> None:
    enqueue(log, {"item_id": "poison"}, {"item_id": "other"})

    summary = await run(
        log,
        worker("fail"),
        Selection(item_ids=("poison",)),
        attempts=5,
        max_attempts=3,
        backoff="none",
    )

    assert (summary.failed, summary.quarantined) == (0, 1)
    assert summary.exit_code == 1
    item, events = history(log, "poison")
    assert item["status"] == "quarantined"
    assert item["attempts"] == 3
    assert [e["type"] for e in events][-3:] == [
        "attempt_started",
        "attempt_failed",
        "item_quarantined",
    ]
    quarantined = events[-1]
    assert quarantined["run_id"] == summary.run_id
    assert quarantined["reason"] == (
        "reached 3 attempts (--max-attempts); requeue it after fixing the cause"
    )


async def test_the_attempt_cap_counts_the_attempts_of_earlier_runs(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "poison"})

    first = await run(log, worker("fail"), max_attempts=2)
    second = await run(log, worker("fail"), max_attempts=2)

    assert (first.failed, first.quarantined) == (1, 0)
    assert (second.failed, second.quarantined) == (0, 1)
    item, _ = history(log, "poison")
    assert (item["status"], item["attempts"]) == ("quarantined", 2)


async def test_quarantined_items_are_replayed_only_when_forced(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "poison"})
    await run(log, worker("fail"), max_attempts=1)
    calls = tmp_path / "calls"

    unforced = await run(log, worker("record", calls), max_attempts=1)
    forced = await run(log, worker("record", calls), Selection(force=True))

    assert (unforced.selected, unforced.quarantined) == (0, 0)
    assert (forced.selected, forced.succeeded) == (1, 1)
    assert len(calls.read_text().splitlines()) == 1
    item, _ = history(log, "poison")
    assert (item["status"], item["attempts"]) == ("succeeded", 2)


async def test_a_forced_item_with_its_budget_spent_gets_this_runs_tries(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "poison"})
    await run(log, worker("fail"), max_attempts=1)

    forced = await run(
        log,
        worker("fail"),
        Selection(force=True),
        attempts=2,
        max_attempts=1,
        backoff="none",
    )

    assert (forced.selected, forced.quarantined, forced.failed) == (1, 1, 0)
    item, events = history(log, "poison")
    assert (item["status"], item["attempts"]) == ("quarantined", 3)
    assert [e["type"] for e in events if e["run_id"] == forced.run_id] == [
        "attempt_started",
        "attempt_failed",
        "attempt_started",
        "attempt_failed",
        "item_quarantined",
    ]


# -- backoff -------------------------------------------------------------------


def test_without_backoff_or_delay_there_is_no_wait() -> None:
    rng = random.Random(1)

    assert ReplayOptions(backoff="none", delay=5).backoff_delay(3, rng) == 0.0
    assert ReplayOptions(backoff="exponential", delay=0).backoff_delay(3, rng) == 0.0
    assert ReplayOptions(backoff="fixed", delay=0).backoff_delay(3, rng) == 0.0


@pytest.mark.parametrize("failed_tries", [1, 2, 7])
def test_a_fixed_backoff_always_waits_the_delay(failed_tries: int) -> None:
    options = ReplayOptions(backoff="fixed", delay=2.5)

    assert options.backoff_delay(failed_tries, random.Random(0)) == 2.5


@given(
    delay=st.floats(min_value=0.001, max_value=1000),
    failed_tries=st.integers(min_value=1, max_value=30),
    seed=st.integers(),
)
def test_an_exponential_backoff_doubles_with_full_jitter_below_the_ceiling(
    delay: float, failed_tries: int, seed: int
) -> None:
    options = ReplayOptions(backoff="exponential", delay=delay)
    ceiling = delay * 2 ** (failed_tries - 1)

    wait = options.backoff_delay(failed_tries, random.Random(seed))

    assert ceiling / 2 <= wait <= ceiling


def test_an_exponential_backoff_spreads_the_retries_of_many_items() -> None:
    options = ReplayOptions(backoff="exponential", delay=1.0)
    rng = random.Random(7)

    waits = [options.backoff_delay(3, rng) for _ in range(200)]

    assert min(waits) >= 2.0
    assert max(waits) <= 4.0
    assert len(set(waits)) == 200
    assert max(waits) - min(waits) > 1.0


@pytest.mark.parametrize(
    ("backoff", "delay", "least_wait"),
    [("fixed", 100.0, 200.0), ("exponential", 100.0, 50.0 + 100.0)],
)
async def test_the_engine_waits_the_backoff_between_tries(
    log: EventLog,
    autojump_clock: trio.testing.MockClock,
    backoff: str,
    delay: float,
    least_wait: float,
) -> None:
    enqueue(log, {"item_id": "order-1"})
    started = trio.current_time()

    summary = await run(log, worker("fail"), attempts=3, backoff=backoff, delay=delay)

    assert summary.error_types == {"validation": 3}  # ValueError
    assert trio.current_time() - started >= least_wait


# -- rate ----------------------------------------------------------------------


async def test_the_rate_limiter_spaces_starts_evenly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = _RateLimiter(2.0)
    started = trio.current_time()
    starts: list[float] = []

    for _ in range(5):
        await limiter.wait()
        starts.append(trio.current_time() - started)

    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0]


async def test_the_rate_limiter_spaces_concurrent_starts_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = _RateLimiter(4.0)
    started = trio.current_time()
    starts: list[float] = []

    async def start() -> None:
        await limiter.wait()
        starts.append(trio.current_time() - started)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(start)

    assert sorted(starts) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


async def test_the_rate_limiter_saves_no_burst_while_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = _RateLimiter(1.0)
    await limiter.wait()
    await trio.sleep(60)
    idle_until = trio.current_time()

    await limiter.wait()
    await limiter.wait()

    assert trio.current_time() - idle_until == 1.0


async def test_without_a_rate_starts_do_not_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = _RateLimiter(None)
    started = trio.current_time()

    for _ in range(100):
        await limiter.wait()

    assert trio.current_time() == started


async def test_the_engine_starts_no_faster_than_the_rate(
    log: EventLog, autojump_clock: trio.testing.MockClock
) -> None:
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(5)))
    started = trio.current_time()

    summary = await run(log, ("true",), rate=2.0, parallel=4)

    assert summary.succeeded == 5
    assert trio.current_time() - started >= 2.0


async def test_the_rate_spaces_attempt_starts_in_the_log(log: EventLog) -> None:
    # On the real clock: the first start cannot come before `run_started` is
    # written, and each later one comes at least 1/rate after the one before,
    # so the last is at least (n-1)/rate after it, however slow the machine.
    enqueue(log, *({"item_id": f"order-{n}"} for n in range(4)))

    await run(log, ("true",), rate=10.0, parallel=4)

    (row,) = query(
        log,
        "SELECT min(ts) FILTER (WHERE type = 'run_started') AS run, "
        "max(ts) FILTER (WHERE type = 'attempt_started') AS last FROM events",
    )
    assert (row["last"] - row["run"]).total_seconds() >= 0.3


# -- options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"parallel": 0}, "--parallel must be at least 1"),
        ({"timeout": 0}, "--timeout must be more than 0 seconds"),
        ({"attempts": 0}, "--attempts must be at least 1"),
        ({"max_attempts": 0}, "--max-attempts must be at least 1"),
        ({"delay": -1}, "--delay must not be negative"),
        ({"backoff": "linear"}, "--backoff must be none, fixed or exponential"),
        ({"rate": 0}, "--rate must be more than 0 starts per second"),
        ({"canary": 0}, "--canary must be at least 1 item"),
        ({"min_success": 1.5}, "--min-success must be a fraction from 0 to 1"),
    ],
)
async def test_options_that_cannot_work_are_refused_before_anything_runs(
    log: EventLog, options: dict[str, Any], message: str
) -> None:
    enqueue(log, {"item_id": "order-1"})
    options = {"command": ("true",), **options}

    with pytest.raises(ReplayUsageError, match=rf"^{message}$"):
        await replay(log, ReplayOptions(**options), Selection(), handle_signals=False)

    assert query(log, "SELECT type FROM events") == [{"type": "item_enqueued"}]
