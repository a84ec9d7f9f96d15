"""The read side of dlq: ask SQL about the event log.

:func:`connect` opens a log as an in-memory DuckDB database with these views,
all derived from the events every time they are read (nothing is stored):
``events`` (every event, in order), ``items`` (one row per item),
``attempts`` (one row per attempt), ``failures`` (one row per failure, with
its error type and signature), ``runs`` (one row per replay run) and
``errors`` (one row per error signature). The SQL macros ``error_line``,
``error_text``, ``error_signature`` and ``classify_error`` are there too, for
one's own columns. The connection is sandboxed, and :func:`run_query` runs one
person's read-only statement on it.

:func:`list_items` and :func:`show_item` are the common questions, asked for
you, and :func:`select_items` finds the items `dlq discard`, `dlq requeue`
and `dlq amend` name; :func:`queue_stats` and :func:`top_errors` give `dlq
stats` and `dlq errors`; :func:`status_counts`, :func:`error_type_counts`,
:func:`failures_over_time`, :func:`top_signatures` and :func:`success_by_run`
are a notebook's, as Arrow tables. :func:`audit_trail` says who did what
to the queue, one row per act. :func:`classify_errors` gives error types
to failures held in Python by the same rules. :func:`export_rows` writes the
items or events to a file (Parquet, CSV, JSON, JSON Lines) or back to
Prodigy's dead-letter queue layout.

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

from analytics._audit import audit_trail
from analytics._classify import classify_errors
from analytics._connect import connect
from analytics._errors import AnalyticsError, ForbiddenQueryError, QueryError
from analytics._export import EXPORT_FORMATS, ExportResult, export_rows
from analytics._notebook import (
    error_type_counts,
    failures_over_time,
    status_counts,
    success_by_run,
    top_signatures,
)
from analytics._query import (
    ItemHistory,
    list_items,
    run_query,
    select_items,
    show_item,
)
from analytics._selection import (
    count_pending,
    iter_pending,
    mean_attempt_ms,
    open_attempts,
    open_runs,
)
from analytics._stats import StatsFilter, queue_stats, top_errors
from analytics._views import ITEM_STATUSES

__all__ = [
    "EXPORT_FORMATS",
    "ITEM_STATUSES",
    "AnalyticsError",
    "ExportResult",
    "ForbiddenQueryError",
    "ItemHistory",
    "QueryError",
    "StatsFilter",
    "audit_trail",
    "classify_errors",
    "connect",
    "count_pending",
    "error_type_counts",
    "export_rows",
    "failures_over_time",
    "iter_pending",
    "list_items",
    "mean_attempt_ms",
    "open_attempts",
    "open_runs",
    "queue_stats",
    "run_query",
    "select_items",
    "show_item",
    "status_counts",
    "success_by_run",
    "top_errors",
    "top_signatures",
]
