"""Errors raised by the replay engine and the queue-management commands.

ReplayError               base of everything below
├── ReplayUsageError      the options or the command cannot work (bad usage)
└── ManageError           discard, requeue or amend cannot apply: an unknown
    │                     item, nothing to change, a path through a value
    │                     that is not an object; nothing was written
    └── ManageUsageError  their arguments cannot work (bad usage)
"""

from __future__ import annotations


class ReplayError(Exception):
    """Base class of the replay engine's errors."""


class ReplayUsageError(ReplayError):
    """The options given to a replay cannot work; nothing was run."""


class ManageError(ReplayError):
    """A queue-management command cannot apply to the items; nothing was written."""


class ManageUsageError(ManageError):
    """The arguments of a queue-management command cannot work; nothing was written."""
