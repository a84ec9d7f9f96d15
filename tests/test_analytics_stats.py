"""`queue_stats`, the attempts, runs and errors views, and time travel: each
figure is checked against the same figure computed here from the raw events."""

from __future__ import annotations

import getpass
import json
import re
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from typer.testing import CliRunner

import analytics
from dlq._app import app
from eventlog import EventLog
from reprocessor import Selection
from tests.replaying import enqueue, query, run, worker

# What each deciding event makes an item, written out again here so that the
# test does not borrow the code it checks.
_STATUS = {
    "item_enqueued": "pending",
    "attempt_started": "running",
    "attempt_succeeded": "succeeded",
    "attempt_failed": "pending",
    "attempt_interrupted": "pending",
    "item_quarantined": "quarantined",
    "item_discarded": "discarded",
    "item_requeued": "pending",
}


def raw_events(log: EventLog) -> list[dict[str, Any]]:
    rows = [row for table in log.iter_tables() for row in table.to_pylist()]
    return sorted(rows, key=lambda row: row["event_id"])


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def expected_stats(events: list[dict[str, Any]], job: str | None) -> dict[str, Any]:
    """The figures `queue_stats` should give, from the events alone."""
    status: dict[str, str] = {}
    job_of: dict[str, str | None] = {}
    enqueued_at: dict[str, datetime] = {}
    for event in events:
        item = event["item_id"]
        if event["type"] == "item_enqueued":
            job_of[item] = event["job_id"]
            enqueued_at.setdefault(item, event["ts"])
        if item is not None and event["type"] in _STATUS:
            status[item] = _STATUS[event["type"]]
    items = [item for item in status if job is None or job_of[item] == job]
    counts = Counter(status[item] for item in items)
    pending = [item for item in items if status[item] == "pending"]
    oldest = min(pending, key=lambda item: (enqueued_at[item], item), default=None)

    outcomes = [
        event
        for event in events
        if event["type"]
        in {"attempt_succeeded", "attempt_failed", "attempt_interrupted"}
        and (job is None or event["job_id"] == job)
    ]
    kinds = Counter(event["type"].removeprefix("attempt_") for event in outcomes)
    durations = [
        float(e["duration_ms"]) for e in outcomes if e["duration_ms"] is not None
    ]
    decided = kinds["succeeded"] + kinds["failed"]
    failures = [
        event
        for event in events
        if event["type"] in {"item_enqueued", "attempt_failed"}
        and (job is None or event["job_id"] == job)
    ]
    return {
        "items": {"total": len(items), **{s: counts[s] for s in _STATUS.values()}},
        "oldest_pending": oldest,
        "attempts": {
            "total": len(outcomes),
            "succeeded": kinds["succeeded"],
            "failed": kinds["failed"],
            "interrupted": kinds["interrupted"],
            "success_rate": kinds["succeeded"] / decided if decided else None,
        },
        "duration_ms": {
            "mean": round(sum(durations) / len(durations), 1),
            "p50": round(quantile(durations, 0.5), 1),
            "p95": round(quantile(durations, 0.95), 1),
            "max": max(durations),
        },
        "failures": len(failures),
    }


