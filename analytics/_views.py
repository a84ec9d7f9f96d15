"""The SQL of the views a connection offers, and how an item's status is derived.

``items`` has one row per item id found in the events, computed by every
query that reads it, with these columns:

==================  ==========================================================
item_id             the item's identity
status              pending, running, succeeded, quarantined or discarded:
                    what the item's last deciding event made it (see
                    ``STATUS_AFTER``; ``item_amended`` and run events decide
                    nothing)
job_id              from the latest ``item_enqueued``
correlation_id      from the latest ``item_enqueued``
attempts            finished attempts (succeeded, failed or interrupted)
budget_used         attempts that succeeded or failed since the item was last
                    requeued (an ``item_requeued`` records in ``attempt`` how
                    many it had); an interrupted attempt costs no budget
failures            how many times it failed: its enqueues and failed attempts
last_error_type     from the latest ``item_enqueued`` or ``attempt_failed``,
last_error          all four from that one event, even where it has
last_exit_code      no value
last_signal
enqueued_at         when it was first enqueued
updated_at          the time of its latest event
last_run_id         the latest run that touched it
command             from the latest ``item_enqueued``
payload             from the latest ``item_enqueued``, or a later
                    ``item_amended`` that carries a payload
==================  ==========================================================

"Latest" always means the greatest ``event_id``, which sorts by time, then
writer, then the writer's own order.
"""

from __future__ import annotations

from collections.abc import Iterable

# What an item's status becomes after each event type that decides it.
STATUS_AFTER: dict[str, str] = {
    "item_enqueued": "pending",
    "attempt_started": "running",
    "attempt_succeeded": "succeeded",
    "attempt_failed": "pending",
    "attempt_interrupted": "pending",
    "item_quarantined": "quarantined",
    "item_discarded": "discarded",
    "item_requeued": "pending",
}

ITEM_STATUSES: tuple[str, ...] = (
    "pending",
    "running",
    "succeeded",
    "quarantined",
    "discarded",
)
assert set(STATUS_AFTER.values()) == set(ITEM_STATUSES)

# The unordered union of every event: what both views read. `items` must not
# read `events`, whose ORDER BY would sort a million rows for nothing.
BASE_VIEW = "_events_base"

EVENTS_VIEW = f"CREATE VIEW events AS SELECT * FROM {BASE_VIEW} ORDER BY event_id"


def _listed(types: Iterable[str]) -> str:
    return ", ".join(f"'{kind}'" for kind in sorted(types))


_DECIDING = _listed(STATUS_AFTER)
_STATUS = " ".join(
    f"WHEN '{kind}' THEN '{then}'" for kind, then in STATUS_AFTER.items()
)
_FINISHED = _listed(["attempt_succeeded", "attempt_failed", "attempt_interrupted"])
_FAILED = _listed(["item_enqueued", "attempt_failed"])

# One GROUP BY over the unordered events; the outer SELECT only unpacks.
# Limitation: every query that reads `items` aggregates every event again
# (about 0.3 s of two cores per million single-event items, most of it
# copying payloads and errors), because nothing is stored; keeping partial
# aggregates per sealed segment, which never changes, would lift it.
# Values that come from the same event travel as one struct, which is
# cheaper than one aggregate each. arg_max_null keeps a NULL of the latest
# event rather than skipping back to an older event's value.
ITEMS_VIEW = f"""
CREATE VIEW items AS
SELECT
    item_id,
    status,
    enqueue.job_id AS job_id,
    enqueue.correlation_id AS correlation_id,
    attempts,
    tried - coalesce(requeued_at_attempt, 0) AS budget_used,
    failures,
    failure.error_type AS last_error_type,
    failure.error AS last_error,
    failure.exit_code AS last_exit_code,
    failure.signal AS last_signal,
    enqueued_at,
    updated_at,
    last_run_id,
    enqueue.command AS command,
    payload
FROM (
    SELECT
        item_id,
        arg_max(CASE type {_STATUS} END, event_id)
            FILTER (WHERE type IN ({_DECIDING})) AS status,
        arg_max_null(
            {{'job_id': job_id, 'correlation_id': correlation_id, 'command': command}},
            event_id
        ) FILTER (WHERE type = 'item_enqueued') AS enqueue,
        arg_max_null(
            {{'error_type': error_type, 'error': error,
              'exit_code': exit_code, 'signal': signal}},
            event_id
        ) FILTER (WHERE type IN ({_FAILED})) AS failure,
        count(*) FILTER (WHERE type IN ({_FINISHED})) AS attempts,
        count(*) FILTER (
            WHERE type IN ('attempt_succeeded', 'attempt_failed')
        ) AS tried,
        arg_max(attempt, event_id)
            FILTER (WHERE type = 'item_requeued') AS requeued_at_attempt,
        count(*) FILTER (WHERE type IN ({_FAILED})) AS failures,
        min(ts) FILTER (WHERE type = 'item_enqueued') AS enqueued_at,
        max(ts) AS updated_at,
        arg_max(run_id, event_id) AS last_run_id,
        arg_max_null(payload, event_id) FILTER (
            WHERE type = 'item_enqueued'
               OR (type = 'item_amended' AND payload IS NOT NULL)
        ) AS payload
    FROM {BASE_VIEW}
    WHERE item_id IS NOT NULL
    GROUP BY item_id
)
"""
