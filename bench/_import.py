"""Benchmark 3: `dlq import` of a million items, its speed and its memory."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench._report import (
    INFO,
    Figure,
    count,
    judge,
    mebibytes,
    median,
    per_second,
    rate,
    ratio,
    say,
    seconds,
)
from bench._workspace import ChildRun, Workspace, dlq, python_c, run_child

_REPEATS = 3
TARGET_RATE = 300_000
# "Must not grow with input size": ten times the input may cost at most this
# much more peak memory (allocator and Parquet footer noise).
GROWTH_ALLOWED = 1.25

DUCKDB_READ = """\
import sys, duckdb
con = duckdb.connect()
con.execute(
    "CREATE TABLE t AS SELECT * FROM read_json(?, format = 'newline_delimited')",
    [sys.argv[1]],
)
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
"""


def read_lines(path: Path) -> tuple[int, float]:
    """Count the lines of ``path`` as ``wc -l`` does; return them and seconds."""
    lines = 0
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines, time.perf_counter() - started


def import_items(space: Workspace, items: Path, label: str) -> tuple[ChildRun, Path]:
    """Import ``items`` into a fresh log with the real CLI, in a child."""
    log_dir = space.fresh(label)
    run = run_child(dlq("import", str(items), "--log", str(log_dir)), log_dir)
    return run, log_dir


def bench_import(space: Workspace) -> list[Figure]:
    """`dlq import` items/s and peak memory beside DuckDB reading the file.

    Every run is a child process, timed from spawn to exit, so start-up is
    counted on both sides. Peak memory is each child's own ru_maxrss.
    """
    total = space.size(1_000_000)
    small = space.size(100_000)
    items = space.items_file(total)
    small_items = space.items_file(small)

    lines, read_time = read_lines(items)  # also warms the page cache
    size = items.stat().st_size
    say(f"  wc -l style read: {lines:,} lines in {seconds(read_time)}")
    cli_idle = run_child(dlq("--help"), space.fresh("help"))

    # In turn, so that the machine's slow and fast moments fall on all three.
    runs, small_runs, duck_runs = [], [], []
    for index in range(_REPEATS):
        run, log_dir = import_items(space, items, f"import-{total}")
        runs.append(run)
        say(
            f"  dlq import {total:,} items: {seconds(run.wall)}, "
            f"peak {mebibytes(run.peak_rss)}; {run.stderr.strip()}"
        )
        if index < _REPEATS - 1:
            shutil.rmtree(log_dir)
        else:
            space.imported_logs[total] = log_dir  # for the list benchmark

        duck = run_child(python_c(DUCKDB_READ, str(items)), space.fresh("duck"))
        duck_runs.append(duck)
        say(
            f"  duckdb read_json: {seconds(duck.wall)}, peak {mebibytes(duck.peak_rss)}"
        )

        run, log_dir = import_items(space, small_items, f"import-{small}")
        small_runs.append(run)
        shutil.rmtree(log_dir)

    wall = median([run.wall for run in runs])
    items_per_s = per_second(total, wall)
    duck_wall = median([run.wall for run in duck_runs])
    duck_per_s = per_second(total, duck_wall)
    peak, small_peak = median_rss(runs), median_rss(small_runs)
    growth = peak / small_peak
    return [
        Figure(
            "3 import",
            f"dlq import {count(total)}: {rate(items_per_s, 'items/s')} "
            f"({seconds(wall)})",
            f"DuckDB read_json into a table: {rate(duck_per_s, 'rows/s')} "
            f"({seconds(duck_wall)})",
            ratio(items_per_s / duck_per_s),
            f">= {count(TARGET_RATE)} items/s",
            judge(items_per_s >= TARGET_RATE),
        ),
        Figure(
            "3 import",
            "dlq import (as above)",
            f"raw read, wc -l style: {rate(per_second(lines, read_time), 'lines/s')} "
            f"({rate(per_second(size, read_time) / 2**20, 'MiB/s')})",
            ratio(items_per_s / per_second(lines, read_time)),
            "none set (context)",
            INFO,
        ),
        Figure(
            "3 import",
            f"peak memory, {count(total)} items: {mebibytes(peak)}",
            f"{count(small)} items: {mebibytes(small_peak)}",
            ratio(growth),
            f"flat: <= {GROWTH_ALLOWED:.2f}x for 10x items",
            judge(growth <= GROWTH_ALLOWED),
        ),
        Figure(
            "3 import",
            f"peak memory, `dlq --help` (start-up): {mebibytes(cli_idle.peak_rss)}",
            f"DuckDB read_json, same file: {mebibytes(median_rss(duck_runs))}",
            "",
            "none set (context)",
            INFO,
        ),
    ]


def median_rss(runs: list[ChildRun]) -> float:
    """The median peak memory of some runs, in bytes."""
    return median([run.peak_rss for run in runs])
