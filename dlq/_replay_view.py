"""How `dlq replay` shows its progress and its summary."""

from __future__ import annotations

import sys
import time
from typing import Any

import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

import eventlog
import reprocessor
from dlq import _render

# Without a terminal, one progress line is logged at most this often.
_LOG_EVERY_S = 10.0


def run_with_progress(
    log: eventlog.EventLog,
    options: reprocessor.ReplayOptions,
    selection: reprocessor.Selection,
) -> reprocessor.ReplaySummary:
    """Run a replay, showing progress on stderr (a bar on a terminal)."""
    if sys.stderr.isatty():
        return _with_bar(log, options, selection)
    return _with_log_lines(log, options, selection)


def _with_bar(
    log: eventlog.EventLog,
    options: reprocessor.ReplayOptions,
    selection: reprocessor.Selection,
) -> reprocessor.ReplaySummary:
    console = Console(stderr=True)
    columns = (
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("replay", total=None, detail="")
        started = time.monotonic()

        def show(summary: reprocessor.ReplaySummary) -> None:
            done = summary.succeeded + summary.failed + summary.quarantined
            rate = done / max(time.monotonic() - started, 1e-9)
            bar.update(
                task,
                completed=done,
                total=summary.expected,
                detail=f"ok {summary.succeeded}  failed {summary.failed}  {rate:.1f}/s",
            )

        return trio.run(
            lambda: reprocessor.replay(
                log, options, selection, progress=show, count_total=True
            )
        )


def _with_log_lines(
    log: eventlog.EventLog,
    options: reprocessor.ReplayOptions,
    selection: reprocessor.Selection,
) -> reprocessor.ReplaySummary:
    started = last = time.monotonic()

    def show(summary: reprocessor.ReplaySummary) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < _LOG_EVERY_S:
            return
        last = now
        done = summary.succeeded + summary.failed + summary.quarantined
        print(
            f"replay: {done} done of {summary.selected} started, "
            f"{summary.succeeded} succeeded, {summary.failed} failed, "
            f"{done / (now - started):.1f} items/s",
            file=sys.stderr,
            flush=True,
        )

    return trio.run(lambda: reprocessor.replay(log, options, selection, progress=show))


def summary_text(summary: reprocessor.ReplaySummary, *, json: bool) -> str:
    """The replay's summary: a JSON document, or lines for a person."""
    document = summary.as_dict()
    if json:
        return _render.render_json(document)
    lines: list[tuple[str, Any]] = [
        ("run", summary.run_id),
        ("status", summary.status),
        ("selected", summary.selected),
        ("succeeded", summary.succeeded),
        ("failed", summary.failed),
        ("quarantined", summary.quarantined),
        ("skipped", summary.skipped),
        ("interrupted", summary.interrupted),
        ("duration", f"{summary.duration_s:.2f} s"),
        ("throughput", f"{summary.throughput:.1f} items/s"),
    ]
    if summary.recovered:
        lines.append(
            ("recovered", f"{summary.recovered} attempts left open by a dead run")
        )
    if summary.error_types:
        top = ", ".join(f"{k} {v}" for k, v in summary.error_types.most_common(5))
        lines.append(("errors", top))
    if summary.canary_failed:
        lines.append(
            ("canary", "too few canary items succeeded; the rest were not run")
        )
    return _render.key_values(lines)


def plan_text(plan: reprocessor.ReplayPlan, *, json: bool) -> str:
    """What a dry run found."""
    if json:
        return _render.render_json(plan.as_dict())
    estimate = (
        f"about {plan.estimated_s:.0f} s" if plan.estimated_s is not None else "unknown"
    )
    lines: list[tuple[str, Any]] = [
        ("would run", f"{plan.count} items"),
        ("first", ", ".join(plan.first_items) or "-"),
        ("estimated", estimate),
    ]
    return _render.key_values(lines) + "dry run: nothing was run or written\n"
