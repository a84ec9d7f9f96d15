"""`dlq audit`: who did what to the queue, one row per act, in time order."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import analytics
from dlq import app
from eventlog import Event, EventLog, LogWriter, import_records

runner = CliRunner()


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def table_cells(text: str) -> list[list[str]]:
    """The cells of every row a rich table drew, its header row first."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in text.splitlines()
        if line.startswith(("│", "┃"))
    ]


@dataclass
class Story:
    """A log in which people and a replay did things, and what they wrote."""

    path: Path
    imported: list[dict[str, Any]]
    run_id: str
    discarded: list[Event]
    requeued: Event
    amended: Event
    discarded_again: Event
    by_alice: Event


@pytest.fixture
def story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Story:
    path = tmp_path / "log"
    log = EventLog.open(path, create=True)
    lines = "".join(json.dumps({"item_id": f"a-{n}"}) + "\n" for n in range(1, 7))
    import_records(log, io.BytesIO(lines.encode()), source="items.jsonl")
    replayed = dlq(
        "replay", "--json", "-j", "1", "--job", "default", "--log", path,
        "--", "sh", "-c", "exit 4",
    )  # fmt: skip
    assert replayed.exit_code == 1, replayed.stderr
    run_id = json.loads(replayed.stdout)["run_id"]

    with LogWriter(log) as writer:
        discarded = writer.append(
            [
                Event(type="item_discarded", item_id=f"a-{n}", reason="obsolete")
                for n in (1, 2)
            ]
        )
        (requeued,) = writer.append(
            [
                Event(
                    type="item_requeued",
                    item_id="a-3",
                    attempt=1,
                    reason="fixed upstream",
                )
            ]
        )
        (amended,) = writer.append(
            [
                Event(
                    type="item_amended",
                    item_id="a-4",
                    payload='{"url": "s3://b/4"}',
                    reason="wrong bucket",
                    data='{"payload": {"old": null, "new": {"url": "s3://b/4"}}}',
                )
            ]
        )
        (discarded_again,) = writer.append(
            [Event(type="item_discarded", item_id="a-5", reason="obsolete")]
        )
    # getpass.getuser() reads LOGNAME first: a writer started by alice.
    monkeypatch.setenv("LOGNAME", "alice")
    with LogWriter(log) as writer:
        (by_alice,) = writer.append(
            [Event(type="item_discarded", item_id="a-6", reason="duplicate")]
        )
    monkeypatch.undo()

    conn = analytics.connect(log)
    imported = conn.sql(
        'SELECT ts, "user", host, writer, event_id FROM events '
        "WHERE type = 'item_enqueued' ORDER BY event_id"
    ).to_arrow_table()
    conn.close()
    return Story(
        path,
        imported.to_pylist(),
        run_id,
        discarded,
        requeued,
        amended,
        discarded_again,
        by_alice,
    )


