"""How `dlq stats` and `dlq errors` show the queue's figures to a person."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dlq import _render


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def stats_text(stats: dict[str, Any]) -> str:
    """The figures of :func:`analytics.queue_stats`, in a few short blocks."""
    items, attempts = stats["items"], stats["attempts"]
    durations, run = stats["duration_ms"], stats["last_run"]
    oldest = items["oldest_pending"]
    blocks = [
        "items\n"
        + _render.key_values(
            [("total", _number(items["total"]))]
            + [
                (status, _number(items[status]))
                for status in items
                if status not in {"total", "oldest_pending"}
            ]
            + [
                (
                    "oldest pending",
                    "-"
                    if oldest is None
                    else f"{oldest['item_id']} (since "
                    f"{_render.to_plain(oldest['enqueued_at'])})",
                )
            ]
        ),
        "attempts\n"
        + _render.key_values(
            [
                (key, _number(attempts[key]))
                for key in ("total", "succeeded", "failed", "interrupted", "running")
            ]
            + [("success rate", _percent(attempts["success_rate"]))]
            + [
                (f"duration {key}", _number(value, " ms"))
                for key, value in durations.items()
            ]
        ),
    ]
    if run is not None:
        blocks.append(
            "last run\n"
            + _render.key_values(
                [
                    ("run", run["run_id"]),
                    ("by", f"{run['user']}@{run['host']}"),
                    ("started", run["started_at"]),
                    ("status", run["status"]),
                    ("attempts", _number(run["attempts"])),
                    ("succeeded", _number(run["succeeded"])),
                    ("failed", _number(run["failed"])),
                    ("throughput", _number(run["attempts_per_s"], " attempts/s")),
                ]
            )
        )
    if stats["error_types"]:
        blocks.append(
            "failures by error type\n"
            + _render.key_values(
                (kind, _number(count)) for kind, count in stats["error_types"].items()
            )
        )
    if stats["top_signatures"]:
        lines = [
            f"{row['signature']}  {row['failures']:>8,} failures  "
            f"{row['items']:>7,} items  {row['error_type']}: {row['text']}"
            for row in stats["top_signatures"]
        ]
        blocks.append("top signatures\n" + "".join(line + "\n" for line in lines))
    return "\n".join(blocks)


def errors_text(table: pa.Table) -> str:
    """The rows of :func:`analytics.top_errors` as a table, whole signatures
    first (they are what ``dlq replay --signature`` takes)."""
    rows = [
        {
            "signature": row["signature"],
            "error_type": row["error_type"],
            "failures": _number(row["failures"]),
            "items": _number(row["items"]),
            "recovered": _percent(row["recovery_rate"]),
            "last_seen": _render.to_plain(row["last_seen"])[:19].replace("T", " "),
            "sample_error": row["sample_error"],
        }
        for row in table.to_pylist()
    ]
    columns = [
        "signature",
        "error_type",
        "failures",
        "items",
        "recovered",
        "last_seen",
        "sample_error",
    ]
    shown = pa.Table.from_pylist(
        rows, schema=pa.schema([(name, pa.string()) for name in columns])
    )
    return _render.table_text(
        shown, title="errors by signature", whole=["signature", "error_type"]
    )
