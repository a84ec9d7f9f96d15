"""`dlq export`: the items or events of the queue, to a file or to Prodigy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import analytics
from dlq._app import (
    AsOfOption,
    LogOption,
    command,
    connection,
    fail,
    note,
    require_text,
)

_EXPORT_EPILOG = """
Examples:

  dlq export items.parquet --format parquet

  dlq export pending.csv --format csv --where "status = 'pending'"

  dlq export timeouts.jsonl --events --where "last_error_type = 'timeout'"

  dlq export ~/.prodigy --format prodigy --where "status <> 'succeeded'" --force
"""


@command("export", epilog=_EXPORT_EPILOG)
def export(
    out: Annotated[
        Path,
        typer.Argument(
            metavar="OUT", help="The file to write (for prodigy, the base directory)."
        ),
    ],
    format_: Annotated[
        str,
        typer.Option("--format", help="jsonl, json, csv, parquet or prodigy."),
    ] = "jsonl",
    where: Annotated[
        str | None,
        typer.Option(help="A SQL condition over the `items` view: only those items."),
    ] = None,
    events: Annotated[
        bool,
        typer.Option(
            "--events", help="Write the raw events (of the items --where selects)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Write the items (or events) to a file a colleague can open, or to Prodigy.

    Parquet keeps the column types; csv, json and jsonl give times as RFC 3339
    text. prodigy writes OUT/mapreduce/dlq/<job_id>/items/<item_id>.json and
    an index.json per job (docs/prodigy.md). The file is written aside and
    renamed into place, so a failed export leaves nothing at OUT.
    """
    require_text({"--where": where, "--as-of": as_of, "OUT": str(out)})
    if format_ not in analytics.EXPORT_FORMATS:
        formats = ", ".join(analytics.EXPORT_FORMATS)
        raise fail(f"unknown --format {format_!r}; use one of {formats}", 2)
    if events and format_ == "prodigy":
        raise fail("--events cannot be written as prodigy, which holds items", 2)
    if out.resolve().is_relative_to(log.resolve()):
        raise fail("OUT must not be inside the log directory", 2)
    if (out.exists() or out.is_symlink()) and not force:
        raise fail(f"{out} exists already; give --force to replace it", 2)
    with connection(log, as_of) as conn:
        result = analytics.export_rows(
            conn, out, fmt=format_, where=where, events=events, force=force
        )
    what = "events" if events else "items"
    jobs = f" in {result.jobs} jobs" if format_ == "prodigy" else ""
    note(f"wrote {result.rows} {what}{jobs} to {result.path} ({format_})")
