"""Errors raised by the analytics package (the tree is in the package docstring)."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base class of the analytics package's errors."""


class QueryError(AnalyticsError):
    """A query could not run: a mistake in its SQL or in its arguments."""


class ForbiddenQueryError(QueryError):
    """A query was refused because it could write, configure or escape the log."""
