"""The analytics package's public face."""

from __future__ import annotations

import analytics


def test_the_public_names_are_exactly_these() -> None:
    assert set(analytics.__all__) == {
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
    }
    public = {name for name in vars(analytics) if not name.startswith("_")}
    assert public == set(analytics.__all__)


def test_refused_queries_are_query_errors_and_all_are_analytics_errors() -> None:
    assert issubclass(analytics.ForbiddenQueryError, analytics.QueryError)
    assert issubclass(analytics.QueryError, analytics.AnalyticsError)


def test_every_public_function_says_what_it_does() -> None:
    for name in analytics.__all__:
        value = getattr(analytics, name)
        if callable(value):
            assert value.__doc__, name
