"""Small helpers for writing SQL text and reporting DuckDB's errors."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC, as everywhere in dlq."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def one_line(exc: BaseException) -> str:
    """DuckDB's message for ``exc`` on one line, without the caret context.

    DuckDB follows its message with the offending SQL line and a caret under
    the error (``LINE 1: ...``), which makes no sense on one line; a hint such
    as ``Did you mean "items"?`` is kept.
    """
    kept: list[str] = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith("LINE "):
            break
        if line:
            kept.append(line)
    return " ".join(kept) or type(exc).__name__
