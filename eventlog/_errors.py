"""Errors raised by the event log.

EventLogError              base of everything below
├── LogNotFoundError       no log at the given path
├── DamagedLogError        a stored segment cannot be read (names file and line)
├── InvalidRecordError     an input record is not a valid item (names the line)
├── ProdigyFormatError     a Prodigy dead-letter queue, or a file in it, is not valid
├── LogBusyError           an exclusive lock is held by another process
└── WriterFailedError      the disk refused a write; nothing after it was kept
"""

from __future__ import annotations


class EventLogError(Exception):
    """Base class of the event log's errors."""


class LogNotFoundError(EventLogError):
    """There is no event log at the given path."""


class DamagedLogError(EventLogError):
    """A segment holds data that is not a valid event.

    Attributes:
        path: the damaged file.
        line: the 1-based line number in a JSONL segment, or None.
    """

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"damaged log segment {where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class InvalidRecordError(EventLogError):
    """An imported record is not a valid item.

    Attributes:
        line: the 1-based line number in the input.
    """

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}, line {line}: {problem}; nothing was imported")
        self.source = source
        self.line = line
        self.problem = problem


class ProdigyFormatError(EventLogError):
    """A path is not a Prodigy dead-letter queue, or one of its files is not
    valid (the message names the file and why)."""


class InvalidItemError(EventLogError):
    """A value given for an item (its id, its payload, ...) is not valid."""


class LogBusyError(EventLogError):
    """Another process holds the lock this operation needs."""


class WriterFailedError(EventLogError):
    """Writing to the log failed; the events of the failed append were not kept."""
