"""The replay engine, and the changes a person makes to the queue by hand.

:func:`replay` runs failed items again as real subprocesses, with bounded
parallelism, retries, timeouts and rate limits, recording every start and
outcome as events; it is safe to interrupt and to resume after a crash.
:func:`plan_replay` says what a replay would do.

:func:`discard_items`, :func:`requeue_items` and :func:`amend_item` take
items out of the queue, put them back with a fresh attempt budget, and
change a payload before the next replay; each returns a
:class:`ManageResult`, and none writes while a replay runs.

Errors::

    ReplayError               base of everything below
    ├── ReplayUsageError      a replay's options or command cannot work
    └── ManageError           discard, requeue or amend cannot apply
        └── ManageUsageError  their arguments cannot work
"""

from reprocessor._attempt import Outcome, last_meaningful_line, run_attempt
from reprocessor._command import CommandTemplate, MissingValueError
from reprocessor._engine import ReplaySummary, new_run_id, replay
from reprocessor._errors import (
    ManageError,
    ManageUsageError,
    ReplayError,
    ReplayUsageError,
)
from reprocessor._manage import (
    Change,
    ManageResult,
    amend_item,
    discard_items,
    requeue_items,
)
from reprocessor._options import ReplayOptions, Selection
from reprocessor._plan import ReplayPlan, plan_replay

__all__ = [
    "Change",
    "CommandTemplate",
    "ManageError",
    "ManageResult",
    "ManageUsageError",
    "MissingValueError",
    "Outcome",
    "ReplayError",
    "ReplayOptions",
    "ReplayPlan",
    "ReplaySummary",
    "ReplayUsageError",
    "Selection",
    "amend_item",
    "discard_items",
    "last_meaningful_line",
    "new_run_id",
    "plan_replay",
    "replay",
    "requeue_items",
    "run_attempt",
]
