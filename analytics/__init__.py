"""The read side of dlq: ask SQL about the event log.

:func:`connect` opens a log as an in-memory DuckDB database with two views:
``events`` (every event, in order) and ``items`` (one row per item, derived
from its events every time it is read; nothing is stored). The connection is
sandboxed, and :func:`run_query` runs one person's read-only statement on it.
:func:`list_items` and :func:`show_item` are the common questions, asked for
you.

Errors::

    AnalyticsError              base of everything below
    ├── (raised by connect)     DuckDB could not read a sealed segment
    └── QueryError              a query could not run: wrong SQL (DuckDB's
        │                       message on one line), an unknown status...
        └── ForbiddenQueryError the query was refused: it is not a single
                                read-only statement, or it reached for a
                                file outside the log

:func:`connect` also lets the event log's own errors through unchanged
(:class:`eventlog.LogNotFoundError`, :class:`eventlog.DamagedLogError`).
"""

from analytics._connect import connect
from analytics._errors import AnalyticsError, ForbiddenQueryError, QueryError
from analytics._query import ItemHistory, list_items, run_query, show_item
from analytics._selection import (
    count_pending,
    iter_pending,
    mean_attempt_ms,
    open_attempts,
    open_runs,
)
from analytics._views import ITEM_STATUSES

__all__ = [
    "ITEM_STATUSES",
    "AnalyticsError",
    "ForbiddenQueryError",
    "ItemHistory",
    "QueryError",
    "connect",
    "count_pending",
    "iter_pending",
    "list_items",
    "mean_attempt_ms",
    "open_attempts",
    "open_runs",
    "run_query",
    "show_item",
]