def audited(*args: str | Path) -> list[dict[str, Any]]:
    """`dlq audit --json ARGS`, which must succeed, parsed."""
    result = dlq("audit", "--json", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def person_act(act: str, events: list[Event], details: Any = None) -> dict[str, Any]:
    """The row `dlq audit --json` owes for ``events`` written as one act."""
    first = events[0]
    return {
        "ts": first.ts,
        "user": first.user,
        "host": first.host,
        "act": act,
        "items": len(events),
        "item_ids": [event.item_id for event in events],
        "run_id": None,
        "reason": first.reason,
        "details": details,
        "writer": first.writer,
        "first_event_id": first.event_id,
    }


def test_audit_json_gives_every_act_in_time_order(story: Story) -> None:
    rows = audited("--log", story.path)

    first = story.imported[0]
    assert rows[0] == {
        "ts": first["ts"].isoformat().replace("+00:00", "Z"),
        "user": first["user"],
        "host": first["host"],
        "act": "enqueue",
        "items": 6,
        "item_ids": ["a-1", "a-2", "a-3", "a-4", "a-5"],
        "run_id": None,
        "reason": None,
        "details": None,
        "writer": first["writer"],
        "first_event_id": first["event_id"],
    }
    replay = rows[1]
    assert (replay["act"], replay["run_id"], replay["items"]) == (
        "replay",
        story.run_id,
        6,
    )
    assert replay["item_ids"] == ["a-1", "a-2", "a-3", "a-4", "a-5"]
    details = replay["details"]
    assert {key: details[key] for key in ("status", "command", "succeeded")} == {
        "status": "failed",
        "command": "sh -c 'exit 4'",
        "succeeded": 0,
    }
    assert (details["attempts"], details["failed"], details["quarantined"]) == (
        6,
        6,
        0,
    )
    assert details["options"]["parallel"] == 1
    assert details["selection"]["job_id"] == "default"
    assert rows[2:] == [
        person_act("discard", story.discarded),
        person_act("requeue", [story.requeued]),
        person_act(
            "amend",
            [story.amended],
            {"payload": {"old": None, "new": {"url": "s3://b/4"}}},
        ),
        person_act("discard", [story.discarded_again]),
        person_act("discard", [story.by_alice]),
    ]


def test_audit_by_user_keeps_only_that_users_acts(story: Story) -> None:
    assert audited("--user", "alice", "--log", story.path) == [
        person_act("discard", [story.by_alice])
    ]


def test_audit_since_and_until_keep_the_acts_between(story: Story) -> None:
    rows = audited(
        "--since",
        story.requeued.ts,
        "--until",
        story.discarded_again.ts,
        "--log",
        story.path,
    )

    assert [row["act"] for row in rows] == ["requeue", "amend", "discard"]
    assert rows[-1]["first_event_id"] == story.discarded_again.event_id


def test_audit_since_without_a_zone_is_utc(story: Story) -> None:
    naive = story.by_alice.ts.removesuffix("Z")

    rows = audited("--since", naive, "--log", story.path)

    assert [row["first_event_id"] for row in rows] == [story.by_alice.event_id]


def test_audit_as_of_sees_only_the_acts_before(story: Story) -> None:
    rows = audited("--as-of", story.discarded[-1].ts, "--log", story.path)

    assert [row["act"] for row in rows] == ["enqueue", "replay", "discard"]
    assert rows[-1]["items"] == 2


def test_audit_table_shows_who_what_which_items_and_why(story: Story) -> None:
    result = dlq("audit", "--log", story.path)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    header, *rows = table_cells(result.stdout)
    assert header == ["time", "by", "act", "items", "reason", "details"]
    who = f"{story.requeued.user}@{story.requeued.host}"
    assert [row[1:5] for row in rows] == [
        [who, "enqueue", "6: a-1, a-2, a-3, a-4, a-5, …", ""],
        [who, "replay", "6: a-1, a-2, a-3, a-4, a-5, …", ""],
        [who, "discard", "2: a-1, a-2", "obsolete"],
        [who, "requeue", "1: a-3", "fixed upstream"],
        [who, "amend", "1: a-4", "wrong bucket"],
        [who, "discard", "1: a-5", "obsolete"],
        [f"alice@{story.by_alice.host}", "discard", "1: a-6", "duplicate"],
    ]
    details = (
        f"failed: 0 succeeded, 6 failed; run {story.run_id}; -j 1; --job default; "
        "sh -c 'exit 4'"
    )
    # Cut to the width that the host's name leaves, if need be.
    shown = rows[1][5]
    assert shown == details or details.startswith(shown.removesuffix("…"))
    assert shown.startswith(f"failed: 0 succeeded, 6 failed; run {story.run_id}")
    assert rows[4][5] == '{"payload":{"old":null,"new":{"url":"s3://b/4"}}}'
    assert rows[2][0] == story.discarded[0].ts[:19].replace("T", " ")


def test_audit_of_an_empty_log_is_an_empty_list(log: EventLog) -> None:
    assert audited("--log", log.path) == []


def test_audit_refuses_a_time_that_is_not_one(story: Story) -> None:
    result = dlq("audit", "--since", "yesterday", "--log", story.path)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: --since 'yesterday' is not a time; give an ISO 8601 time such as "
        "2026-12-03T14:30:00Z or 2026-12-03\n"
    )


def test_audit_refuses_since_after_until(story: Story) -> None:
    result = dlq(
        "audit", "--since", "2026-12-02", "--until", "2026-12-01", "--log", story.path
    )

    assert result.exit_code == 1
    assert result.stderr == (
        "error: --since (2026-12-02T00:00:00+00:00) is after --until "
        "(2026-12-01T00:00:00+00:00); swap them\n"
    )
