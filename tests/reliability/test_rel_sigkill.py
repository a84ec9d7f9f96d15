"""SIGKILL at a seeded random moment of `dlq replay`, `import`, `compact`, `amend`.

Each trial copies a log prepared once per test, starts the command as a real
process (``python -m dlq ...``), waits for its first change to the log's
files and kills it with SIGKILL a seeded random delay later, drawn over the
time the command then takes to finish (measured once per test with as many
runs at once as the trials make, plus a little to land past its end).
Counting from the first change rather than from the start keeps the kills
in the command's work however slowly a busy machine runs its start-up; an
amendment, whose one write is its work, is counted from its start. Then:

- ``verify_log`` finds the log intact;
- every event the command acknowledged is there exactly once. What counts as
  acknowledged: for a replay, the ``attempt_started`` of every attempt whose
  command ran (the worker script records each execution outside the log);
  for the other commands, everything once the command said it was done on
  stderr; and every event readable right after the kill stays readable after
  the rerun;
- the same command, run again, finishes the work.

Trials run a few at a time, each in a directory of its own.
"""

from __future__ import annotations

import collections
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

import analytics
from eventlog import (
    CompactResult,
    EnqueueRecord,
    EventLog,
    compact_log,
    enqueue_items,
    import_records,
    verify_log,
)

TESTS = Path(__file__).parents[1]
WORKER = TESTS / "workers" / "execution_recorder.py"
WRITER = TESTS / "helpers" / "eventlog_writer.py"
DLQ = (sys.executable, "-m", "dlq")
SEED = 20261204
# Where a command's writes show, besides the manifest growing.
SUBDIRS = ("segments", "sealed", "merged", "staging")
# Trials at once: each is mostly a process starting up, on two cores.
POOL = 3
ITEMS = 30
COLUMNS = ["event_id", "type", "item_id", "run_id", "attempt", "failure_id", "payload"]

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Checked:
    """What one trial found: whether the kill landed, events checked and lost."""

    killed: bool
    events_checked: int
    events_lost: int


def files_of(log: Path) -> tuple[object, ...]:
    """What changes when a command writes anything to ``log``."""
    manifest = log / "manifest.jsonl"
    size = manifest.stat().st_size if manifest.exists() else -1
    return (size, *(sorted(os.listdir(log / sub)) for sub in SUBDIRS))


def start_watched(
    argv: Sequence[str | Path], log: Path, stderr: Path, *, watch: bool = True
) -> subprocess.Popen[bytes]:
    """Start ``argv``; return it once it changed ``log``, or once it ended
    (at once if not ``watch``)."""
    before = files_of(log)
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    while watch and process.poll() is None and files_of(log) == before:
        time.sleep(0.002)
    return process


def run_until_killed(
    argv: Sequence[str | Path],
    log: Path,
    delay: float,
    stderr: Path,
    *,
    watch: bool = True,
) -> bool:
    """Run ``argv``, SIGKILL it ``delay`` seconds after its first change to
    ``log`` (after its start if not ``watch``); False if it ended first."""
    process = start_watched(argv, log, stderr, watch=watch)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False


def run(argv: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, check=False
    )


def duration_of(
    argv: Callable[[Path], Sequence[str | Path]],
    template: Path,
    tmp_path: Path,
    *,
    watch: bool = True,
) -> float:
    """How long the command takes from its first change to the log (from its
    start if not ``watch``) to its end, the longest of ``POOL`` runs at once
    on copies of ``template``, as the trials will run it; each must succeed."""

    def once(index: int) -> float:
        trial = copy_of(template, tmp_path, -1 - index)
        stderr = trial / "calibration"
        process = start_watched(argv(trial), trial / "log", stderr, watch=watch)
        changed = time.perf_counter()
        assert process.wait() == 0, stderr.read_text()
        return time.perf_counter() - changed

    with ThreadPoolExecutor(POOL) as pool:
        return max(pool.map(once, range(POOL)))


def intact_events(path: Path) -> list[dict[str, Any]]:
    """The log's events in reading order, after checking it verifies."""
    log = EventLog.open(path)
    report = verify_log(log)
    assert report.clean, "\n".join(str(problem) for problem in report.problems)
    events = [row for table in log.iter_tables(COLUMNS) for row in table.to_pylist()]
    counts = collections.Counter(event["event_id"] for event in events)
    assert [i for i, n in counts.items() if n > 1] == []
    return events


