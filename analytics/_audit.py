"""The audit trail: who did what to the queue, and when, one row per act.

An *act* is one of:

==========  ==================================================================
replay      one replay run (a row of the ``runs`` view): its command,
            options, selection, status and results
enqueue     items entering the queue: consecutive ``item_enqueued`` events
            of one writer (one `dlq import`, or one `dlq add`)
discard     consecutive ``item_discarded`` events of one writer with one
            reason
requeue     the same for ``item_requeued``
amend       the same for ``item_amended``, with one change (``data``)
==========  ==================================================================

"Consecutive" means adjacent in the writer's ``seq``: a writer is one
process, so events of one kind that it wrote one after the other, for the
same reason, are one act of one person (a bulk `dlq discard --where ...`),
while the same writer discarding again after doing something else is a
second act. Quarantines are the replay's decisions, counted in its row.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from analytics._errors import QueryError
from analytics._query import _fetch
from analytics._sql import as_utc
from analytics._views import BASE_VIEW

# How many item ids an act names; its `items` column counts them all.
FIRST_ITEMS = 5

_PEOPLE = {
    "item_enqueued": "enqueue",
    "item_discarded": "discard",
    "item_requeued": "requeue",
    "item_amended": "amend",
}
_PEOPLE_TYPES = ", ".join(f"'{kind}'" for kind in _PEOPLE)
_ACT = " ".join(f"WHEN '{kind}' THEN '{act}'" for kind, act in _PEOPLE.items())

# Limitation: acts are told apart by their events being consecutive in one
# writer's seq, so two discards for the same reason that one long-lived
# process (a notebook) made one after the other, with nothing between, show
# as one act, because events do not record the command they came from; an
# act id stamped on each event would lift it.
# Runs take their user, host and totals from the `runs` view; the items they
# attempted first and the reason a run was closed for it come from its events.
_ACTS_SQL = f"""
WITH numbered AS (
    SELECT
        *,
        seq - row_number() OVER (
            PARTITION BY writer, type, reason, data ORDER BY seq
        ) AS island
    FROM {BASE_VIEW}
    WHERE type IN ({_PEOPLE_TYPES})
),
people AS (
    SELECT
        min(ts) AS ts,
        any_value("user") AS "user",
        any_value(host) AS host,
        CASE type {_ACT} END AS act,
        count(*) AS items,
        arg_min(item_id, seq, {FIRST_ITEMS}) AS item_ids,
        NULL::VARCHAR AS run_id,
        reason,
        CASE WHEN type = 'item_amended' THEN data END AS details,
        writer,
        min(event_id) AS first_event_id
    FROM numbered
    GROUP BY writer, type, reason, data, island
),
run_items AS (
    SELECT run_id, arg_min(item_id, first_start, {FIRST_ITEMS}) AS item_ids
    FROM (
        SELECT run_id, item_id, min(event_id) AS first_start
        FROM {BASE_VIEW}
        WHERE type = 'attempt_started'
        GROUP BY run_id, item_id
    )
    GROUP BY run_id
),
run_events AS (
    SELECT
        run_id,
        arg_max(reason, event_id) FILTER (WHERE type = 'run_finished') AS reason,
        arg_min(writer, event_id) FILTER (WHERE type = 'run_started') AS writer,
        min(event_id) FILTER (WHERE type = 'run_started') AS first_event_id
    FROM {BASE_VIEW}
    WHERE run_id IS NOT NULL AND type IN ('run_started', 'run_finished')
    GROUP BY run_id
),
replays AS (
    SELECT
        r.started_at AS ts,
        r."user",
        r.host,
        'replay' AS act,
        r.items,
        coalesce(i.item_ids, []) AS item_ids,
        r.run_id,
        e.reason,
        json_object(
            'status', r.status,
            'command', r.command,
            'options', r.options,
            'selection', r.selection,
            'attempts', r.attempts,
            'succeeded', r.succeeded,
            'failed', r.failed,
            'interrupted', r.interrupted,
            'quarantined', r.quarantined,
            'duration_s', r.duration_s
        )::VARCHAR AS details,
        e.writer,
        e.first_event_id
    FROM runs AS r
    JOIN run_events AS e USING (run_id)
    LEFT JOIN run_items AS i USING (run_id)
    WHERE r.started_at IS NOT NULL
)
SELECT * FROM (SELECT * FROM people UNION ALL BY NAME SELECT * FROM replays)
"""

_COLUMNS = (
    'ts, "user", host, act, items, item_ids, run_id, reason, details, writer, '
    "first_event_id"
)


def audit_trail(
    conn: duckdb.DuckDBPyConnection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str | None = None,
) -> pa.Table:
    """Who did what to the queue, one row per act, oldest first.

    The acts are described in this module's docstring. Columns: ``ts`` (when
    the act began), ``user`` and ``host`` (who), ``act`` (replay, enqueue,
    discard, requeue or amend), ``items`` (how many items it touched),
    ``item_ids`` (the first few of them, in the order they were written),
    ``run_id`` (a replay's), ``reason`` (a person's reason, or why a run was
    closed for it), ``details`` (JSON text: a replay's status, command,
    options, selection and results; an amendment's change), ``writer`` and
    ``first_event_id`` (where its events are in the log).

    Args:
        conn: a connection from :func:`analytics.connect`.
        since: only acts that began at or after this moment (naive is UTC).
        until: only acts that began at or before this moment.
        user: only acts of this user.

    Raises:
        QueryError: DuckDB could not read the log, or ``since`` is after
            ``until``.
    """
    if since is not None and until is not None and as_utc(since) > as_utc(until):
        raise QueryError(
            f"--since ({as_utc(since).isoformat()}) is after --until "
            f"({as_utc(until).isoformat()}); swap them"
        )
    conditions: list[str] = []
    params: list[object] = []
    if since is not None:
        conditions.append("ts >= ?")
        params.append(as_utc(since))
    if until is not None:
        conditions.append("ts <= ?")
        params.append(as_utc(until))
    if user is not None:
        conditions.append('"user" = ?')
        params.append(user)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    sql = f"SELECT {_COLUMNS} FROM ({_ACTS_SQL}){where} ORDER BY ts, first_event_id"
    return _fetch(conn, sql, params)