def queue_state(log: EventLog, as_of: datetime | None = None) -> dict[str, Any]:
    """What `dlq list`, `dlq stats` and `dlq errors` show of ``log``."""
    conn = analytics.connect(log, as_of=as_of)
    try:
        return {
            "items": analytics.list_items(conn).to_pylist(),
            "stats": analytics.queue_stats(conn),
            "errors": analytics.top_errors(conn).to_pylist(),
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A queue of two jobs replayed twice: some items succeed on the first
    run, the rest fail on both; the moment between the runs is kept.

    The tests that use it only read it, so it is built once."""
    log = EventLog.open(tmp_path_factory.mktemp("replayed") / "log", create=True)
    enqueue(
        log,
        *(
            {
                "item_id": f"n{index}",
                "job_id": "nightly",
                "payload": {"fail": index % 3 == 0},
                "error": f"Timeout after {index + 30} seconds",
                "error_type": "timeout",
            }
            for index in range(9)
        ),
        *(
            {
                "item_id": f"w{index}",
                "job_id": "weekly",
                "payload": {"fail": index == 0},
                "error": f"HTTP 503 Service Unavailable from http://api/v1/{index}",
                "exit_code": 1,
            }
            for index in range(4)
        ),
    )
    first = trio.run(run, log, worker("judge"))
    between = datetime.now(UTC)
    before = queue_state(log)
    second = trio.run(run, log, worker("judge"))
    return {
        "log": log,
        "first": first,
        "second": second,
        "between": between,
        "before": before,
    }


def stats_of(log: EventLog, **filters: Any) -> dict[str, Any]:
    conn = analytics.connect(log)
    try:
        return analytics.queue_stats(conn, analytics.StatsFilter(**filters))
    finally:
        conn.close()


@pytest.mark.parametrize("job", [None, "nightly", "weekly"])
def test_stats_equal_the_figures_counted_from_the_raw_events(
    replayed: dict[str, Any], job: str | None
) -> None:
    log = replayed["log"]
    stats = stats_of(log, job_id=job)
    expected = expected_stats(raw_events(log), job)

    oldest = stats["items"].pop("oldest_pending")
    assert stats["items"] == expected["items"]
    assert (oldest and oldest["item_id"]) == expected["oldest_pending"]
    assert stats["attempts"].pop("running") == 0
    assert stats["attempts"] == pytest.approx(expected["attempts"])
    assert stats["duration_ms"] == pytest.approx(expected["duration_ms"], abs=0.051)
    assert sum(stats["error_types"].values()) == expected["failures"]


def test_stats_count_what_the_replays_did(replayed: dict[str, Any]) -> None:
    log = replayed["log"]
    stats = stats_of(log)

    # n0, n3, n6 and w0 fail on both runs; the other nine succeed at once.
    assert stats["items"]["pending"] == 4
    assert stats["items"]["succeeded"] == 9
    assert stats["attempts"]["failed"] == 8
    assert stats["error_types"] == {"timeout": 9, "network": 4, "exit_code": 8}
    top = stats["top_signatures"][0]
    assert top["failures"] == 9  # nine timeouts that differ only in seconds
    assert top["items"] == 9
    assert top["error_type"] == "timeout"


def test_the_last_run_is_the_second_replay_with_its_totals(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    run_row = stats_of(log)["last_run"]

    assert run_row["run_id"] == replayed["second"].run_id
    assert run_row["status"] == "failed"
    assert (run_row["attempts"], run_row["succeeded"], run_row["failed"]) == (4, 0, 4)
    assert run_row["attempts_per_s"] > 0


def test_a_run_filter_counts_only_that_runs_attempts(replayed: dict[str, Any]) -> None:
    log = replayed["log"]
    first = replayed["first"].run_id
    stats = stats_of(log, run_id=first)

    assert stats["attempts"]["total"] == 13
    assert stats["attempts"]["succeeded"] == 9
    assert stats["items"]["total"] == 13
    assert stats["last_run"]["run_id"] == first
    assert stats["error_types"] == {"exit_code": 4}


def test_since_and_until_split_the_attempts_at_a_moment(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    moment = replayed["between"]

    assert stats_of(log, until=moment)["attempts"]["total"] == 13
    assert stats_of(log, since=moment)["attempts"]["total"] == 4


def test_since_after_until_is_refused_with_a_hint() -> None:
    now = datetime.now(UTC)
    with pytest.raises(analytics.QueryError, match="is after --until"):
        analytics.StatsFilter(since=now, until=now - timedelta(seconds=1))


def test_the_state_as_of_a_moment_before_a_replay_is_the_state_the_log_had_then(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    then = queue_state(log, as_of=replayed["between"])

    assert then == replayed["before"]
    assert analytics.queue_stats(analytics.connect(log)) != replayed["before"]["stats"]


def test_attempts_view_has_one_row_per_attempt_with_its_outcome(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    rows = query(log, "SELECT * FROM attempts ORDER BY started_at")
    events = raw_events(log)
    outcomes = {
        (e["run_id"], e["item_id"], e["attempt"]): e
        for e in events
        if e["type"].startswith("attempt_") and e["type"] != "attempt_started"
    }

    assert len(rows) == len(outcomes) == 17
    for row in rows:
        event = outcomes[(row["run_id"], row["item_id"], row["attempt"])]
        assert row["outcome"] == event["type"].removeprefix("attempt_")
        assert row["finished_at"] == event["ts"]
        assert row["started_at"] < row["finished_at"]
        assert row["duration_ms"] == event["duration_ms"]
        assert row["job_id"] == event["job_id"]
        if row["outcome"] == "failed":
            assert row["error"] == event["error"]
            assert row["error_type"] == "exit_code"
            assert row["signature"] is not None
        else:
            assert row["signature"] is None


def test_runs_view_names_who_ran_what_and_its_totals(replayed: dict[str, Any]) -> None:
    log = replayed["log"]
    rows = query(log, "SELECT * FROM runs ORDER BY started_at")

    assert [row["run_id"] for row in rows] == [
        replayed["first"].run_id,
        replayed["second"].run_id,
    ]
    first = rows[0]
    assert (first["items"], first["attempts"], first["succeeded"]) == (13, 13, 9)
    assert first["status"] == "failed"
    assert first["user"] == getpass.getuser()
    assert first["host"] == socket.gethostname()
    assert "judge.py" in first["command"]
    assert json.loads(first["options"])["parallel"] == 4
    assert first["duration_s"] > 0


def test_errors_view_groups_failures_and_counts_recoveries(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    rows = {row["error_type"]: row for row in query(log, "SELECT * FROM errors")}

    assert set(rows) == {"timeout", "network", "exit_code"}
    timeouts = rows["timeout"]
    assert (timeouts["failures"], timeouts["items"]) == (9, 9)
    # Six of the nine timed-out items succeeded on the replay.
    assert timeouts["recovered"] == 6
    assert timeouts["recovery_rate"] == pytest.approx(6 / 9)
    assert timeouts["sample_items"] == ["n0", "n1", "n2"]
    assert timeouts["sample_error"].startswith("Timeout after")
    assert timeouts["first_seen"] <= timeouts["last_seen"]
    told = rows["exit_code"]
    assert told["sample_error"] == "RuntimeError: told to fail"
    assert (told["failures"], told["items"], told["recovered"]) == (8, 4, 0)


async def test_replay_by_signature_takes_only_items_whose_last_failure_has_it(
    log: EventLog,
) -> None:
    enqueue(
        log,
        *({"item_id": f"t{i}", "error": f"Timeout after {i}s"} for i in range(3)),
        *({"item_id": f"p{i}", "error": "Permission denied: /x"} for i in range(2)),
    )
    timeout_signature = query(
        log, "SELECT signature FROM errors WHERE error_type = 'timeout'"
    )[0]["signature"]

    summary = await run(log, worker("judge"), Selection(signature=timeout_signature))

    assert summary.selected == 3
    ran = query(log, "SELECT DISTINCT item_id FROM attempts ORDER BY item_id")
    assert [row["item_id"] for row in ran] == ["t0", "t1", "t2"]


# -- the CLI -------------------------------------------------------------


def invoke(log: EventLog, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--log", str(log.path)])


def test_dlq_stats_json_prints_what_queue_stats_returns(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    result = invoke(log, "stats", "--json", "--job", "nightly")

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    figures = stats_of(log, job_id="nightly")
    assert printed["items"]["total"] == figures["items"]["total"] == 9
    assert printed["attempts"] == figures["attempts"]
    assert printed["last_run"]["run_id"] == figures["last_run"]["run_id"]


def test_dlq_stats_shows_the_figures_to_a_person(replayed: dict[str, Any]) -> None:
    log = replayed["log"]
    result = invoke(log, "stats")

    assert result.exit_code == 0, result.output
    assert "pending:" in result.stdout
    assert "success rate:" in result.stdout
    assert replayed["second"].run_id in result.stdout
    assert "timeout" in result.stdout


def test_dlq_errors_lists_signatures_most_frequent_first(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    result = invoke(log, "errors", "--json", "--limit", "2")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["failures"] for row in rows] == [9, 8]


def test_dlq_errors_shows_whole_signatures_and_recovery_as_a_percentage(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    rows = json.loads(invoke(log, "errors", "--json").stdout)

    result = invoke(log, "errors")

    assert result.exit_code == 0, result.output
    cells = [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in result.stdout.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert cells[0] == [
        "signature",
        "error_type",
        "failures",
        "items",
        "recovered",
        "last_seen",
        "sample_error",
    ]
    assert [row[:5] for row in cells[1:]] == [
        [
            row["signature"],
            row["error_type"],
            str(row["failures"]),
            str(row["items"]),
            f"{row['recovery_rate']:.1%}",
        ]
        for row in rows
    ]
    assert result.stderr == (
        f"{len(rows)} signatures; `dlq replay --signature ID` replays one\n"
    )


def test_as_of_on_list_and_query_sees_the_log_before_the_second_run(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    moment = replayed["between"].isoformat()

    listed = invoke(log, "list", "--json", "--as-of", moment)
    counted = invoke(
        log,
        "query",
        "SELECT count(*) AS n FROM attempts",
        "--as-of",
        moment,
        "--format",
        "json",
    )

    assert listed.exit_code == 0, listed.output
    before = {row["item_id"]: row["attempts"] for row in replayed["before"]["items"]}
    assert {r["item_id"]: r["attempts"] for r in json.loads(listed.stdout)} == before
    assert json.loads(counted.stdout) == [{"n": 13}]


def test_as_of_on_show_stats_and_errors_sees_the_log_before_the_second_run(
    replayed: dict[str, Any],
) -> None:
    log = replayed["log"]
    moment = replayed["between"].isoformat()
    before = replayed["before"]
    item_id = before["items"][0]["item_id"]

    shown = invoke(log, "show", item_id, "--json", "--as-of", moment)
    stats = invoke(log, "stats", "--json", "--as-of", moment)
    errors = invoke(log, "errors", "--json", "--as-of", moment)

    for result in (shown, stats, errors):
        assert result.exit_code == 0, result.output
    item = json.loads(shown.stdout)
    assert item["item"]["attempts"] == before["items"][0]["attempts"]
    assert item["events"]
    assert all(
        datetime.fromisoformat(event["ts"]) <= replayed["between"]
        for event in item["events"]
    )
    figures = json.loads(stats.stdout)
    assert figures["attempts"] == before["stats"]["attempts"]
    assert figures["items"]["total"] == before["stats"]["items"]["total"]
    assert [(r["signature"], r["failures"]) for r in json.loads(errors.stdout)] == [
        (r["signature"], r["failures"]) for r in before["errors"]
    ]
    now = json.loads(invoke(log, "stats", "--json").stdout)
    assert now["attempts"]["total"] > figures["attempts"]["total"]


@pytest.mark.parametrize("command", ["list", "show", "query", "stats", "errors"])
def test_a_time_that_is_not_a_time_is_refused_in_one_line(
    log: EventLog, command: str, tmp_path: Path
) -> None:
    extra = {"show": ["x"], "query": ["SELECT 1"]}.get(command, [])
    result = invoke(log, command, *extra, "--as-of", "yesterday-ish")

    assert result.exit_code == 2
    assert "--as-of 'yesterday-ish' is not a time" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dlq_stats_with_since_after_until_fails_with_a_hint(log: EventLog) -> None:
    result = invoke(log, "stats", "--since", "2026-12-02", "--until", "2026-12-01")

    assert result.exit_code == 1
    assert "is after --until" in result.stderr


def test_stats_of_an_empty_log_are_zeros_and_nothing(log: EventLog) -> None:
    stats = stats_of(log)

    assert stats["items"]["total"] == 0
    assert stats["items"]["oldest_pending"] is None
    assert stats["attempts"]["success_rate"] is None
    assert stats["last_run"] is None
    assert stats["error_types"] == {}
    assert stats["top_signatures"] == []


_DOC = Path(__file__).parent.parent / "docs" / "analytics.md"
_DOC_QUERIES = re.findall(r"```sql\n(.*?)```", _DOC.read_text(), flags=re.DOTALL)


def test_the_analytics_page_has_its_ten_questions_and_more() -> None:
    assert len(_DOC_QUERIES) >= 11


@pytest.mark.parametrize("sql", _DOC_QUERIES, ids=range(len(_DOC_QUERIES)))
def test_every_query_of_the_analytics_page_runs_on_a_replayed_log(
    replayed: dict[str, Any], sql: str
) -> None:
    log = replayed["log"]
    rows = query(log, sql)

    assert isinstance(rows, list)
    assert all(len(row) >= 2 for row in rows)
