"""Error types for failures that are not in a log yet, by the log's own rules.

The rules are the SQL macro ``classify_error`` (``analytics._signatures``);
running that macro on values held in Python, as a replay does for the
summary it prints, keeps every count of error types in agreement with
``dlq stats`` and the views.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from analytics._connect import CONFIG
from analytics._errors import AnalyticsError
from analytics._signatures import MACROS
from analytics._sql import one_line

Failure = tuple[str | None, int | None, int | None, str | None]

_FAILURES = pa.schema(
    [
        ("n", pa.int64()),
        ("recorded_type", pa.string()),
        ("exit_code", pa.int64()),
        ("signal", pa.int64()),
        ("message", pa.string()),
    ]
)


def classify_errors(failures: Sequence[Failure]) -> list[str]:
    """The error type of each failure, in order, as the views would give it.

    Args:
        failures: ``(recorded error type, exit code, signal, message)`` of
            each failure; any of them may be None.

    Raises:
        AnalyticsError: DuckDB could not run the rules.
    """
    if not failures:
        return []
    columns = [range(len(failures)), *zip(*failures, strict=True)]
    table = pa.Table.from_arrays(
        [
            pa.array(column, type=field.type)
            for column, field in zip(columns, _FAILURES, strict=True)
        ],
        schema=_FAILURES,
    )
    conn = duckdb.connect(":memory:", config=CONFIG)
    try:
        for macro in MACROS:
            conn.execute(macro)
        conn.register("failures", table)
        rows = conn.execute(
            "SELECT classify_error(recorded_type, exit_code, signal, message) "
            "FROM failures ORDER BY n"
        ).fetchall()
    except duckdb.Error as exc:
        raise AnalyticsError(f"could not classify errors: {one_line(exc)}") from exc
    finally:
        conn.close()
    return [row[0] for row in rows]
