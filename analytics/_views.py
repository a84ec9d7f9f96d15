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
                    (an enqueue whose ``data`` says ``"failure": false``, as
                    a Prodigy import writes, records none)
last_error_type     from the latest ``item_enqueued`` or ``attempt_failed``,
last_error          all four from that one event, even where it has
last_exit_code      no value
last_signal
last_signature      the error signature of that failure (see ``errors``)
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

# The events that record a failure: every failed attempt, and every enqueue
# but those that say they record none (`"failure": false` in `data`: an
# import whose failures follow as attempts of their own, as Prodigy's do).
_IS_FAILURE = f"""(type IN ({_FAILED}) AND (
    type = 'attempt_failed' OR data IS NULL
    OR json_extract_string(data, '$.failure') IS DISTINCT FROM 'false'))"""

# When an event's fact happened: the `occurred_at` an import kept in `data`
# (an attempt Prodigy made before the import stamped it), or else its `ts`.
# Limitation: only `failures.ts` and `attempts.finished_at` prefer it;
# `items.enqueued_at` and `updated_at`, and `--as-of`, keep the time the
# import wrote the events, because they say when the log learnt of them
# (and `--as-of` must cut at the write order); a column of its own for the
# original time would let the views choose per question.
_OCCURRED = """CASE WHEN data IS NULL THEN ts ELSE coalesce(
    TRY_CAST(json_extract_string(data, '$.occurred_at') AS TIMESTAMPTZ), ts) END"""


def _failure_message(prefix: str) -> str:
    """The text a failure's signature is made from: its error, or else what
    its exit status says (``prefix`` qualifies the columns)."""
    return f"""coalesce(
    {prefix}error,
    CASE
        WHEN {prefix}signal IS NOT NULL THEN 'killed by signal ' || {prefix}signal
        WHEN {prefix}exit_code IS NOT NULL THEN 'exit code ' || {prefix}exit_code
        ELSE 'no error message'
    END
)"""


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
    CASE WHEN failure IS NOT NULL
        THEN error_signature({_failure_message("failure.")}) END AS last_signature,
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
        ) FILTER (WHERE {_IS_FAILURE}) AS failure,
        count(*) FILTER (WHERE type IN ({_FINISHED})) AS attempts,
        count(*) FILTER (
            WHERE type IN ('attempt_succeeded', 'attempt_failed')
        ) AS tried,
        arg_max(attempt, event_id)
            FILTER (WHERE type = 'item_requeued') AS requeued_at_attempt,
        count(*) FILTER (WHERE {_IS_FAILURE}) AS failures,
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


_ATTEMPT_EVENTS = _listed(
    ["attempt_started", "attempt_succeeded", "attempt_failed", "attempt_interrupted"]
)

# One row per attempt: the outcome is the attempt's latest event after its
# start. An attempt still running has a start and no outcome (NULL).
ATTEMPTS_VIEW = f"""
CREATE VIEW attempts AS
SELECT
    run_id,
    item_id,
    attempt,
    job_id,
    started_at,
    outcome.ts AS finished_at,
    replace(outcome.type, 'attempt_', '') AS outcome,
    outcome.exit_code AS exit_code,
    outcome.signal AS signal,
    outcome.duration_ms AS duration_ms,
    CASE outcome.type
        WHEN 'attempt_failed' THEN classify_error(
            outcome.error_type, outcome.exit_code, outcome.signal, outcome.error)
        WHEN 'attempt_interrupted' THEN coalesce(outcome.error_type, 'interrupted')
    END AS error_type,
    outcome.error AS error,
    CASE WHEN outcome.type = 'attempt_failed'
        THEN error_signature(outcome.error) END AS signature
FROM (
    SELECT
        run_id,
        item_id,
        attempt,
        any_value(job_id) AS job_id,
        min(ts) FILTER (WHERE type = 'attempt_started') AS started_at,
        arg_max_null(
            {{'type': type, 'ts': {_OCCURRED}, 'exit_code': exit_code, 'signal': signal,
              'duration_ms': duration_ms, 'error_type': error_type,
              'error': error}},
            event_id
        ) FILTER (WHERE type <> 'attempt_started') AS outcome
    FROM {BASE_VIEW}
    WHERE type IN ({_ATTEMPT_EVENTS})
    GROUP BY run_id, item_id, attempt
)
"""

_FAILURE_MESSAGE = _failure_message("")