def missing(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> int:
    """How many events readable ``before`` are gone ``after``."""
    kept = {event["event_id"] for event in after}
    return sum(event["event_id"] not in kept for event in before)


def run_trials(
    trials: int,
    name: str,
    duration: float,
    trial: Callable[[int, float], Checked],
    figures: Any,
) -> None:
    """Run ``trial(index, delay)`` for seeded delays spread over ``duration``
    (and a little past it); tally each one, then check that none lost an
    event."""
    rng = random.Random(f"{SEED}-{name}")
    delays = [rng.uniform(0, duration * 1.2) for _ in range(trials)]
    with ThreadPoolExecutor(POOL) as pool:
        futures = [pool.submit(trial, i, d) for i, d in enumerate(delays)]
        results = []
        for index, future in enumerate(futures):
            try:
                results.append(future.result())
            except AssertionError as exc:
                raise AssertionError(
                    f"trial {index} (seed {SEED}-{name}, killed after "
                    f"{delays[index]:.3f} s of {duration:.3f} s): {exc}"
                ) from exc
    for checked in results:
        figures.add(
            name,
            trials=1,
            faults=int(checked.killed),
            events_checked=checked.events_checked,
            events_lost=checked.events_lost,
        )
    lost = [(i, r.events_lost) for i, r in enumerate(results) if r.events_lost]
    assert lost == []
    # The delays cover the whole run: some kills must land before the end.
    assert sum(r.killed for r in results) >= trials // 3


def records(count: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` failed items, each with a failure id (so an import is
    idempotent) and a payload ``{"n": N}``."""
    return [
        {
            "item_id": f"{prefix}-{n:03d}",
            "payload": {"n": n},
            "error": "boom",
            "failure_id": f"{prefix}-failure-{n}",
        }
        for n in range(count)
    ]


def jsonl(items: list[dict[str, Any]]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(item).encode() + b"\n" for item in items))


def add(log: EventLog, items: list[dict[str, Any]]) -> None:
    """Enqueue ``items`` as `dlq add` does: one writer, sealed at the end."""
    enqueue_items(
        log,
        [
            EnqueueRecord(
                item_id=item["item_id"],
                payload=msgspec.Raw(json.dumps(item["payload"]).encode()),
                error=item["error"],
                failure_id=item["failure_id"],
            )
            for item in items
        ],
    )


def queue_of(tmp_path: Path, count: int = ITEMS) -> Path:
    """A log of ``count`` pending items imported at once."""
    log = EventLog.open(tmp_path / "template", create=True)
    import_records(log, jsonl(records(count, "it")), source="items.jsonl")
    return log.path


def copy_of(template: Path, tmp_path: Path, index: int) -> Path:
    trial = tmp_path / f"trial-{index}"
    shutil.copytree(template, trial / "log")
    return trial


# -- replay ---------------------------------------------------------------


def replay_argv(trial: Path) -> list[str | Path]:
    return [
        *DLQ, "replay", "--log", trial / "log", "-j", "4", "--",
        sys.executable, "-I", "-S", WORKER, trial / "executions", "{item_id}",
    ]  # fmt: skip


def executions_of(trial: Path) -> collections.Counter[tuple[str, str, int]]:
    """How often each (run, item, attempt) really ran, as the worker recorded."""
    path = trial / "executions"
    lines = path.read_text().splitlines() if path.exists() else []
    return collections.Counter(
        (run_id, item_id, int(attempt))
        for run_id, item_id, attempt in (line.split() for line in lines)
    )


def check_replayed(trial: Path, after_kill: list[dict[str, Any]]) -> Checked:
    """Every item succeeded once; every other attempt is closed as interrupted."""
    events = intact_events(trial / "log")
    starts = collections.Counter(
        (e["run_id"], e["item_id"], e["attempt"])
        for e in events
        if e["type"] == "attempt_started"
    )
    assert [key for key, n in starts.items() if n > 1] == []
    outcomes = collections.defaultdict(list)
    for e in events:
        if e["type"] in ("attempt_succeeded", "attempt_failed", "attempt_interrupted"):
            outcomes[(e["run_id"], e["item_id"], e["attempt"])].append(e["type"])
    # Each start has exactly one outcome: a success, or an interruption that
    # the next replay recorded for an attempt its killed replay left open.
    assert {key: outcomes[key] for key in starts} == {
        key: outcomes[key]
        for key in starts
        if outcomes[key] in (["attempt_succeeded"], ["attempt_interrupted"])
    }
    assert set(outcomes) == set(starts)
    succeeded = [key for key in starts if outcomes[key] == ["attempt_succeeded"]]
    items = sorted(e["item_id"] for e in events if e["type"] == "item_enqueued")
    assert sorted(item for _, item, _ in succeeded) == items

    executions = executions_of(trial)
    assert [key for key, n in executions.items() if n > 1] == []
    # A recorded success really ran; every execution had its start recorded
    # before it was spawned (one without is an acknowledged start lost).
    assert [key for key in succeeded if key not in executions] == []
    unstarted = [key for key in executions if key not in starts]

    # Every run started was finished, the killed one by the rerun.
    runs = collections.Counter(
        (e["type"], e["run_id"])
        for e in events
        if e["type"] in ("run_started", "run_finished")
    )
    started = sorted(run for kind, run in runs if kind == "run_started")
    assert sorted(run for kind, run in runs if kind == "run_finished") == started
    assert set(runs.values()) == {1}

    # The derived state tells the same: each execution beyond an item's one
    # success is an attempt whose outcome reads `interrupted`, none silent.
    with analytics.connect(EventLog.open(trial / "log")) as conn:
        statuses = analytics.list_items(conn).column("status").to_pylist()
        derived = {
            (run_id, item_id, attempt): outcome
            for run_id, item_id, attempt, outcome in conn.execute(
                "SELECT run_id, item_id, attempt, outcome FROM attempts"
            ).fetchall()
        }
    assert statuses == ["succeeded"] * ITEMS
    extra = [key for key in executions if key in starts and key not in succeeded]
    assert len(executions) - len(extra) - len(unstarted) == ITEMS
    assert {key: derived.get(key) for key in extra} == dict.fromkeys(
        extra, "interrupted"
    )
    assert sorted(derived.values()).count("succeeded") == ITEMS
    return Checked(True, len(events), missing(after_kill, events) + len(unstarted))


def test_a_replay_killed_at_any_moment_loses_no_start_and_hides_no_execution(
    tmp_path: Path, trials: int, figures: Any
) -> None:
    template = queue_of(tmp_path)
    duration = duration_of(replay_argv, template, tmp_path)

    def trial(index: int, delay: float) -> Checked:
        trial = copy_of(template, tmp_path, index)
        killed = run_until_killed(
            replay_argv(trial), trial / "log", delay, trial / "stderr"
        )
        after_kill = intact_events(trial / "log")
        if any(e["type"] == "attempt_started" for e in after_kill):
            mid_run.append(index)

        rerun = run(replay_argv(trial))

        assert rerun.returncode == 0, rerun.stderr
        checked = check_replayed(trial, after_kill)
        return Checked(killed, checked.events_checked, checked.events_lost)

    mid_run: list[int] = []
    run_trials(trials, "SIGKILL during dlq replay", duration, trial, figures)
    # Some kills landed while attempts ran, not only before the first.
    assert len(mid_run) >= trials // 4


# -- import ---------------------------------------------------------------

IMPORTED = 1500


def test_an_import_killed_at_any_moment_is_all_or_nothing_and_reruns_once(
    tmp_path: Path, trials: int, figures: Any
) -> None:
    # A log that already holds a few items, and a file of many more.
    template = EventLog.open(tmp_path / "template", create=True)
    add(template, records(3, "old"))
    source = tmp_path / "failures.jsonl"
    source.write_bytes(jsonl(records(IMPORTED, "new")).getvalue())
    wanted = {f"new-failure-{n}" for n in range(IMPORTED)}

    def argv(trial: Path) -> list[str | Path]:
        return [*DLQ, "import", source, "--log", trial / "log"]

    def imported(events: list[dict[str, Any]]) -> collections.Counter[str]:
        return collections.Counter(
            e["failure_id"] for e in events if e["failure_id"] in wanted
        )

    duration = duration_of(argv, template.path, tmp_path)

    def trial(index: int, delay: float) -> Checked:
        trial = copy_of(template.path, tmp_path, index)
        killed = run_until_killed(argv(trial), trial / "log", delay, trial / "stderr")
        after_kill = intact_events(trial / "log")
        acknowledged = f"imported {IMPORTED} items" in (trial / "stderr").read_text()
        there = imported(after_kill)
        assert sorted(there.values()) in ([], [1] * IMPORTED)
        outcomes[bool(there)] += 1
        lost = IMPORTED - len(there) if acknowledged else 0

        rerun = run(argv(trial))

        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stderr == (
            f"imported 0 items, skipped {IMPORTED} duplicates\n"
            if there
            else f"imported {IMPORTED} items\n"
        )
        events = intact_events(trial / "log")
        assert imported(events) == collections.Counter(wanted)
        return Checked(killed, len(events), lost + missing(after_kill, events))

    outcomes: collections.Counter[bool] = collections.Counter()
    run_trials(trials, "SIGKILL during dlq import", duration, trial, figures)
    # Kills landed both before and after the import was published.
    assert outcomes[True], outcomes
    assert outcomes[False], outcomes


# -- compact --------------------------------------------------------------


def test_a_compaction_killed_at_any_moment_keeps_every_event_in_its_order(
    tmp_path: Path, trials: int, figures: Any
) -> None:
    # Many small sealed files (one `dlq add` each), an import between them,
    # and live segments two writers left when they died: work for every step.
    template = EventLog.open(tmp_path / "template", create=True)
    for n in range(20):
        add(template, records(2, f"add{n}"))
    import_records(template, jsonl(records(50, "imp")), source="in.jsonl")
    for n in range(20, 40):
        add(template, records(2, f"add{n}"))
    for prefix in ("dead-a", "dead-b"):
        subprocess.run(
            [sys.executable, WRITER, template.path, "10", "--prefix", prefix,
             "--abandon"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    order = [e["event_id"] for e in intact_events(template.path)]

    def argv(trial: Path) -> list[str | Path]:
        return [*DLQ, "compact", "--log", trial / "log"]

    duration = duration_of(argv, template.path, tmp_path)

    def trial(index: int, delay: float) -> Checked:
        trial = copy_of(template.path, tmp_path, index)
        killed = run_until_killed(argv(trial), trial / "log", delay, trial / "stderr")
        after_kill = intact_events(trial / "log")
        assert [e["event_id"] for e in after_kill] == order
        log = EventLog.open(trial / "log")
        steps[len(log.segments())] += 1
        if "sealed 2 segments" in (trial / "stderr").read_text():
            assert all(segment.sealed for segment in log.segments())

        rerun = run(argv(trial))

        assert rerun.returncode == 0, rerun.stderr
        events = intact_events(trial / "log")
        assert [e["event_id"] for e in events] == order
        # Finished: nothing is left to seal or merge.
        assert compact_log(log) == CompactResult(sealed=0, merged=0, into=0)
        return Checked(killed, len(events), missing(after_kill, events))

    steps: collections.Counter[int] = collections.Counter()
    run_trials(trials, "SIGKILL during dlq compact", duration, trial, figures)
    # Kills landed both before the merge was published and after.
    assert len(steps) > 1, steps


# -- amend ----------------------------------------------------------------


def test_an_amendment_killed_at_any_moment_is_whole_or_absent(
    tmp_path: Path, trials: int, figures: Any
) -> None:
    template = queue_of(tmp_path)
    item = "it-007"

    def argv(trial: Path) -> list[str | Path]:
        return [
            *DLQ, "amend", item, "--set", "n=700", "--reason", "n lost two zeros",
            "--log", trial / "log",
        ]  # fmt: skip

    def amendments(events: list[dict[str, Any]]) -> list[str]:
        return [e["payload"] for e in events if e["type"] == "item_amended"]

    def payload(trial: Path) -> Any:
        with analytics.connect(EventLog.open(trial / "log")) as conn:
            [row] = analytics.list_items(conn, where=f"item_id = '{item}'").to_pylist()
        return json.loads(row["payload"])

    # Its one write is its work: the delays count from its start, to land on
    # either side of that write.
    duration = duration_of(argv, template, tmp_path, watch=False)

    def trial(index: int, delay: float) -> Checked:
        trial = copy_of(template, tmp_path, index)
        killed = run_until_killed(
            argv(trial), trial / "log", delay, trial / "stderr", watch=False
        )
        after_kill = intact_events(trial / "log")
        acknowledged = f"amended {item}: n" in (trial / "stderr").read_text()
        there = amendments(after_kill)
        assert there in ([], ['{"n":700}'])
        outcomes[bool(there)] += 1
        assert payload(trial) == {"n": 700 if there else 7}
        lost = int(acknowledged and not there)

        rerun = run(argv(trial))

        if there:
            assert (rerun.returncode, rerun.stderr) == (
                1,
                f"error: nothing to amend: n of {item!r} already has the value given\n",
            )
        else:
            assert (rerun.returncode, rerun.stderr) == (0, f"amended {item}: n\n")
        events = intact_events(trial / "log")
        assert amendments(events) == ['{"n":700}']
        assert payload(trial) == {"n": 700}
        return Checked(killed, len(events), lost + missing(after_kill, events))

    outcomes: collections.Counter[bool] = collections.Counter()
    run_trials(trials, "SIGKILL during dlq amend", duration, trial, figures)
    # Kills landed both before the amendment was written and after.
    assert outcomes[True], outcomes
    assert outcomes[False], outcomes
