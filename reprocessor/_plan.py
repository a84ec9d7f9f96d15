"""A dry run: what a replay would do, from the log alone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import analytics
import eventlog
from reprocessor._command import CommandTemplate
from reprocessor._options import ReplayOptions, Selection

# How many item ids a dry run names.
SHOWN_ITEMS = 10


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay with these options would run."""

    count: int
    first_items: tuple[str, ...]
    mean_duration_ms: float | None
    estimated_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first_items": list(self.first_items),
            "mean_duration_ms": self.mean_duration_ms,
            "estimated_s": self.estimated_s,
            "dry_run": True,
        }


def plan_replay(
    log: eventlog.EventLog, options: ReplayOptions, selection: Selection
) -> ReplayPlan:
    """Count and name the items a replay would take, and estimate its duration.

    The estimate spreads the selected items over ``parallel`` slots at the mean
    duration of the attempts already in the log. Nothing is run or written.

    Raises:
        ReplayUsageError: an option or the command cannot work.
        analytics.QueryError: the selection's SQL is invalid.
    """
    options.check()
    if options.command:
        CommandTemplate.parse(options.command, shell=options.shell)
    conn = analytics.connect(log)
    try:
        found = analytics.count_pending(
            conn,
            item_ids=selection.item_ids,
            job_id=selection.job_id,
            where=selection.where,
            signature=selection.signature,
            limit=selection.limit,
            include_quarantined=selection.force,
            sample=SHOWN_ITEMS,
        )
        mean_ms = analytics.mean_attempt_ms(conn)
    finally:
        conn.close()
    count, first = found
    estimate = None
    if mean_ms is not None:
        waves = math.ceil(count / options.parallel)
        estimate = waves * mean_ms / 1000
    return ReplayPlan(count, tuple(first), mean_ms, estimate)