# Every failure: each enqueue (an item enters the queue because it failed)
# and each failed attempt, with its error type and signature.
FAILURES_VIEW = f"""
CREATE VIEW failures AS
SELECT
    event_id,
    {_OCCURRED} AS ts,
    item_id,
    job_id,
    run_id,
    attempt,
    CASE type WHEN 'item_enqueued' THEN 'enqueued' ELSE 'attempt' END AS source,
    classify_error(error_type, exit_code, signal, error) AS error_type,
    error,
    exit_code,
    signal,
    error_signature({_FAILURE_MESSAGE}) AS signature,
    error_text({_FAILURE_MESSAGE}) AS signature_text
FROM {BASE_VIEW}
WHERE {_IS_FAILURE}
"""

# One row per replay run. The totals are counted from the run's events, so
# that a run that died (whose run_finished the next replay wrote for it)
# still has them; the status comes from its run_finished.
RUNS_VIEW = f"""
CREATE VIEW runs AS
SELECT
    run_id,
    started.user AS user,
    started.host AS host,
    started.pid AS pid,
    started.ts AS started_at,
    finished.ts AS finished_at,
    CASE
        WHEN started.ts IS NULL THEN NULL
        WHEN finished.ts IS NULL THEN 'running'
        ELSE coalesce(json_extract_string(finished.data, '$.status'), 'finished')
    END AS status,
    started.command AS command,
    json_extract(started.data, '$.options') AS options,
    json_extract(started.data, '$.selection') AS selection,
    items,
    attempts,
    succeeded,
    failed,
    interrupted,
    quarantined,
    epoch(finished.ts - started.ts) AS duration_s,
    CASE WHEN epoch(finished.ts - started.ts) > 0
        THEN (succeeded + failed) / epoch(finished.ts - started.ts)
    END AS attempts_per_s
FROM (
    SELECT
        run_id,
        arg_min_null(
            {{'ts': ts, 'user': "user", 'host': host, 'pid': pid,
              'command': command, 'data': data}},
            event_id
        ) FILTER (WHERE type = 'run_started') AS started,
        arg_max_null({{'ts': ts, 'data': data}}, event_id)
            FILTER (WHERE type = 'run_finished') AS finished,
        count(DISTINCT item_id) FILTER (WHERE type = 'attempt_started') AS items,
        count(*) FILTER (WHERE type = 'attempt_started') AS attempts,
        count(*) FILTER (WHERE type = 'attempt_succeeded') AS succeeded,
        count(*) FILTER (WHERE type = 'attempt_failed') AS failed,
        count(*) FILTER (WHERE type = 'attempt_interrupted') AS interrupted,
        count(*) FILTER (WHERE type = 'item_quarantined') AS quarantined
    FROM {BASE_VIEW}
    WHERE run_id IS NOT NULL
    GROUP BY run_id
)
"""

# One row per error signature. An item "recovered" from a signature when it
# succeeded after its last failure with that signature.
ERRORS_VIEW = f"""
CREATE VIEW errors AS
WITH per_item AS (
    SELECT
        signature,
        item_id,
        max(event_id) AS last_failure
    FROM failures
    GROUP BY signature, item_id
),
last_success AS (
    SELECT item_id, max(event_id) AS last_success
    FROM {BASE_VIEW}
    WHERE type = 'attempt_succeeded'
    GROUP BY item_id
),
recovery AS (
    SELECT
        signature,
        count(*) FILTER (WHERE s.last_success > p.last_failure) AS recovered,
        min(p.item_id, 3) AS sample_items
    FROM per_item AS p LEFT JOIN last_success AS s USING (item_id)
    GROUP BY signature
),
grouped AS (
    SELECT
        signature,
        mode(error_type) AS error_type,
        any_value(signature_text) AS text,
        arg_max(error_line({_FAILURE_MESSAGE}), event_id) AS sample_error,
        count(*) AS failures,
        count(DISTINCT item_id) AS items,
        min(ts) AS first_seen,
        max(ts) AS last_seen
    FROM failures
    GROUP BY signature
)
SELECT
    signature,
    error_type,
    text,
    sample_error,
    failures,
    items,
    first_seen,
    last_seen,
    sample_items,
    recovered,
    recovered / items AS recovery_rate
FROM grouped JOIN recovery USING (signature)
"""

VIEWS: tuple[str, ...] = (
    EVENTS_VIEW,
    ITEMS_VIEW,
    ATTEMPTS_VIEW,
    FAILURES_VIEW,
    RUNS_VIEW,
    ERRORS_VIEW,
)
