"""Turning Arrow tables and results into what a person or a pipe reads."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "csv", "json", "jsonl")

_json = msgspec.json.Encoder()

# The width of what people read, and of a cell that is not given more.
_WIDTH = 160
_CELL_WIDTH = 60


def to_plain(value: Any) -> Any:
    """A value as JSON-friendly data (timestamps become RFC 3339 strings)."""
    if isinstance(value, datetime):
        # Always six digits, as the log stores times: isoformat() would drop
        # them at a whole second, and such a time would neither match its
        # stored text nor sort among the others.
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return [to_plain(row) for row in table.to_pylist()]


def render(table: pa.Table, fmt: str) -> str:
    """Render a result table in one of :data:`FORMATS`."""
    if fmt == "csv":
        return _csv(table)
    if fmt == "json":
        return _json.encode(rows_of(table)).decode() + "\n"
    if fmt == "jsonl":
        return "".join(_json.encode(row).decode() + "\n" for row in rows_of(table))
    return table_text(table)


def _csv(table: pa.Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_cell(value) for value in to_plain(row).values()])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return _json.encode(value).decode()
    return str(value)


def table_text(
    table: pa.Table,
    *,
    title: str | None = None,
    whole: Iterable[str] = (),
    wide: Iterable[str] = (),
) -> str:
    """A table for people: aligned columns, long cells cut to fit, except in
    the ``whole`` columns (ids a person copies), which are never cut. Cells
    are cut at 60 characters, or in the ``wide`` columns only where the
    table would not fit the width."""
    rows = [[_short(value) for value in row.values()] for row in table.to_pylist()]
    view = Table(title=title, show_lines=False, header_style="bold")
    kept, stretched = set(whole), set(wide)
    widths = [
        max([len(name), *(len(row[index]) for row in rows)])
        for index, name in enumerate(table.column_names)
    ]
    # What the other columns leave of the width (each adds 3 for its border
    # and padding), shared by the wide ones.
    narrow = [
        width if name in kept else min(width, _CELL_WIDTH)
        for name, width in zip(table.column_names, widths, strict=True)
        if name not in stretched
    ]
    spare = _WIDTH - 1 - sum(width + 3 for width in narrow)
    share = max(_CELL_WIDTH, spare // max(len(stretched), 1) - 3)
    # Names and cells go in as Text, never as strings, which rich would read
    # as markup: a value such as "[/x]" would fail the command, "[red]" vanish.
    # Limitation: a cell holding a newline or tab shows only up to it, with an
    # ellipsis, because a table row is one line; --json or --format jsonl give
    # such values whole.
    for index, name in enumerate(table.column_names):
        if name in kept:
            view.add_column(Text(name), no_wrap=True, min_width=widths[index])
        else:
            limit = share if name in stretched else _CELL_WIDTH
            view.add_column(
                Text(name), overflow="ellipsis", max_width=limit, no_wrap=True
            )
    for row in rows:
        view.add_row(*map(Text, row))
    return capture(view)


def _short(value: Any) -> str:
    text = _cell(to_plain(value))
    first, _, rest = text.partition("\n")
    return first + (" …" if rest else "")


def capture(renderable: Any) -> str:
    """What rich prints for ``renderable``, as text without colour codes."""
    console = Console(
        file=io.StringIO(), width=_WIDTH, color_system=None, soft_wrap=False
    )
    console.print(renderable)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """Aligned ``key: value`` lines."""
    pairs = [(key, _cell(to_plain(value))) for key, value in pairs]
    width = max((len(key) for key, _ in pairs), default=0)
    return "".join(f"{key + ':':<{width + 1}} {value}\n" for key, value in pairs)


def render_json(document: Any) -> str:
    """One JSON document on one line."""
    return _json.encode(to_plain(document)).decode() + "\n"


# The columns of an item's timeline, as `dlq show` draws it.
TIMELINE_COLUMNS = ("ts", "type", "attempt", "run_id", "by", "exit_code", "detail")


def timeline_text(events: pa.Table) -> str:
    """An item's events as a timeline: one line each, oldest first.

    ``detail`` is the first line of the event's error, or else of its reason
    (why a person discarded, requeued or amended it, or why it was
    quarantined); a longer text ends with an ellipsis.
    """
    rows = [
        {
            "ts": to_plain(row["ts"]),
            "type": row["type"],
            "attempt": _cell(row["attempt"]),
            "run_id": row["run_id"] or "",
            "by": f"{row['user']}@{row['host']}",
            "exit_code": _cell(row["exit_code"])
            if row["signal"] is None
            else f"signal {row['signal']}",
            "detail": row["error"] if row["error"] is not None else row["reason"] or "",
        }
        for row in events.to_pylist()
    ]
    shown = pa.Table.from_pylist(
        rows, schema=pa.schema([(name, pa.string()) for name in TIMELINE_COLUMNS])
    )
    return table_text(shown, title="timeline", whole=["ts", "type"])
