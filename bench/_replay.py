"""Benchmark 5: `dlq replay` beside xargs and GNU parallel, and its memory.

Every figure is a whole process timed from spawn to exit, so interpreter
start-up, opening the log and selecting the items count for `dlq replay`
just as xargs pays its own start-up. The queues are made once per size
with `dlq import`, and each replay runs on a fresh copy of its queue's log
(copied untimed), so that every item is pending when it starts.

`dlq replay` runs ``COMMAND {item_id}`` or ``sleep 0.02``; xargs and GNU
parallel run exactly the same argv per item, read one argument a line from
a file (``true itm-000000042``, ``sleep 0.02``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._import import import_items
from bench._report import (
    INFO,
    Figure,
    count,
    judge,
    mebibytes,
    median,
    per_second,
    percent,
    rate,
    ratio,
    say,
    seconds,
)
from bench._workspace import ChildRun, Workspace, dlq, run_child

_SLEEP = "0.02"
_SLOW_JOBS = 8
FAST_JOBS = 2
# Rounds alternate which side goes first, so that the machine's slow and
# fast moments fall on both. GNU parallel is slow enough that fewer rounds
# of it keep the whole benchmark near three minutes.
_SLOW_ROUNDS = 3
_FAST_ROUNDS = 2
_PARALLEL_ROUNDS = 1
_SMALL_ROUNDS = 5
_SMALL_ITEMS = 10
_MEMORY_ROUNDS = 2

_TARGET_OVERHEAD = 0.02
_LIMIT_OVERHEAD = 0.05
TARGET_XARGS_SHARE = 0.7
_TARGET_PARALLEL_TIMES = 3.0
_TARGET_SMALL_SECONDS = 0.5
TARGET_PEAK_BYTES = 300 * 10**6
# "No more memory than replaying 1,000": allocator noise aside.
_GROWTH_ALLOWED = 1.25

_INSTALL_PARALLEL = "install it with `apt-get install parallel` (Debian, Ubuntu)"


def bench_replay(space: Workspace) -> list[Figure]:
    """`dlq replay` throughput, fixed cost and peak memory beside references."""
    return [
        *_bench_slow_items(space),
        *_bench_fast_items(space),
        *_bench_small_queue(space),
        *_bench_memory(space),
    ]


# -- the pieces ------------------------------------------------------------


def make_queue(space: Workspace, items: int) -> Path:
    """A log of ``items`` pending items, imported once per size and run."""
    run, log_dir = import_items(space, space.items_file(items), f"replay-queue-{items}")
    say(f"  imported a queue of {items:,} items in {seconds(run.wall)}")
    return log_dir


def argument_file(space: Workspace, lines: list[str]) -> Path:
    """A file of one argument a line, for xargs and GNU parallel to read."""
    path = space.fresh("arguments").with_suffix(".txt")
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def item_ids(items: int) -> list[str]:
    """The ids of the first ``items`` generated items, as imported."""
    return [f"itm-{number:09d}" for number in range(items)]


def _replay(
    space: Workspace, queue: Path, expected: int, *args: str, label: str = "replay"
) -> ChildRun:
    """`dlq replay --json ARGS` on a fresh copy of ``queue``, in a child.

    Raises:
        RuntimeError: the replay did not run exactly ``expected`` items, each
            successfully: its time would mean nothing.
    """
    log_dir = space.fresh(label)
    shutil.copytree(queue, log_dir)
    try:
        run = run_child(dlq("replay", "--json", "--log", str(log_dir), *args), log_dir)
    finally:
        shutil.rmtree(log_dir)
    summary = replay_summary(run.stdout, args)
    if summary["selected"] != expected or summary["succeeded"] != expected:
        raise RuntimeError(
            f"`dlq replay {' '.join(args)}` selected {summary['selected']} and "
            f"succeeded {summary['succeeded']} items; expected {expected} of each"
        )
    return run


def replay_summary(stdout: str, args: tuple[str, ...]) -> dict[str, Any]:
    """The JSON summary a replay printed; anything before it is reported.

    Anything else on stdout breaks ``--json`` for scripts, so the first time
    it happens in a run it is said rather than hidden.

    Raises:
        RuntimeError: stdout does not end with a JSON document.
    """
    decoder = json.JSONDecoder()
    starts = [0] + [index + 1 for index, char in enumerate(stdout) if char == "\n"]
    for start in starts:
        if not stdout.startswith("{", start):
            continue
        try:
            summary, end = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            continue
        if stdout[end:].strip() or not isinstance(summary, dict):
            continue
        stray = stdout[:start].strip()
        if stray and not _STRAY_OUTPUT:
            _STRAY_OUTPUT.append(stray)
            say(
                f"  BUG: `dlq replay --json {' '.join(args)}` printed "
                f"{len(stray):,} characters on stdout before its JSON summary "
                f"(said once per run): {stray[-100:]!r}"
            )
        return summary
    raise RuntimeError(
        f"`dlq replay --json` did not end with a JSON summary: {stdout[-500:]!r}"
    )


# What a replay printed before its summary, kept to say it only once.
_STRAY_OUTPUT: list[str] = []


def run_xargs(space: Workspace, arguments: Path, jobs: int, *command: str) -> ChildRun:
    """``xargs -P JOBS -n 1 COMMAND`` over the lines of ``arguments``."""
    argv = [_which("xargs"), "-a", str(arguments), "-P", str(jobs), "-n", "1"]
    return run_child([*argv, *command], space.fresh("xargs"))


def _gnu_parallel() -> str | None:
    """The path of GNU parallel, or None (with the reason said) if missing.

    Another program named `parallel` (moreutils has one) lacks ``--joblog``.
    """
    path = shutil.which("parallel")
    if path is None:
        say(
            "  GNU parallel is not installed, so the comparison with it is "
            f"skipped; {_INSTALL_PARALLEL} to measure it"
        )
        return None
    version = subprocess.run(
        [path, "--will-cite", "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if not version.startswith("GNU parallel"):
        say(
            f"  {path} is not GNU parallel (moreutils has a `parallel` too), so "
            f"the comparison with GNU parallel is skipped; {_INSTALL_PARALLEL}"
        )
        return None
    return path


def _parallel(
    space: Workspace, program: str, arguments: Path, jobs: int, *command: str
) -> ChildRun:
    """GNU ``parallel -j JOBS --joblog FILE COMMAND`` over ``arguments``."""
    scratch = space.fresh("parallel")
    argv = [program, "--will-cite", "-j", str(jobs), "-a", str(arguments)]
    argv += ["--joblog", str(scratch.with_suffix(".joblog")), *command]
    run = run_child(argv, scratch)
    scratch.with_suffix(".joblog").unlink()
    return run


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"`{program}` is not installed; the benchmark needs it")
    return path


def alternate(
    rounds: int, sides: dict[str, Callable[[], ChildRun]]
) -> dict[str, list[ChildRun]]:
    """Run each side once per round, in an order that turns every round."""
    runs: dict[str, list[ChildRun]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(sides[name]())
    return runs


def _walls(runs: list[ChildRun]) -> str:
    return ", ".join(seconds(run.wall) for run in runs)


def _signed_percent(value: float) -> str:
    """An overhead to a tenth of a percent, with its sign: ``+2.6%``."""
    return f"{value * 100:+.1f}%"


# -- 20 ms commands, -j 8 --------------------------------------------------


def _bench_slow_items(space: Workspace) -> list[Figure]:
    """Items whose command takes 20 ms: the overhead over xargs, whole process."""
    items = space.size(4_000, least=80)
    queue = make_queue(space, items)
    arguments = argument_file(space, [_SLEEP] * items)
    jobs = str(_SLOW_JOBS)
    runs = alternate(
        _SLOW_ROUNDS,
        {
            "dlq": lambda: _replay(
                space, queue, items, "-j", jobs, "--", "sleep", _SLEEP
            ),
            "xargs": lambda: run_xargs(space, arguments, _SLOW_JOBS, "sleep"),
        },
    )
    ideal = items * float(_SLEEP) / _SLOW_JOBS
    say(
        f"  {items:,} x sleep {_SLEEP}, -j {jobs} (no overhead at all would take "
        f"{seconds(ideal)}): dlq replay {_walls(runs['dlq'])}; "
        f"xargs -P {jobs} {_walls(runs['xargs'])}"
    )
    ours = median([run.wall for run in runs["dlq"]])
    theirs = median([run.wall for run in runs["xargs"]])
    overhead = ours / theirs - 1
    within = "within" if overhead < _LIMIT_OVERHEAD else "over"
    rounds = ", ".join(
        _signed_percent(ours_run.wall / theirs_run.wall - 1)
        for ours_run, theirs_run in zip(runs["dlq"], runs["xargs"], strict=True)
    )
    say(
        f"  overhead of the medians {_signed_percent(overhead)} (round by round: "
        f"{rounds}): {within} the {percent(_LIMIT_OVERHEAD)} limit; the target "
        f"is {percent(_TARGET_OVERHEAD)}"
    )
    return [
        Figure(
            "5 replay",
            f"dlq replay -j {jobs}, {count(items)} x sleep {_SLEEP}: {seconds(ours)}",
            f"xargs -P {jobs} -n 1, same commands: {seconds(theirs)}",
            _signed_percent(overhead),
            f"overhead <= {percent(_TARGET_OVERHEAD)} (limit < "
            f"{percent(_LIMIT_OVERHEAD)})",
            judge(overhead <= _TARGET_OVERHEAD),
        )
    ]


# -- `true`, -j 2 ----------------------------------------------------------


def _bench_fast_items(space: Workspace) -> list[Figure]:
    """Items running `true`: items/s beside xargs and GNU parallel --joblog."""
    items = space.size(5_000, least=100)
    queue = make_queue(space, items)
    arguments = argument_file(space, item_ids(items))
    jobs = str(FAST_JOBS)
    sides: dict[str, Callable[[], ChildRun]] = {
        "dlq": lambda: _replay(
            space, queue, items, "-j", jobs, "--", "true", "{item_id}"
        ),
        "xargs": lambda: run_xargs(space, arguments, FAST_JOBS, "true"),
    }
    runs = alternate(_FAST_ROUNDS, sides)
    program = _gnu_parallel()
    if program is not None:
        runs |= alternate(
            _PARALLEL_ROUNDS,
            {
                "parallel": lambda: _parallel(
                    space, program, arguments, FAST_JOBS, "true"
                )
            },
        )
    for name, walls in runs.items():
        say(f"  {items:,} x true, {name}: {_walls(walls)}")
    ours = per_second(items, median([run.wall for run in runs["dlq"]]))
    xargs = per_second(items, median([run.wall for run in runs["xargs"]]))
    measured = f"dlq replay -j {jobs}, {count(items)} x true: {rate(ours, 'items/s')}"
    figures = [
        Figure(
            "5 replay",
            measured,
            f"xargs -P {jobs} -n 1: {rate(xargs, 'items/s')}",
            percent(ours / xargs),
            f">= {percent(TARGET_XARGS_SHARE)} of xargs",
            judge(ours >= TARGET_XARGS_SHARE * xargs),
        )
    ]
    if "parallel" not in runs:
        figures.append(
            Figure(
                "5 replay",
                "dlq replay (as above)",
                "GNU parallel: not installed; apt-get install parallel",
                "",
                f">= {_TARGET_PARALLEL_TIMES:.0f}x GNU parallel: not measured",
                INFO,
            )
        )
        return figures
    parallel = per_second(items, median([run.wall for run in runs["parallel"]]))
    figures.append(
        Figure(
            "5 replay",
            "dlq replay (as above)",
            f"GNU parallel -j {jobs} --joblog: {rate(parallel, 'items/s')}",
            ratio(ours / parallel),
            f">= {_TARGET_PARALLEL_TIMES:.0f}x GNU parallel",
            judge(ours >= _TARGET_PARALLEL_TIMES * parallel),
        )
    )
    return figures


# -- a small queue ---------------------------------------------------------


def _bench_small_queue(space: Workspace) -> list[Figure]:
    """Ten items: the fixed cost of start-up and selection.

    Not cut by ``--quick``: ten items is already the smallest queue worth
    timing. Shown for context: the CLI's bare start-up (``dlq --help``) and a
    dry run (start-up, opening the log and selecting, running nothing).
    """
    items = _SMALL_ITEMS
    queue = make_queue(space, items)
    arguments = argument_file(space, item_ids(items))
    jobs = str(FAST_JOBS)
    copy = space.fresh("dry-run-log")
    shutil.copytree(queue, copy)
    runs = alternate(
        _SMALL_ROUNDS + 1,  # the first round only warms up
        {
            "dlq": lambda: _replay(
                space, queue, items, "-j", jobs, "--", "true", "{item_id}"
            ),
            "xargs": lambda: run_xargs(space, arguments, FAST_JOBS, "true"),
            "help": lambda: run_child(dlq("--help"), space.fresh("help")),
            "dry": lambda: run_child(
                dlq("replay", "--dry-run", "--log", str(copy), "--", "true"),
                space.fresh("dry-run"),
            ),
        },
    )
    shutil.rmtree(copy)
    for name, walls in runs.items():
        say(f"  {items} items, {name}: {_walls(walls[1:])}")
    took = {
        name: median([run.wall for run in walls[1:]]) for name, walls in runs.items()
    }

    def context(measured: str, reference: str) -> Figure:
        return Figure("5 replay", measured, reference, "", "none set (context)", INFO)

    return [
        Figure(
            "5 replay",
            f"dlq replay -j {jobs}, {items} x true: {seconds(took['dlq'])}",
            f"xargs -P {jobs} -n 1: {seconds(took['xargs'])}",
            ratio(took["dlq"] / took["xargs"]),
            f"< {seconds(_TARGET_SMALL_SECONDS)}",
            judge(took["dlq"] < _TARGET_SMALL_SECONDS),
        ),
        context(
            f"dlq replay --dry-run, same queue: {seconds(took['dry'])}",
            "start-up, open the log and select; runs nothing",
        ),
        context(
            f"dlq --help: {seconds(took['help'])}",
            "the CLI's start-up, counted in both above",
        ),
    ]


# -- peak memory -----------------------------------------------------------


def _bench_memory(space: Workspace) -> list[Figure]:
    """Peak memory of replaying a sample of a big queue beside a small queue.

    Running a million `true` would take long, so both replays run the same
    number of items (``--limit``): all of the small queue, and the oldest of
    the big one; what differs is only how many pending items the log holds.
    """
    big = space.size(1_000_000)
    sample = space.size(1_000, least=100)
    big_queue = make_queue(space, big)
    small_queue = make_queue(space, sample)
    limit = ("--limit", str(sample), "-j", str(_SLOW_JOBS), "--", "true")
    runs = alternate(
        _MEMORY_ROUNDS,
        {
            "big": lambda: _replay(space, big_queue, sample, *limit, label="memory"),
            "small": lambda: _replay(
                space, small_queue, sample, *limit, label="memory"
            ),
        },
    )
    for name, queue_items in (("big", big), ("small", sample)):
        say(
            f"  replay of {sample:,} items from a queue of {queue_items:,}: "
            + ", ".join(
                f"peak {mebibytes(run.peak_rss)} in {seconds(run.wall)}"
                for run in runs[name]
            )
        )
    shutil.rmtree(big_queue)
    peak = median([run.peak_rss for run in runs["big"]])
    small_peak = median([run.peak_rss for run in runs["small"]])
    wall = median([run.wall for run in runs["big"]])
    small_wall = median([run.wall for run in runs["small"]])
    return [
        Figure(
            "5 replay",
            f"peak memory, replay of {count(sample)} of {count(big)} pending: "
            f"{mebibytes(peak)}",
            f"all {count(sample)} of {count(sample)} pending: {mebibytes(small_peak)}",
            ratio(peak / small_peak),
            f"< {TARGET_PEAK_BYTES // 10**6} MB ({mebibytes(TARGET_PEAK_BYTES)})",
            judge(peak < TARGET_PEAK_BYTES),
        ),
        Figure(
            "5 replay",
            "peak memory (as above)",
            "(as above)",
            ratio(peak / small_peak),
            f"flat: <= {_GROWTH_ALLOWED:.2f}x for {count(big // sample)}x the queue",
            judge(peak <= _GROWTH_ALLOWED * small_peak),
        ),
        Figure(
            "5 replay",
            f"wall time, {count(sample)} of {count(big)} pending: {seconds(wall)}",
            f"{count(sample)} of {count(sample)} pending: {seconds(small_wall)}",
            ratio(wall / small_wall),
            "none set (context)",
            INFO,
        ),
    ]
