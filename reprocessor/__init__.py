"""The replay engine: runs failed items again as real subprocesses, with
bounded parallelism, retries, timeouts and rate limits, recording every
start and outcome as events; safe to interrupt and to resume after a crash.
"""

from reprocessor._attempt import Outcome, last_meaningful_line, run_attempt
from reprocessor._command import CommandTemplate, MissingValueError
from reprocessor._engine import ReplaySummary, new_run_id, replay
from reprocessor._errors import ReplayError, ReplayUsageError
from reprocessor._options import ReplayOptions, Selection
from reprocessor._plan import ReplayPlan, plan_replay

__all__ = [
    "CommandTemplate",
    "MissingValueError",
    "Outcome",
    "ReplayError",
    "ReplayOptions",
    "ReplayPlan",
    "ReplaySummary",
    "ReplayUsageError",
    "Selection",
    "last_meaningful_line",
    "new_run_id",
    "plan_replay",
    "replay",
    "run_attempt",
]
