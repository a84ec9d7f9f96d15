"""Benchmark 7: dlq under load: a big replay and a log of ten million events.

Two parts, each a whole process timed from spawn to exit with its own peak
memory (ru_maxrss), beside a reference measured here and now:

- ``dlq replay -j 2 -- true {item_id}`` over a queue of 100,000 pending
  items, beside ``xargs -P 2 -n 1 true`` over the same 100,000 ids. The
  replay counts only if every item ended succeeded, by its JSON summary and
  by ``dlq stats`` on the log afterwards: a replay that lost or failed an
  item stops the benchmark.
- ``dlq import`` of 10,000,000 items (one ``item_enqueued`` event each),
  beside DuckDB reading the same JSONL into a table; then ``dlq stats
  --json`` on that log beside the same figures in plain DuckDB over its
  Parquet files (both must agree on every count); then ``dlq verify``
  beside pyarrow reading every row of the same files.

The targets are those the other benchmarks judge by, imported from them:
import throughput, replay items/s as a share of xargs's, replay peak memory,
stats time against its reference, and memory that stays flat as the input
grows (judged against the import of the 100,000-item queue and the verify of
its log, from the same run).

One round of each: at these sizes a round takes minutes, so the figures are
noisier than the medians of the other benchmarks.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench._analytics import (
    PLAIN_STATS,
    TARGET_RATIO,
    check_equal_stats,
    signature_macros,
)
from bench._import import (
    DUCKDB_READ,
    GROWTH_ALLOWED,
    TARGET_RATE,
    import_items,
    read_lines,
)
from bench._replay import (
    FAST_JOBS,
    TARGET_PEAK_BYTES,
    TARGET_XARGS_SHARE,
    argument_file,
    item_ids,
    replay_summary,
    run_xargs,
)
from bench._report import (
    INFO,
    Figure,
    count,
    judge,
    mebibytes,
    per_second,
    percent,
    rate,
    ratio,
    say,
    seconds,
)
from bench._workspace import ChildRun, Workspace, dlq, python_c, run_child

_LABEL = "7 reliability"
_REPLAY_ITEMS = 100_000
_EVENTS = 10_000_000

# Every row of the sealed files, all columns, a batch at a time: the reading
# `dlq verify` cannot do without, before it hashes anything.
_ARROW_READ = """\
import glob, sys
import pyarrow.parquet as pq
rows = 0
for path in sorted(glob.glob(sys.argv[1])):
    for batch in pq.ParquetFile(path).iter_batches():
        rows += batch.num_rows
