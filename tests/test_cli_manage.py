"""`dlq discard`, `dlq requeue` and `dlq amend` on real logs.

The logs are built as a person builds them (`dlq add`, `dlq import`, `dlq
replay` of tiny real commands), and read back through `dlq list`, `dlq
show` and `dlq query`. Every refusal leaves every file of the log as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dlq import _manage, app
from eventlog import EventLog
from tests.replaying import log_files, worker

runner = CliRunner()


def dlq(*args: str | Path, input: str | None = None) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(
        app, [str(arg) for arg in args], input=input, catch_exceptions=False
    )


def on(log: EventLog, name: str, *args: str | Path, input: str | None = None) -> Result:
    """Run `dlq NAME --log LOG ARGS`."""
    return dlq(name, "--log", log.path, *args, input=input)


def add(log: EventLog, item_id: str, *args: str) -> None:
    result = on(log, "add", item_id, *args)
    assert result.exit_code == 0, result.stderr


def import_items(log: EventLog, tmp_path: Path, *records: dict[str, Any]) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    result = on(log, "import", source)
    assert result.exit_code == 0, result.stderr


def replay(log: EventLog, *args: str) -> Result:
    return on(log, "replay", "-j", "2", *args)


def items(log: EventLog) -> dict[str, dict[str, Any]]:
    """`dlq list --json`, by item id."""
    result = on(log, "list", "--json")
    assert result.exit_code == 0, result.stderr
    return {row["item_id"]: row for row in json.loads(result.stdout)}


def events(log: EventLog, item_id: str) -> list[dict[str, Any]]:
    """The item's history as `dlq show --json` gives it."""
    result = on(log, "show", item_id, "--json")
    assert result.exit_code == 0, result.stderr
    history: list[dict[str, Any]] = json.loads(result.stdout)["events"]
    return history


