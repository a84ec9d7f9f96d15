"""Speed and memory figures of dlq, each beside a reference from the same run.

Run ``python -m bench`` (or ``just bench``) for all of them, ``python -m bench
NAME ...`` for some, ``--quick`` for a smoke run with every size cut tenfold.
The machine is shared and noisy, so no figure is compared with a number from
another day: each is printed beside a reference measured here and now, on the
same disk, and judged PASS or MISS against the target its issue set (or
marked ``info`` where none was set). All data lives in a temporary directory
that is removed at the end. The exit status is 0 even when a figure misses
(the figures are information); it is 1 when a benchmark crashes.

The benchmarks:

append
    Durable single-event appends per second: ``LogWriter.append([event])``
    in a loop, each call returning only once its event is fsynced. Reference:
    ``os.write`` + ``os.fsync`` of the same JSONL line bytes to a plain file
    in the same directory. 2,000 of each, in ten rounds that alternate which
    goes first. Target: appends reach at least 80% of the raw rate.
group
    Group commit: eight threads sharing one writer, each appending single
    events; and one thread appending batches of 1,000 (the run includes
    sealing a full segment when one fills, as a long-lived writer pays it).
    Reference: one thread appending single events. Median of three. No target.
import
    ``dlq import`` of 1,000,000 realistic items (ids, job, a payload of a
    few keys, an error, an exit code), run as the real CLI in a child process
    timed from spawn to exit. Reference: a fresh interpreter with DuckDB
    reading the same file into a table (``CREATE TABLE ... read_json``), and
    a ``wc -l``-style read of it. Target: at least 300,000 items/s. Also the
    child's peak memory (its own ru_maxrss, through ``os.wait4``) beside that
    of importing 100,000 items: streaming means it must not grow with the
    input (judged: at most 1.25x for ten times the items). Median of three.
list
    ``dlq list --status pending --limit 10`` on the log of 1,000,000 imported
    items plus a replay (10% succeeded, 5% failed again), as the real CLI in
    a child. Reference: the same query (each item's state from its last
    event) in plain DuckDB over the sealed Parquet files, in a fresh
    ``python -c``, so interpreter start-up counts on both sides. Shown for
    context, to tell where the time goes: the same call to ``analytics``
    without the CLI, and the start-up of ``dlq --help`` and of
    ``python -c "import duckdb"``. Median of three. Target: under 1 s.
replay
    ``dlq replay`` as the real CLI, whole process against whole process
    (start-up included), each replay on a fresh copy of an imported queue.
    4,000 items running ``sleep 0.02`` with ``-j 8`` beside ``xargs -P 8``
    running the same commands: overhead at most 2% (limit 5%). 5,000 items
    running ``true`` with ``-j 2``: items/s at least 70% of ``xargs -P 2``'s
    and at least 3 times GNU parallel's with ``--joblog`` (skipped, saying
    how to install it, where GNU parallel is missing). Ten items running
    ``true`` beside xargs: under 0.5 s, with ``dlq --help`` and a dry run
    for context. Peak memory (the child's own ru_maxrss) of replaying 1,000
    items of a queue of 1,000,000 pending, beside replaying all of a queue
    of 1,000: under 300 MB, and flat (at most 1.25x). Medians of rounds
    that alternate which side goes first: three with 20 ms commands, two
    with `true` (GNU parallel: one), two for memory, five after a warm-up
    for the small queue; about three minutes in all.
analytics
    ``dlq stats --json`` and ``dlq errors`` on a log of 10,000,000 events in
    sealed Parquet (2,500,000 items and two replays, written straight by
    DuckDB), each as the real CLI in a child process. Reference: the same
    figures computed by a hand-written DuckDB query over the same files, in
    a fresh ``python -c``, with the same signature macros; both sides must
    agree on every count before their times are compared. Medians of three
    rounds that alternate which side goes first. Target: within 1.5 times
    the reference. Peak memory of each is printed.
reliability
    Load and memory, one round each. ``dlq replay -j 2 -- true {item_id}``
    of a queue of 100,000 pending items beside ``xargs -P 2 -n 1 true`` over
    the same ids: items/s (at least 70% of xargs's) and peak memory (under
    300 MB); every item must end succeeded, by the summary and by ``dlq
    stats`` afterwards, or the benchmark fails. ``dlq import`` of
    10,000,000 items beside DuckDB reading the file into a table: at least
    300,000 items/s, and peak memory flat (at most 1.25x that of importing
    the 100,000). ``dlq stats --json`` on that log beside the same figures
    in plain DuckDB (all counts must agree): within 1.5 times. ``dlq
    verify`` of it beside pyarrow reading every row, and its peak memory
    flat against verifying the 100,000. ``--quick`` cuts these sizes a
    hundredfold. About a quarter of an hour on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench._analytics import bench_analytics
from bench._append import bench_append, bench_group
from bench._import import bench_import
from bench._list import bench_list
from bench._load import bench_reliability
from bench._replay import bench_replay
from bench._report import Figure, say, table
from bench._workspace import Workspace

BENCHMARKS: dict[str, Callable[[Workspace], list[Figure]]] = {
    "append": bench_append,
    "group": bench_group,
    "import": bench_import,
    "list": bench_list,
    "replay": bench_replay,
    "analytics": bench_analytics,
    "reliability": bench_reliability,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark names and options; exits with 2 on a bad command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Speed and memory figures of dlq, each beside a reference "
        "measured in the same run.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="cut every size tenfold: a smoke run whose verdicts are indicative",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(
            f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, print the table; 1 if any crashed."""
    args = parse_args(argv)
    # In the listed order whatever the command line's: `list` reuses the log
    # that `import` leaves.
    names = [name for name in BENCHMARKS if name in args.names] or list(BENCHMARKS)
    figures: list[Figure] = []
    crashed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlq-bench-") as scratch:
        space = Workspace(Path(scratch), scale=0.1 if args.quick else 1.0)
        for name in names:
            say(f"{name} ...")
            begun = time.perf_counter()
            try:
                figures += BENCHMARKS[name](space)
            except Exception:
                crashed.append(name)
                say(f"{name} crashed:\n{traceback.format_exc()}")
            else:
                say(f"{name} done in {time.perf_counter() - begun:.0f} s")

    print()
    if args.quick:
        print(
            "QUICK RUN: sizes cut tenfold (reliability's a hundredfold); targets "
            "are for the full sizes."
        )
    if figures:
        print(table(figures))
    for name in crashed:
        print(f"{name}: CRASHED (see the traceback above)")
    print(f"\n{len(names)} benchmarks in {time.perf_counter() - started:.0f} s")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