print(rows)
"""


def bench_reliability(space: Workspace) -> list[Figure]:
    """A 100,000-item replay beside xargs; import, stats, verify of 10M events."""
    items = _sized(space, _REPLAY_ITEMS)
    queue_import, queue = import_items(
        space, space.items_file(items), f"load-queue-{items}"
    )
    _check_imported(queue_import, items)
    say(f"  imported a queue of {items:,} items in {seconds(queue_import.wall)}")
    queue_verify = _verify(space, queue, items)
    figures = _bench_replay(space, queue, items)
    shutil.rmtree(queue)
    return figures + _bench_big_log(space, items, queue_import, queue_verify)


def _sized(space: Workspace, full: int) -> int:
    """``full``, cut a hundredfold by ``--quick`` where the others cut tenfold.

    These sizes are ten times those of the other benchmarks; a tenfold cut
    would still take minutes, too long for a smoke run.
    """
    return space.size(round(full * space.scale), least=100)


# -- a replay of 100,000 items ---------------------------------------------


def _bench_replay(space: Workspace, queue: Path, items: int) -> list[Figure]:
    """`dlq replay` of every item of ``queue`` beside xargs, then checked."""
    jobs = str(FAST_JOBS)
    arguments = argument_file(space, item_ids(items))
    xargs = run_xargs(space, arguments, FAST_JOBS, "true")
    say(f"  xargs -P {jobs} -n 1 true, {items:,} ids: {seconds(xargs.wall)}")
    args = ("-j", jobs, "--", "true", "{item_id}")
    replay = run_child(
        dlq("replay", "--json", "--log", str(queue), *args), space.fresh("replay")
    )
    say(
        f"  dlq replay -j {jobs} -- true, {items:,} items: {seconds(replay.wall)}, "
        f"peak {mebibytes(replay.peak_rss)}"
    )
    _check_replayed(space, queue, items, replay_summary(replay.stdout, args))

    ours = per_second(items, replay.wall)
    theirs = per_second(items, xargs.wall)
    return [
        Figure(
            _LABEL,
            f"dlq replay -j {jobs}, {count(items)} x true: {rate(ours, 'items/s')} "
            f"({seconds(replay.wall)})",
            f"xargs -P {jobs} -n 1, same ids: {rate(theirs, 'items/s')} "
            f"({seconds(xargs.wall)})",
            percent(ours / theirs),
            f">= {percent(TARGET_XARGS_SHARE)} of xargs",
            judge(ours >= TARGET_XARGS_SHARE * theirs),
        ),
        Figure(
            _LABEL,
            f"peak memory of that replay: {mebibytes(replay.peak_rss)}",
            f"of xargs: {mebibytes(xargs.peak_rss)}",
            "",
            f"< {TARGET_PEAK_BYTES // 10**6} MB ({mebibytes(TARGET_PEAK_BYTES)})",
            judge(replay.peak_rss < TARGET_PEAK_BYTES),
        ),
    ]


def _check_replayed(
    space: Workspace, log_dir: Path, items: int, summary: dict[str, Any]
) -> None:
    """Stop the benchmark unless every item of the queue ended succeeded.

    Both the replay's own summary and `dlq stats` over the log afterwards
    must say so: an item the summary counted but the log lost is caught too.

    Raises:
        RuntimeError: naming every count that is not what it must be.
    """
    stats = json.loads(
        run_child(
            dlq("stats", "--json", "--log", str(log_dir)), space.fresh("stats")
        ).stdout
    )
    wanted = {
        "summary selected": (summary["selected"], items),
        "summary succeeded": (summary["succeeded"], items),
        "summary failed": (summary["failed"], 0),
        "summary interrupted": (summary["interrupted"], 0),
        "summary quarantined": (summary["quarantined"], 0),
        "summary status": (summary["status"], "succeeded"),
        "stats items": (stats["items"]["total"], items),
        "stats succeeded items": (stats["items"]["succeeded"], items),
        "stats pending items": (stats["items"]["pending"], 0),
        "stats attempts": (stats["attempts"]["total"], items),
        "stats succeeded attempts": (stats["attempts"]["succeeded"], items),
    }
    wrong = [
        f"{name} {got!r}, not {want!r}"
        for name, (got, want) in wanted.items()
        if got != want
    ]
    if wrong:
        raise RuntimeError(
            f"the replay of {items:,} items did not end with every item "
            f"succeeded exactly once: {'; '.join(wrong)}"
        )
    say(f"  all {items:,} items succeeded, by the summary and by dlq stats")


# -- ten million events ----------------------------------------------------


def _bench_big_log(
    space: Workspace, queue_items: int, queue_import: ChildRun, queue_verify: ChildRun
) -> list[Figure]:
    """Import, stats and verify of a big log, beside references and the queue."""
    events = _sized(space, _EVENTS)
    source = space.items_file(events)
    lines, _ = read_lines(source)  # also warms the page cache for both sides
    if lines != events:
        raise RuntimeError(f"{source} has {lines:,} lines, not {events:,}")

    duck = run_child(python_c(DUCKDB_READ, str(source)), space.fresh("duck"))
    say(f"  duckdb read_json: {seconds(duck.wall)}, peak {mebibytes(duck.peak_rss)}")
    # Its progress bar comes first on stdout when the read takes a while.
    read = duck.stdout.strip().splitlines()[-1]
    if read != str(events):
        raise RuntimeError(f"DuckDB read {read!r} rows, not {events:,}")
    imported, log_dir = import_items(space, source, f"load-log-{events}")
    _check_imported(imported, events)
    say(
        f"  dlq import {events:,} items: {seconds(imported.wall)}, "
        f"peak {mebibytes(imported.peak_rss)}"
    )
    if any((log_dir / "segments").iterdir()):
        # The reference reads only the sealed Parquet files.
        raise RuntimeError(f"the import left live segments in {log_dir / 'segments'}")
    pattern = str(log_dir / "sealed" / "*.parquet")

    stats = run_child(dlq("stats", "--json", "--log", str(log_dir)), log_dir)
    plain = run_child(
        python_c(PLAIN_STATS, pattern, signature_macros()), space.fresh("plain")
    )
    for name, run in (("dlq stats", stats), ("reference", plain)):
        say(f"  {name}: {seconds(run.wall)}, peak {mebibytes(run.peak_rss)}")
    check_equal_stats(stats, plain, f"stats of {events:,} imported events")
    total = json.loads(stats.stdout)["items"]["total"]
    if total != events:
        raise RuntimeError(f"dlq stats counts {total:,} items, not {events:,}")

    verify = _verify(space, log_dir, events)
    arrow = run_child(python_c(_ARROW_READ, pattern), space.fresh("arrow"))
    say(f"  pyarrow read of every row: {seconds(arrow.wall)}")
    if int(arrow.stdout) != events:
        raise RuntimeError(f"pyarrow read {arrow.stdout.strip()} rows, not {events:,}")
    shutil.rmtree(log_dir)

    import_rate = per_second(events, imported.wall)
    duck_rate = per_second(events, duck.wall)
    import_growth = imported.peak_rss / queue_import.peak_rss
    verify_growth = verify.peak_rss / queue_verify.peak_rss
    times = f"{count(events // queue_items)}x"
    return [
        Figure(
            _LABEL,
            f"dlq import {count(events)}: {rate(import_rate, 'items/s')} "
            f"({seconds(imported.wall)})",
            f"DuckDB read_json into a table: {rate(duck_rate, 'rows/s')} "
            f"({seconds(duck.wall)})",
            ratio(import_rate / duck_rate),
            f">= {count(TARGET_RATE)} items/s",
            judge(import_rate >= TARGET_RATE),
        ),
        Figure(
            _LABEL,
            f"peak memory of that import: {mebibytes(imported.peak_rss)}",
            f"import of {count(queue_items)}: {mebibytes(queue_import.peak_rss)}; "
            f"DuckDB: {mebibytes(duck.peak_rss)}",
            ratio(import_growth),
            f"flat: <= {GROWTH_ALLOWED:.2f}x for {times} items",
            judge(import_growth <= GROWTH_ALLOWED),
        ),
        Figure(
            _LABEL,
            f"dlq stats --json, {count(events)} events: {seconds(stats.wall)}",
            f"same figures, plain DuckDB in python -c: {seconds(plain.wall)}",
            ratio(stats.wall / plain.wall),
            f"<= {TARGET_RATIO}x the reference",
            judge(stats.wall <= TARGET_RATIO * plain.wall),
        ),
        Figure(
            _LABEL,
            f"peak memory of dlq stats: {mebibytes(stats.peak_rss)}",
            f"of the reference: {mebibytes(plain.peak_rss)}",
            ratio(stats.peak_rss / plain.peak_rss),
            "none set (context)",
            INFO,
        ),
        Figure(
            _LABEL,
            f"dlq verify, {count(events)} events: "
            f"{rate(per_second(events, verify.wall), 'events/s')} "
            f"({seconds(verify.wall)})",
            f"pyarrow reading every row: {seconds(arrow.wall)}",
            ratio(verify.wall / arrow.wall),
            "none set (context)",
            INFO,
        ),
        Figure(
            _LABEL,
            f"peak memory of dlq verify: {mebibytes(verify.peak_rss)}",
            f"verify of {count(queue_items)} events: "
            f"{mebibytes(queue_verify.peak_rss)}",
            ratio(verify_growth),
            f"flat: <= {GROWTH_ALLOWED:.2f}x for {times} events",
            judge(verify_growth <= GROWTH_ALLOWED),
        ),
    ]


def _check_imported(run: ChildRun, items: int) -> None:
    """Stop the benchmark unless `dlq import` says it imported ``items``."""
    said = re.search(r"imported (\d+) items", run.stderr)
    if said is None or int(said.group(1)) != items:
        raise RuntimeError(
            f"dlq import of {items:,} items said {run.stderr.strip()[-500:]!r}"
        )


def _verify(space: Workspace, log_dir: Path, events: int) -> ChildRun:
    """`dlq verify --json` of ``log_dir``, which must be intact with ``events``.

    Raises:
        RuntimeError: the log is not intact, or holds another number of events.
    """
    run = run_child(dlq("verify", "--json", "--log", str(log_dir)), log_dir)
    report = json.loads(run.stdout)
    if not report["clean"] or report["events"] != events:
        raise RuntimeError(
            f"dlq verify of a log of {events:,} events said: {run.stdout[:2000]}"
        )
    say(
        f"  dlq verify, {events:,} events: {seconds(run.wall)}, "
        f"peak {mebibytes(run.peak_rss)}"
    )
    return run
