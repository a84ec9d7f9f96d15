"""Errors raised by the replay engine.

ReplayError            base of everything below
└── ReplayUsageError   the options or the command cannot work (bad usage)
"""

from __future__ import annotations


class ReplayError(Exception):
    """Base class of the replay engine's errors."""


class ReplayUsageError(ReplayError):
    """The options given to a replay cannot work; nothing was run."""
