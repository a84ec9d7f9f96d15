"""Benchmark 4: `dlq list --status pending --limit 10` over a million items."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench._import import import_items
from bench._report import (
    INFO,
    Figure,
    count,
    judge,
    median,
    ratio,
    say,
    seconds,
)
from bench._workspace import Workspace, dlq, python_c, run_child
from eventlog import Event, EventLog, LogWriter

_REPEATS = 3
_TARGET_SECONDS = 1.0
_BATCH = 10_000
_LIMIT = "10"

# The same question in plain DuckDB: each item's state from its last event
# that changes it, the oldest pending items first.
_PLAIN_DUCKDB = """\
import sys, duckdb
rows = duckdb.connect().execute('''
WITH per_item AS (
    SELECT
        item_id,
        arg_max(job_id, event_id) FILTER (WHERE type = 'item_enqueued') AS job_id,
        arg_max(type, event_id) FILTER (WHERE type <> 'item_amended') AS last_type,
        count(*) FILTER (WHERE type = 'attempt_started') AS attempts,
        arg_max(error, event_id) FILTER (WHERE error IS NOT NULL) AS last_error,
        max(ts) AS updated_at,
        min(event_id) AS first_event
    FROM read_parquet(?)
    WHERE item_id IS NOT NULL
    GROUP BY item_id
)
SELECT item_id, job_id, 'pending' AS status, attempts, last_error, updated_at
FROM per_item
WHERE last_type IN (
    'item_enqueued', 'item_requeued', 'attempt_failed', 'attempt_interrupted'
)
ORDER BY first_event
LIMIT 10
''', [sys.argv[1]]).fetchall()
for row in rows:
    print(*row, sep='  ')
"""


# What `dlq list` asks of the library, without the CLI around it.
_ANALYTICS = """\
import sys, analytics
conn = analytics.connect(sys.argv[1])
print(analytics.list_items(conn, statuses=["pending"], limit=10).num_rows)
"""


def _started(number: int) -> Event:
    return Event(
        type="attempt_started",
        item_id=f"itm-{number:09d}",
        run_id="run-bench",
        attempt=1,
        command="python -m billing.retry",
    )


def _finished(number: int, *, ok: bool) -> Event:
    return Event(
        type="attempt_succeeded" if ok else "attempt_failed",
        item_id=f"itm-{number:09d}",
        run_id="run-bench",
        attempt=1,
        exit_code=0 if ok else 1,
        duration_ms=850,
        error=None if ok else f"still failing (order {number})",
    )


def replay_some(log: EventLog, total: int) -> tuple[int, int]:
    """Record a replay of some items: 10% succeed, 5% fail again.

    Returns how many succeeded and failed. Appended through a real
    :class:`LogWriter` in batches; closing it seals its segments.
    """
    succeeded = [n for n in range(total) if n % 10 == 3]
    failed = [n for n in range(total) if n % 20 == 7]
    events = [
        event
        for numbers, ok in ((succeeded, True), (failed, False))
        for number in numbers
        for event in (_started(number), _finished(number, ok=ok))
    ]
    with LogWriter(log) as writer:
        for start in range(0, len(events), _BATCH):
            writer.append(events[start : start + _BATCH])
    return len(succeeded), len(failed)


def _prepare_log(space: Workspace, total: int) -> Path:
    """A log of ``total`` imported items plus a replay of some of them."""
    log_dir = space.imported_logs.pop(total, None)
    if log_dir is None:
        run, log_dir = import_items(space, space.items_file(total), "list-log")
        say(f"  imported {total:,} items for the list in {seconds(run.wall)}")
    else:
        say(f"  using the log of {total:,} items the import benchmark made")
    log = EventLog.open(log_dir)
    started = time.perf_counter()
    succeeded, failed = replay_some(log, total)
    elapsed = time.perf_counter() - started
    live = [segment.name for segment in log.segments() if not segment.sealed]
    if live:
        raise RuntimeError(f"segments left unsealed: {live}")
    say(
        f"  appended a replay: {succeeded:,} items succeeded, {failed:,} failed "
        f"again ({seconds(elapsed)}); the log has {len(log.segments())} sealed "
        "segments"
    )
    return log_dir


def _check_listing(space: Workspace, log_dir: Path) -> None:
    """The CLI's answer must be 10 pending items, or its time means nothing."""
    run = run_child(
        dlq(
            "list",
            "--status",
            "pending",
            "--limit",
            _LIMIT,
            "--json",
            "--log",
            str(log_dir),
        ),
        space.fresh("list-json"),
    )
    try:
        rows = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"`dlq list --json` printed what is not JSON ({exc}):\n{run.stdout[:500]}"
        ) from None
    statuses = {row.get("status") for row in rows}
    if len(rows) != int(_LIMIT) or statuses != {"pending"}:
        raise RuntimeError(
            f"`dlq list --status pending --limit {_LIMIT} --json` gave "
            f"{len(rows)} rows with statuses {sorted(map(str, statuses))}"
        )


def bench_list(space: Workspace) -> list[Figure]:
    """The CLI's wall time beside the same query in plain DuckDB.

    Every command runs in a fresh interpreter, so start-up counts on all
    sides; each runs once to warm the page cache, then :data:`_REPEATS` times
    in turn, and the medians are compared. The library call and the bare
    start-ups are shown to tell where the CLI's time goes.
    """
    total = space.size(1_000_000)
    log_dir = _prepare_log(space, total)
    commands = {
        "cli": dlq(
            "list", "--status", "pending", "--limit", _LIMIT, "--log", str(log_dir)
        ),
        "plain": python_c(_PLAIN_DUCKDB, str(log_dir / "sealed" / "*.parquet")),
        "library": python_c(_ANALYTICS, str(log_dir)),
        "duckdb": python_c("import duckdb"),
        "help": dlq("--help"),
    }
    _check_listing(space, log_dir)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(_REPEATS + 1):
        for name, argv in commands.items():
            wall = run_child(argv, space.fresh(name)).wall
            if round_:  # the first round only warms up
                times[name].append(wall)
    for name, walls in times.items():
        say(f"  {name}: " + ", ".join(seconds(wall) for wall in walls))
    took = {name: median(walls) for name, walls in times.items()}

    def context(measured: str, reference: str) -> Figure:
        return Figure("4 list", measured, reference, "", "none set (context)", INFO)

    return [
        Figure(
            "4 list",
            f"dlq list --status pending --limit 10, {count(total)} items: "
            f"{seconds(took['cli'])}",
            f"same question, plain DuckDB in python -c: {seconds(took['plain'])}",
            ratio(took["cli"] / took["plain"]),
            f"< {_TARGET_SECONDS:.0f} s",
            judge(took["cli"] < _TARGET_SECONDS),
        ),
        context(
            f"analytics.connect + list_items in python -c: {seconds(took['library'])}",
            "the library under dlq list, without the CLI",
        ),
        context(
            f"dlq --help: {seconds(took['help'])}",
            "the CLI's start-up, counted in dlq list",
        ),
        context(
            f'python -c "import duckdb": {seconds(took["duckdb"])}',
            "start-up, counted in plain DuckDB",
        ),
    ]
