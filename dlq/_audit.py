"""`dlq audit` and `dlq tail`: who did what to the queue, and what happens now."""

from __future__ import annotations

import json as json_module
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer

import analytics
import eventlog
from dlq import _render
from dlq._app import (
    AsOfOption,
    JsonOption,
    LogOption,
    command,
    connection,
    echo,
    moment,
    require_text,
)

# An event's error is cut to this many characters on its line in `dlq tail`.
_ERROR_WIDTH = 100

_AUDIT_EPILOG = """
Examples:

  dlq audit --since 2026-12-01 --user alice

  dlq audit --json > audit.json
"""


@command("audit", epilog=_AUDIT_EPILOG)
def audit(
    since: Annotated[
        str | None, typer.Option(help="Only acts from this time (ISO 8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only acts up to this time (ISO 8601).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's acts.")] = None,
    json: JsonOption = False,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Who did what to the queue and when: replays, imports, discards, amends.

    One row per act: a replay run with its options and results; items
    enqueued by one `dlq import` or `dlq add`; items discarded, requeued or
    amended together by one command, with the reason given.
    """
    require_text({"--since": since, "--until": until, "--user": user})
    with connection(log, as_of) as conn:
        table = analytics.audit_trail(
            conn,
            since=moment(since, "--since"),
            until=moment(until, "--until"),
            user=user,
        )
    if json:
        rows = _render.rows_of(table)
        for row in rows:
            if row["details"] is not None:
                row["details"] = json_module.loads(row["details"])
        echo(_render.render_json(rows))
        return
    echo(audit_text(table))


def audit_text(table: pa.Table) -> str:
    """The acts of :func:`analytics.audit_trail` as a table for people."""
    rows = [
        {
            "time": _render.to_plain(row["ts"])[:19].replace("T", " "),
            "by": f"{row['user']}@{row['host']}",
            "act": row["act"],
            "items": _items_text(row["items"], row["item_ids"]),
            "reason": row["reason"] or "",
            "details": _details_text(row),
        }
        for row in table.to_pylist()
    ]
    columns = ["time", "by", "act", "items", "reason", "details"]
    shown = pa.Table.from_pylist(
        rows, schema=pa.schema([(name, pa.string()) for name in columns])
    )
    return _render.table_text(
        shown, title="audit trail", whole=["time", "act"], wide=["details"]
    )


def _items_text(count: int, first: list[str]) -> str:
    more = ", …" if count > len(first) else ""
    return f"{count}: {', '.join(first)}{more}" if first else str(count)


def _details_text(row: dict[str, Any]) -> str:
    if row["details"] is None:
        return ""
    details = json_module.loads(row["details"])
    if row["act"] != "replay":
        return json_module.dumps(details, separators=(",", ":"), ensure_ascii=False)
    results = [f"{details['succeeded']} succeeded", f"{details['failed']} failed"]
    results += [
        f"{details[key]} {key}"
        for key in ("quarantined", "interrupted")
        if details.get(key)
    ]
    parts = [
        f"{details['status']}: {', '.join(results)}",
        f"run {row['run_id']}",
        *_options_text(details.get("options") or {}, details.get("selection") or {}),
        details["command"] or "each item's command",
    ]
    return "; ".join(parts)


def _options_text(options: dict[str, Any], selection: dict[str, Any]) -> list[str]:
    """The options that shape a run, as they would be typed."""
    shown = [f"-j {options.get('parallel')}"]
    for name, default in (
        ("attempts", 1),
        ("timeout", None),
        ("max_attempts", 10),
        ("rate", None),
        ("canary", None),
    ):
        if options.get(name, default) != default:
            shown.append(f"--{name.replace('_', '-')} {options[name]}")
    for name in ("job_id", "where", "signature", "limit"):
        if selection.get(name) is not None:
            flag = "--job" if name == "job_id" else f"--{name}"
            shown.append(f"{flag} {selection[name]}")
    if selection.get("item_ids"):
        shown.append(f"--item ({len(selection['item_ids'])} ids)")
    if selection.get("force"):
        shown.append("--force")
    return shown


_TAIL_EPILOG = """
Examples:

  dlq tail -n 50

  dlq tail --follow --json | jq -c 'select(.type == "attempt_failed")'

Ctrl-C ends `--follow`, with exit code 130 as for every command.
"""


@command("tail", epilog=_TAIL_EPILOG)
def tail(
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events as they come."),
    ] = False,
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="Print the last N events first.")
    ] = 10,
    interval: Annotated[
        float,
        typer.Option(min=0.01, help="Seconds between looks at the log with --follow."),
    ] = 0.2,
    json: JsonOption = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Print the log's last events, and with --follow each new one as it comes.

    Every event is printed once, in the order its writer wrote it, while
    replays append, segments are sealed and imports are published.
    """
    events = eventlog.follow_events(
        eventlog.EventLog.open(log), last=lines, follow=follow, interval=interval
    )
    try:
        for event in events:
            echo(event_json(event) if json else event_line(event))
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`dlq tail | head`): stop quietly, and keep
        # the interpreter from failing to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def event_json(event: eventlog.Event) -> str:
    """An event as one line of JSON, its stored fields."""
    return _render.render_json(
        {name: getattr(event, name) for name in eventlog.FIELD_NAMES}
    )


def event_line(event: eventlog.Event) -> str:
    """An event as one line for people: time, type, item, then what applies."""
    parts = [event.ts, f"{event.type:<19}", event.item_id or "-"]
    if event.attempt is not None:
        parts.append(f"attempt {event.attempt}")
    if event.run_id is not None:
        parts.append(event.run_id)
    if event.exit_code is not None:
        parts.append(f"exit {event.exit_code}")
    if event.signal is not None:
        parts.append(f"signal {event.signal}")
    text = event.error if event.error is not None else event.reason
    if text:
        parts.append(first_line(text, _ERROR_WIDTH))
    return "  ".join(parts) + "\n"


def first_line(text: str, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters with an ellipsis."""
    line, _, rest = text.strip().partition("\n")
    if len(line) > width:
        return line[: width - 1] + "…"
    return line + (" …" if rest.strip() else "")