def payload(log: EventLog, item_id: str) -> Any:
    return json.loads(items(log)[item_id]["payload"])


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for a person at a terminal: the CLI may ask on stdin."""
    monkeypatch.setattr(_manage, "stdin_is_terminal", lambda: True)


def quarantined_item(log: EventLog, tmp_path: Path, item_id: str = "img-1") -> None:
    """An item that failed twice and was quarantined (--max-attempts 2)."""
    import_items(log, tmp_path, {"item_id": item_id, "error": "boom"})
    result = replay(log, "--attempts", "3", "--delay", "0", "--max-attempts", "2",
                    "--", "false")  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert items(log)[item_id]["status"] == "quarantined"


# -- discard -------------------------------------------------------------------


def test_discard_makes_items_discarded_and_keeps_their_history(
    log: EventLog,
) -> None:
    add(log, "img-1", "--error", "cannot decode")
    add(log, "img-2")

    result = on(log, "discard", "img-1", "--reason", "the source image is gone")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "discarded 1 item\n"
    statuses = {item_id: row["status"] for item_id, row in items(log).items()}
    assert statuses == {"img-1": "discarded", "img-2": "pending"}
    history = events(log, "img-1")
    assert [event["type"] for event in history] == ["item_enqueued", "item_discarded"]
    assert history[0]["error"] == "cannot decode"
    assert history[1]["reason"] == "the source image is gone"
    assert history[1]["job_id"] == "default"


def test_a_discarded_item_is_not_replayed(log: EventLog, tmp_path: Path) -> None:
    import_items(log, tmp_path, {"item_id": "keep"}, {"item_id": "drop"})
    assert on(log, "discard", "drop", "--reason", "obsolete").exit_code == 0
    calls = tmp_path / "calls"

    result = replay(log, "--", *worker("record", calls))

    assert result.exit_code == 0, result.stderr
    ran = [
        json.loads(line)["env"]["DLQ_ITEM_ID"]
        for line in calls.read_text().splitlines()
    ]
    assert ran == ["keep"]
    assert items(log)["drop"]["status"] == "discarded"


def test_discard_skips_and_counts_items_it_does_not_apply_to(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(log, tmp_path, *({"item_id": f"i{n}"} for n in range(4)))
    assert replay(log, "--item", "i0", "--", "true").exit_code == 0
    assert on(log, "discard", "i1", "--reason", "first").exit_code == 0

    result = on(log, "discard", "i0", "i1", "i2", "i3", "--reason", "second")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "discarded 2 items (2 skipped: 1 succeeded, 1 already discarded)\n"
    )
    assert [e["reason"] for e in events(log, "i1") if e["reason"]] == ["first"]
    assert items(log)["i0"]["status"] == "succeeded"


def test_discard_of_items_it_does_not_apply_to_only_is_refused(
    log: EventLog,
) -> None:
    add(log, "img-1")
    assert on(log, "discard", "img-1", "--reason", "gone").exit_code == 0
    before = log_files(log)

    result = on(log, "discard", "img-1", "--reason", "again")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: nothing to discard: 1 item selected, 1 already discarded\n"
    )
    assert log_files(log) == before


def test_the_events_of_one_command_are_one_commit_of_one_sealed_writer(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(log, tmp_path, *({"item_id": f"i{n}"} for n in range(3)))

    result = on(log, "discard", "i0", "i1", "i2", "--reason", "bulk")

    assert result.exit_code == 0, result.stderr
    discards = [e for n in range(3) for e in events(log, f"i{n}") if e["reason"]]
    assert len({e["writer"] for e in discards}) == 1
    assert sorted(e["seq"] for e in discards) == [1, 2, 3]
    assert not list((log.path / "segments").glob("*.jsonl"))  # sealed on close


# -- selecting -----------------------------------------------------------------


def test_where_selects_the_items_as_dlq_list_does(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(
        log,
        tmp_path,
        {"item_id": "a", "error": "HTTP 404 not found"},
        {"item_id": "b", "error": "HTTP 503"},
        {"item_id": "c", "error": "HTTP 404 not found"},
    )
    where = "last_error LIKE '%404%'"

    result = on(log, "discard", "--where", where, "--reason", "gone")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "--where selects 2 items: 2 to discard\ndiscarded 2 items\n"
    listed = on(log, "list", "--status", "discarded", "--json")
    assert [row["item_id"] for row in json.loads(listed.stdout)] == ["a", "c"]


@pytest.mark.parametrize(
    "where",
    ["no_such_column = 1", "true); SELECT 1 --", "status = 'pending'; SELECT 1", ""],
)
def test_a_bad_where_is_refused_as_dlq_list_refuses_it(
    log: EventLog, where: str
) -> None:
    add(log, "img-1")
    listed = on(log, "list", "--where", where)
    assert listed.exit_code == 1
    before = log_files(log)

    result = on(log, "discard", "--where", where, "--reason", "r")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == listed.stderr
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert log_files(log) == before


def test_a_where_that_meets_no_item_is_refused(log: EventLog) -> None:
    add(log, "img-1")
    before = log_files(log)

    result = on(log, "requeue", "--where", "job_id = 'nightly'")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "error: nothing to requeue: no item meets the --where condition\n"
    )
    assert log_files(log) == before


def test_unknown_ids_are_named_and_nothing_is_written(log: EventLog) -> None:
    add(log, "img-1")
    before = log_files(log)

    result = on(log, "discard", "img-1", "x1", "x2", "x3", "x4", "--reason", "r")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no items 'x1', 'x2', 'x3' and 1 more in {log.path}; "
        "`dlq list` shows the items\n"
    )
    assert log_files(log) == before
    assert items(log)["img-1"]["status"] == "pending"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["discard", "a", "--where", "true", "--reason", "r"],
         "give ITEM_IDs or --where, not both"),
        (["discard", "--reason", "r"],
         "name the items to discard: give ITEM_IDs or --where SQL"),
        (["requeue"], "name the items to requeue: give ITEM_IDs or --where SQL"),
        (["discard", "a"], "--reason is required: say why these items are given "
         "up, e.g. --reason 'bad input, fixed upstream'"),
        (["discard", "a", "--reason", "  "], "--reason must not be empty: say why"),
        (["requeue", "a", "--reason", ""], "--reason must not be empty: say why"),
        (["amend", "a"], "say what to change: --set PATH=VALUE (repeatable) or "
         "--payload JSON"),
        (["amend", "a", "--set", "x=1", "--payload", "{}"],
         "give --set or --payload, not both"),
        (["amend", "a", "--payload", "{bad"], "--payload is not valid JSON (JSON is "
         "malformed: object keys must be strings (byte 1))"),
        (["amend", "a", "--set", "url"], "--set 'url' is not PATH=VALUE; e.g. "
         "--set user.email=ann@example.com"),
        (["amend", "a", "--set", "=5"], "--set '=5' is not PATH=VALUE; e.g. "
         "--set user.email=ann@example.com"),
        (["amend", "a", "--set", "user..email=x"],
         "--set 'user..email': a path is keys joined by dots, and no key is empty"),
        (["amend", "a", "--set", "u=1", "--set", "u=2"],
         "--set u is given twice; set it once"),
        (["amend", "a", "--set", "user=1", "--set", "user.email=x"],
         "--set user and --set user.email overlap; set each value once"),
    ],
)  # fmt: skip
def test_bad_usage_is_one_line_exit_2_and_writes_nothing(
    log: EventLog, args: list[str], message: str
) -> None:
    add(log, "a", "--payload", '{"x": 1}')
    before = log_files(log)

    result = on(log, *args)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    assert log_files(log) == before


def test_bad_usage_is_told_before_a_missing_log(tmp_path: Path) -> None:
    result = dlq("discard", "a", "--log", tmp_path / "nowhere")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --reason is required")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_log_is_named(tmp_path: Path) -> None:
    result = dlq("requeue", "a", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no dead-letter queue at {tmp_path / 'nowhere'}: add items with "
        "`dlq add` or `dlq import`, or point --log (or DLQ_LOG) at one\n"
    )
    assert list(tmp_path.iterdir()) == []


# -- requeue -------------------------------------------------------------------


def test_requeue_gives_a_quarantined_item_a_fresh_budget(
    log: EventLog, tmp_path: Path
) -> None:
    quarantined_item(log, tmp_path)
    assert items(log)["img-1"]["budget_used"] == 2
    # Without a requeue, the next replay leaves it alone.
    assert replay(log, "--max-attempts", "2", "--", "false").exit_code == 0
    assert items(log)["img-1"]["attempts"] == 2

    result = on(log, "requeue", "img-1", "--reason", "fixed the decoder")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "requeued 1 item\n"
    row = items(log)["img-1"]
    assert (row["status"], row["budget_used"], row["attempts"]) == ("pending", 0, 2)
    requeued = events(log, "img-1")[-1]
    assert (requeued["type"], requeued["attempt"]) == ("item_requeued", 2)
    assert requeued["reason"] == "fixed the decoder"

    again = replay(log, "--attempts", "3", "--delay", "0", "--max-attempts", "2",
                   "--", "false")  # fmt: skip

    assert again.exit_code == 1
    row = items(log)["img-1"]
    assert (row["status"], row["budget_used"], row["attempts"]) == ("quarantined", 2, 4)


def test_requeue_brings_a_discarded_item_back_pending(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(log, tmp_path, {"item_id": "img-1"})
    assert replay(log, "--", "false").exit_code == 1
    assert on(log, "discard", "img-1", "--reason", "gave up").exit_code == 0

    result = on(log, "requeue", "img-1")

    assert result.exit_code == 0, result.stderr
    row = items(log)["img-1"]
    assert (row["status"], row["budget_used"], row["attempts"]) == ("pending", 0, 1)
    assert events(log, "img-1")[-1]["reason"] is None
    assert replay(log, "--max-attempts", "1", "--", "true").exit_code == 0
    assert items(log)["img-1"]["status"] == "succeeded"


def test_requeue_runs_a_succeeded_item_again(log: EventLog, tmp_path: Path) -> None:
    import_items(log, tmp_path, {"item_id": "img-1"})
    assert replay(log, "--", "true").exit_code == 0
    calls = tmp_path / "calls"

    result = on(log, "requeue", "img-1", "--reason", "the output was lost")

    assert result.exit_code == 0, result.stderr
    assert items(log)["img-1"]["status"] == "pending"
    assert (
        replay(log, "--max-attempts", "1", "--", *worker("record", calls)).exit_code
        == 0
    )
    (call,) = map(json.loads, calls.read_text().splitlines())
    assert call["env"]["DLQ_ATTEMPT"] == "2"


def test_requeue_skips_pending_items_and_refuses_when_all_are(
    log: EventLog, tmp_path: Path
) -> None:
    quarantined_item(log, tmp_path, "q")
    add(log, "p")

    mixed = on(log, "requeue", "q", "p")
    before = log_files(log)
    only_pending = on(log, "requeue", "q", "p")

    assert mixed.exit_code == 0, mixed.stderr
    assert mixed.stderr == "requeued 1 item (1 skipped: already pending)\n"
    assert only_pending.exit_code == 1
    assert only_pending.stderr == (
        "error: nothing to requeue: 2 items selected, 2 already pending\n"
    )
    assert log_files(log) == before


# -- amend ---------------------------------------------------------------------


def test_amend_sets_values_and_the_next_replay_sees_them(
    log: EventLog, tmp_path: Path
) -> None:
    add(log, "img-1", "--payload", '{"url": "s3://old/1.jpg", "size": {"w": 640}}')
    calls = tmp_path / "calls"

    result = on(log, "amend", "img-1", "--set", "url=s3://new/1.jpg",
                "--set", "size.h=480", "--reason", "moved bucket")  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        'url:    "s3://old/1.jpg" -> "s3://new/1.jpg"\nsize.h: (none) -> 480\n'
    )
    assert result.stderr == "amended img-1: url, size.h\n"
    replayed = replay(log, "--", *worker("record", calls, "{payload.url}"))
    assert replayed.exit_code == 0, replayed.stderr
    (call,) = map(json.loads, calls.read_text().splitlines())
    assert call["args"] == ["s3://new/1.jpg"]
    assert json.loads(call["stdin"]) == {
        "url": "s3://new/1.jpg",
        "size": {"w": 640, "h": 480},
    }


def test_the_amendment_records_each_old_and_new_value(log: EventLog) -> None:
    add(log, "img-1", "--payload", '{"url": "a", "n": 1}')

    result = on(log, "amend", "img-1", "--set", "url=b", "--set", "n=1",
                "--set", "tags.first=x")  # fmt: skip

    assert result.exit_code == 0, result.stderr
    amended = events(log, "img-1")[-1]
    assert amended["type"] == "item_amended"
    assert json.loads(amended["data"]) == {
        "changes": [
            {"path": "url", "old": "a", "new": "b", "added": False},
            {"path": "tags.first", "old": None, "new": "x", "added": True},
        ]
    }
    assert json.loads(amended["payload"]) == {
        "url": "b",
        "n": 1,
        "tags": {"first": "x"},
    }
    assert amended["reason"] is None


def test_a_set_value_is_json_when_it_is_json_else_text(log: EventLog) -> None:
    add(log, "img-1")  # no payload at all: the values start one

    result = on(log, "amend", "img-1", "--set", "n=5", "--set", "ok=true",
                "--set", "name=ann", "--set", 'quoted="5"', "--set", "zip=007",
                "--set", "list=[1, 2]", "--set", "empty=")  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert payload(log, "img-1") == {
        "n": 5,
        "ok": True,
        "name": "ann",
        "quoted": "5",
        "zip": "007",
        "list": [1, 2],
        "empty": "",
    }


def test_amend_replaces_the_whole_payload(log: EventLog, tmp_path: Path) -> None:
    add(log, "order-17", "--payload", '{"order": 71}')
    calls = tmp_path / "calls"

    result = on(log, "amend", "order-17", "--payload", '{"order": 17,  "cur": "EUR"}')

    assert result.exit_code == 0, result.stderr
    assert result.stdout == 'payload: {"order":71} -> {"order":17,"cur":"EUR"}\n'
    assert result.stderr == "amended order-17: the whole payload\n"
    amended = events(log, "order-17")[-1]
    assert amended["payload"] == '{"order": 17,  "cur": "EUR"}'  # kept as given
    assert json.loads(amended["data"]) == {
        "changes": [
            {"path": None, "old": {"order": 71}, "new": {"order": 17, "cur": "EUR"},
             "added": False}
        ]
    }  # fmt: skip
    assert replay(log, "--", *worker("record", calls, "{payload.order}")).exit_code == 0
    (call,) = map(json.loads, calls.read_text().splitlines())
    assert call["args"] == ["17"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "url=a"], "nothing to amend: url of 'img-1' already has the "
         "value given"),
        (["--set", "n=1", "--set", "url=a"], "nothing to amend: n, url of 'img-1' "
         "already have the value given"),
        (["--payload", '{"n":1,"url":"a","deep":{"k":[1]}}'],
         "nothing to amend: the payload of 'img-1' is already this"),
        (["--set", "url.host=x"], "cannot --set url.host: url in the payload of "
         "'img-1' is a string, not an object"),
        (["--set", "deep.k.first=x"], "cannot --set deep.k.first: deep.k in the "
         "payload of 'img-1' is an array, not an object"),
    ],
)  # fmt: skip
def test_an_amendment_that_cannot_apply_is_refused(
    log: EventLog, args: list[str], message: str
) -> None:
    add(log, "img-1", "--payload", '{"url": "a", "n": 1, "deep": {"k": [1]}}')
    before = log_files(log)

    result = on(log, "amend", "img-1", *args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    assert log_files(log) == before


def test_a_number_and_a_boolean_are_different_values(log: EventLog) -> None:
    add(log, "img-1", "--payload", '{"flag": 1}')

    result = on(log, "amend", "img-1", "--set", "flag=true")

    assert result.exit_code == 0, result.stderr
    assert payload(log, "img-1") == {"flag": True}


def test_set_refuses_a_payload_that_is_not_an_object(log: EventLog) -> None:
    add(log, "img-1", "--payload", "[1, 2]")
    before = log_files(log)

    result = on(log, "amend", "img-1", "--set", "x=1")

    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot --set x: the payload of 'img-1' is an array, not an object; "
        "--payload replaces it whole\n"
    )
    assert log_files(log) == before


def test_amend_of_an_unknown_item_is_refused(log: EventLog) -> None:
    add(log, "img-1")
    before = log_files(log)

    result = on(log, "amend", "img-9", "--set", "x=1")

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no item 'img-9' in {log.path}; `dlq list` shows the items\n"
    )
    assert log_files(log) == before


# -- dry runs, confirmation and --json -------------------------------------------


def test_a_dry_run_shows_the_count_and_first_ids_and_writes_nothing(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(log, tmp_path, *({"item_id": f"i{n:02}"} for n in range(13)))
    assert on(log, "discard", "i00", "--reason", "r").exit_code == 0
    before = log_files(log)

    result = on(log, "discard", "--where", "true", "--reason", "r", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "would discard: 12 items\n"
        "first:         i01, i02, i03, i04, i05, i06, i07, i08, i09, i10, ...\n"
        "skipped:       1 already discarded\n"
    )
    assert result.stderr == "dry run: nothing was written\n"
    assert log_files(log) == before


def test_an_amend_dry_run_shows_the_change_and_writes_nothing(log: EventLog) -> None:
    add(log, "img-1", "--payload", '{"url": "a"}')
    before = log_files(log)

    result = on(log, "amend", "img-1", "--set", "url=b", "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "action": "amend",
        "selected": 1,
        "changed": 1,
        "first_items": ["img-1"],
        "skipped": {},
        "dry_run": True,
        "written": False,
        "changes": [{"path": "url", "old": "a", "new": "b", "added": False}],
    }
    assert result.stderr == "dry run: nothing was written\n"
    assert log_files(log) == before


def test_json_is_a_machine_summary_on_stdout(log: EventLog, tmp_path: Path) -> None:
    quarantined_item(log, tmp_path, "q")
    add(log, "p")

    result = on(log, "requeue", "--where", "true", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "action": "requeue",
        "selected": 2,
        "changed": 1,
        "first_items": ["q"],
        "skipped": {"already pending": 1},
        "dry_run": False,
        "written": True,
    }
    assert result.stdout.count("\n") == 1
    assert result.stderr == (
        "--where selects 2 items: 1 to requeue (1 skipped: already pending)\n"
        "requeued 1 item (1 skipped: already pending)\n"
    )


def six_items(log: EventLog, tmp_path: Path) -> None:
    import_items(log, tmp_path, *({"item_id": f"i{n}"} for n in range(6)))


@pytest.mark.usefixtures("terminal")
def test_on_a_terminal_a_no_to_the_question_writes_nothing(
    log: EventLog, tmp_path: Path
) -> None:
    six_items(log, tmp_path)
    before = log_files(log)

    result = on(log, "discard", "--where", "true", "--reason", "r", input="n\n")

    assert result.exit_code == 1
    # CliRunner echoes the answer (after the prompt's last space) to stdout.
    assert result.stdout == " n\n"
    assert result.stderr == (
        "--where selects 6 items: 6 to discard\n"
        "discard 6 items? [y/N]:"
        "error: not confirmed; nothing was written (--yes does not ask)\n"
    )
    assert log_files(log) == before


@pytest.mark.usefixtures("terminal")
def test_on_a_terminal_a_yes_to_the_question_writes(
    log: EventLog, tmp_path: Path
) -> None:
    six_items(log, tmp_path)

    result = on(log, "discard", "--where", "true", "--reason", "r", input="y\n")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == " y\n"
    assert result.stderr == (
        "--where selects 6 items: 6 to discard\n"
        "discard 6 items? [y/N]:discarded 6 items\n"
    )
    assert {row["status"] for row in items(log).values()} == {"discarded"}


@pytest.mark.usefixtures("terminal")
def test_yes_skips_the_question(log: EventLog, tmp_path: Path) -> None:
    six_items(log, tmp_path)

    # No input: a question would read the end of stdin and abort.
    result = on(log, "discard", "--where", "true", "--reason", "r", "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "--where selects 6 items: 6 to discard\ndiscarded 6 items\n"


@pytest.mark.usefixtures("terminal")
def test_a_few_items_are_changed_without_a_question(
    log: EventLog, tmp_path: Path
) -> None:
    six_items(log, tmp_path)

    result = on(log, "discard", "--where", "item_id <> 'i0'", "--reason", "r")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "--where selects 5 items: 5 to discard\ndiscarded 5 items\n"


def test_off_a_terminal_nothing_is_asked(log: EventLog, tmp_path: Path) -> None:
    six_items(log, tmp_path)

    result = on(log, "discard", "--where", "true", "--reason", "r")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "--where selects 6 items: 6 to discard\ndiscarded 6 items\n"


def test_items_named_by_id_are_changed_without_a_question(
    log: EventLog, tmp_path: Path, terminal: None
) -> None:
    six_items(log, tmp_path)

    result = on(log, "discard", *(f"i{n}" for n in range(6)), "--reason", "r")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "discarded 6 items\n"


def test_the_seam_reports_whether_stdin_is_a_terminal() -> None:
    assert _manage.stdin_is_terminal() == sys.stdin.isatty()


# -- while a replay runs -------------------------------------------------------


@pytest.mark.slow
def test_changes_are_refused_with_exit_3_while_a_replay_runs(
    log: EventLog, tmp_path: Path
) -> None:
    import_items(
        log, tmp_path, {"item_id": "busy"}, {"item_id": "idle"}, {"item_id": "done"}
    )
    assert on(log, "discard", "done", "--reason", "r").exit_code == 0
    calls, gate = tmp_path / "calls", tmp_path / "gate"
    running = subprocess.Popen(
        [sys.executable, "-m", "dlq", "replay", "--log", str(log.path),
         "--item", "busy", "--", *worker("gate", calls, gate)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not calls.exists():  # the replay holds its lock and runs "busy"
            assert running.poll() is None, running.communicate()
            time.sleep(0.02)
        busy = (
            f"error: another `replay` is already running on {log.path} "
            f"(process {running.pid}); wait for it to finish\n"
        )

        refused = [
            on(log, "discard", "busy", "--reason", "r"),
            on(log, "discard", "idle", "--reason", "r"),
            on(log, "amend", "idle", "--set", "x=1"),
            on(log, "requeue", "--where", "true"),
        ]
        dry_run = on(log, "discard", "idle", "--reason", "r", "--dry-run")
    finally:
        gate.touch()
        running.communicate()

    assert [(r.exit_code, r.stdout, r.stderr) for r in refused] == [(3, "", busy)] * 4
    assert dry_run.exit_code == 0, dry_run.stderr
    assert running.returncode == 0
    statuses = {item_id: row["status"] for item_id, row in items(log).items()}
    assert statuses == {"busy": "succeeded", "idle": "pending", "done": "discarded"}
    assert on(log, "discard", "idle", "--reason", "r").exit_code == 0
