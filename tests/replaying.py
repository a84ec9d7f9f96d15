"""What the replay tests share: worker scripts, filling a log, running a
replay, and reading back what it recorded."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

from analytics import connect, run_query, show_item
from eventlog import EventLog, import_records
from reprocessor import ReplayOptions, ReplaySummary, Selection, replay

WORKERS = Path(__file__).parent / "workers"


def worker(name: str, *args: object) -> tuple[str, ...]:
    """The argv that runs the script ``tests/workers/<name>.py``."""
    return (sys.executable, "-S", str(WORKERS / f"{name}.py"), *map(str, args))


def enqueue(log: EventLog, *records: dict[str, Any]) -> None:
    """Import items the way `dlq import` does."""
    lines = "".join(json.dumps(record) + "\n" for record in records)
    import_records(log, io.BytesIO(lines.encode()), source="test")


async def run(
    log: EventLog,
    command: tuple[str, ...] = (),
    selection: Selection = Selection(),
    **options: Any,
) -> ReplaySummary:
    """Replay ``log`` with ``command``, four attempts at a time unless told."""
    options.setdefault("parallel", 4)
    return await replay(
        log, ReplayOptions(command=command, **options), selection, handle_signals=False
    )


def query(log: EventLog, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql`` over a fresh connection to ``log``."""
    conn = connect(log)
    try:
        rows: list[dict[str, Any]] = run_query(conn, sql).to_pylist()
    finally:
        conn.close()
    return rows


def history(log: EventLog, item_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An item's row of ``items`` and its events, oldest first."""
    conn = connect(log)
    try:
        found = show_item(conn, item_id)
    finally:
        conn.close()
    assert found is not None
    return found.item, found.events.to_pylist()


def log_files(log: EventLog) -> dict[str, bytes]:
    """Every file of the log and its bytes, to show that nothing changed."""
    return {
        str(path.relative_to(log.path)): path.read_bytes()
        for path in sorted(log.path.rglob("*"))
        if path.is_file()
    }
