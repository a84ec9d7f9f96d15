"""Which items a replay takes, what a dry run says about them, and how a
canary stops a replay that would mostly fail."""

from __future__ import annotations

import json

import pytest
from replaying import enqueue, log_files, query, run, worker

from analytics import ForbiddenQueryError, QueryError
from eventlog import Event, EventLog, LogWriter
from reprocessor import (
    ReplayOptions,
    Selection,
    plan_replay,
)


def attempted(log: EventLog) -> list[str]:
    """The items a replay has run, in id order."""
    rows = query(
        log,
        "SELECT DISTINCT item_id FROM events WHERE type = 'attempt_started' "
        "AND run_id IS NOT NULL ORDER BY item_id",
    )
    return [row["item_id"] for row in rows]


@pytest.fixture
def queue(log: EventLog) -> EventLog:
    """Six pending items over two jobs, and one of each other status."""
    enqueue(
        log,
        {"item_id": "a1", "job_id": "alpha", "error": "TimeoutError: read"},
        {"item_id": "a2", "job_id": "alpha", "error": "KeyError: 'sku'"},
        {"item_id": "a3", "job_id": "alpha", "error": "TimeoutError: connect"},
        {"item_id": "b1", "job_id": "beta", "error": "TimeoutError: read"},
        {"item_id": "b2", "job_id": "beta", "error": "ValueError: price"},
        {"item_id": "b3", "job_id": "beta", "error": "ValueError: price"},
        {"item_id": "done", "job_id": "alpha"},
        {"item_id": "dropped", "job_id": "alpha"},
        {"item_id": "poison", "job_id": "alpha"},
    )
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="attempt_started", item_id="done", attempt=1),
                Event(type="attempt_succeeded", item_id="done", attempt=1),
                Event(type="item_discarded", item_id="dropped"),
                Event(type="item_quarantined", item_id="poison"),
            ]
        )
    return log


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), ["a1", "a2", "a3", "b1", "b2", "b3"]),
        (Selection(item_ids=("a2",)), ["a2"]),
        (Selection(item_ids=("a2", "b3", "no-such-item")), ["a2", "b3"]),
        (Selection(item_ids=("done", "dropped", "poison")), []),
        (Selection(job_id="beta"), ["b1", "b2", "b3"]),
        (Selection(where="last_error LIKE 'TimeoutError%'"), ["a1", "a3", "b1"]),
        (Selection(job_id="alpha", where="last_error LIKE 'Time%'"), ["a1", "a3"]),
        (Selection(limit=2), ["a1", "a2"]),
        (Selection(job_id="beta", limit=1), ["b1"]),
        (Selection(force=True), ["a1", "a2", "a3", "b1", "b2", "b3", "poison"]),
    ],
)
async def test_a_replay_runs_the_pending_items_its_selection_names(
    queue: EventLog, selection: Selection, expected: list[str]
) -> None:
    summary = await run(queue, ("true",), selection, max_attempts=5)

    assert summary.selected == len(expected)
    assert attempted(queue) == expected


async def test_a_dry_run_counts_and_names_the_items_and_writes_nothing(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": f"item-{n:02d}", "job_id": "j"} for n in range(25)))
    before = log_files(log)

    plan = plan_replay(
        log, ReplayOptions(command=("true", "{item_id}")), Selection(job_id="j")
    )

    assert plan.count == 25
    assert plan.first_items == tuple(f"item-{n:02d}" for n in range(10))
    assert (plan.mean_duration_ms, plan.estimated_s) == (None, None)
    assert log_files(log) == before


async def test_a_dry_run_estimates_the_duration_from_past_attempts(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": f"item-{n}"} for n in range(9)))
    await run(log, ("false",), Selection(limit=3))
    (mean,) = query(
        log,
        "SELECT avg(duration_ms) AS ms FROM events WHERE type = 'attempt_failed'",
    )

    plan = plan_replay(log, ReplayOptions(parallel=4), Selection(limit=5))

    assert plan.count == 5
    assert plan.first_items == tuple(f"item-{n}" for n in range(5))
    assert plan.mean_duration_ms == pytest.approx(mean["ms"])
    # Five items on four slots: two waves.
    assert plan.estimated_s == pytest.approx(2 * mean["ms"] / 1000)


async def test_a_selection_that_is_not_valid_sql_fails_and_runs_nothing(
    queue: EventLog,
) -> None:
    with pytest.raises(QueryError, match=r"no_such_column"):
        plan_replay(queue, ReplayOptions(), Selection(where="no_such_column = 1"))
    with pytest.raises(QueryError, match=r"no_such_column"):
        await run(queue, ("true",), Selection(where="no_such_column = 1"))

    assert attempted(queue) == []
    # No run is recorded either: the log would say it succeeded.
    assert query(queue, "SELECT type FROM events WHERE type LIKE 'run%'") == []


async def test_a_selection_that_is_not_a_condition_is_refused(
    queue: EventLog,
) -> None:
    where = "true) OR (SELECT count(*) FROM read_text('/etc/passwd')) > 0 OR (true"

    with pytest.raises(ForbiddenQueryError):
        await run(queue, ("true",), Selection(where=where))

    assert attempted(queue) == []
    assert query(queue, "SELECT type FROM events WHERE type LIKE 'run%'") == []


# -- canary --------------------------------------------------------------------


async def test_a_failing_canary_stops_the_replay_before_the_rest(
    log: EventLog,
) -> None:
    # The first four (the canary) mostly fail; the other six would succeed.
    enqueue(
        log,
        *({"item_id": f"c{n}", "payload": {"fail": n != 0}} for n in range(4)),
        *({"item_id": f"r{n}", "payload": {"fail": False}} for n in range(6)),
    )

    summary = await run(log, worker("judge"), canary=4, min_success=0.5)

    assert summary.canary_failed
    assert (summary.selected, summary.succeeded, summary.failed) == (4, 1, 3)
    assert summary.exit_code == 1
    assert summary.status == "canary_failed"
    assert attempted(log) == ["c0", "c1", "c2", "c3"]
    (finished,) = query(log, "SELECT data FROM events WHERE type = 'run_finished'")
    assert json.loads(finished["data"])["status"] == "canary_failed"


async def test_a_passing_canary_lets_the_replay_go_on(log: EventLog) -> None:
    enqueue(
        log,
        *({"item_id": f"c{n}", "payload": {"fail": n == 0}} for n in range(4)),
        *({"item_id": f"r{n}", "payload": {"fail": False}} for n in range(6)),
    )

    summary = await run(log, worker("judge"), canary=4, min_success=0.75)

    assert not summary.canary_failed
    assert (summary.selected, summary.succeeded, summary.failed) == (10, 9, 1)
    assert len(attempted(log)) == 10


async def test_a_canary_larger_than_the_selection_still_judges_it(
    log: EventLog,
) -> None:
    enqueue(log, *({"item_id": f"c{n}", "payload": {"fail": True}} for n in range(3)))

    summary = await run(log, worker("judge"), canary=10, min_success=0.5)

    assert summary.canary_failed
    assert summary.status == "canary_failed"
    assert summary.selected == 3
