"""What runs for an item: placeholders filled in per item, and never a value
run as a command, with or without ``--shell``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from replaying import enqueue, log_files, query, run, worker

from eventlog import EventLog
from reprocessor import (
    ReplayOptions,
    ReplayUsageError,
    Selection,
    plan_replay,
    replay,
)


def received(path: Path) -> dict[str, list[str]]:
    """The arguments each item's run of ``record.py`` received, by item id."""
    if not path.exists():
        return {}
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    return {call["env"]["DLQ_ITEM_ID"]: call["args"] for call in runs}


# -- placeholders ----------------------------------------------------------


async def test_placeholders_are_filled_in_per_item(
    log: EventLog, tmp_path: Path
) -> None:
    payload = {"a": {"b": "deep value"}, "n": 5, "list": [1, {"x": True}], "s": ""}
    enqueue(log, {"item_id": "order 1", "job_id": "billing", "payload": payload})
    template = worker(
        "record",
        tmp_path / "calls",
        "{item_id}",
        "{job_id}",
        "{attempt}",
        "{payload}",
        "{payload.a.b}",
        "--n={payload.n}",
        "{payload.a}",
        "{payload.list.1.x}",
        "{payload.s}",
        "{item_id}/{attempt}",
        "{{item_id}}",
        "${HOME}",
        "{ not a placeholder }",
    )

    summary = await run(log, template)

    assert summary.succeeded == 1
    assert received(tmp_path / "calls")["order 1"] == [
        "order 1",
        "billing",
        "1",
        json.dumps(payload),
        "deep value",
        "--n=5",
        '{"b":"deep value"}',
        "true",
        "",
        "order 1/1",
        "{item_id}",
        "${HOME}",
        "{ not a placeholder }",
    ]


async def test_the_attempt_placeholder_counts_attempts_across_runs(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(log, {"item_id": "order-1"})

    await run(log, worker("fail"))
    await run(log, worker("record", tmp_path / "calls", "{attempt}"))

    assert received(tmp_path / "calls") == {"order-1": ["2"]}
    attempts = query(
        log, "SELECT type, attempt FROM events WHERE type LIKE 'attempt%' "
        "ORDER BY event_id",
    )  # fmt: skip
    assert attempts == [
        {"type": "attempt_started", "attempt": 1},
        {"type": "attempt_failed", "attempt": 1},
        {"type": "attempt_started", "attempt": 2},
        {"type": "attempt_succeeded", "attempt": 2},
    ]


async def test_a_payload_without_the_named_value_fails_the_attempt_as_validation(
    log: EventLog, tmp_path: Path
) -> None:
    enqueue(
        log,
        {"item_id": "has", "payload": {"url": "https://example.com/1"}},
        {"item_id": "lacks", "payload": {"other": 1}},
        {"item_id": "null-payload"},
        {"item_id": "not-an-object", "payload": [1, 2]},
    )

    summary = await run(log, worker("record", tmp_path / "calls", "{payload.url}"))

    assert (summary.succeeded, summary.failed) == (1, 3)
    assert summary.error_types == {"validation": 3}
    assert summary.exit_code == 1
    # The command never ran for the items it could not be filled in for.
    assert received(tmp_path / "calls") == {"has": ["https://example.com/1"]}
    rows = query(
        log,
        "SELECT item_id, status, last_error_type, last_error, last_exit_code "
        "FROM items ORDER BY item_id",
    )
    missing = "the payload has no value at 'payload.url'"
    assert rows == [
        {"item_id": "has", "status": "succeeded", "last_error_type": None,
         "last_error": None, "last_exit_code": None},
        {"item_id": "lacks", "status": "pending", "last_error_type": "validation",
         "last_error": missing, "last_exit_code": None},
        {"item_id": "not-an-object", "status": "pending",
         "last_error_type": "validation", "last_error": missing,
         "last_exit_code": None},
        {"item_id": "null-payload", "status": "pending",
         "last_error_type": "validation", "last_error": missing,
         "last_exit_code": None},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("template", "name"),
    [
        (("echo", "{nope}"), "nope"),
        (("echo", "--id={itemid}"), "itemid"),
        (("echo", "{item_id.x}"), "item_id.x"),
        (("echo", "{payload.}"), "payload."),
        (("echo", "{Payload}"), "Payload"),
    ],
)
@pytest.mark.parametrize("shell", [False, True])
async def test_an_unknown_placeholder_is_a_usage_error_and_nothing_is_written(
    log: EventLog, template: tuple[str, ...], name: str, shell: bool
) -> None:
    enqueue(log, {"item_id": "order-1"})
    before = log_files(log)
    options = ReplayOptions(command=template, shell=shell)
    message = (
        rf"^unknown placeholder \{{{name}\}} in '.*'; use \{{item_id\}}, "
        r"\{job_id\}, \{attempt\}, \{payload\} or \{payload\.KEY\}$"
    )

    with pytest.raises(ReplayUsageError, match=message):
        await replay(log, options, Selection(), handle_signals=False)
    with pytest.raises(ReplayUsageError, match=message):
        plan_replay(log, options, Selection())

    assert log_files(log) == before


# -- injection ---------------------------------------------------------------

# Each is written to break out of one kind of shell quoting, or none.
INJECTIONS = (
    '"; touch {pwned} #',
    "$(touch {pwned})",
    "`touch {pwned}`",
    "' ; touch {pwned} '",
    "x; touch {pwned}",
    "x && touch {pwned} || touch {pwned}",
    "x\ntouch {pwned}",
)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_each_injection_runs_when_a_shell_sees_it_unquoted(
    tmp_path: Path, injection: str
) -> None:
    # The check below is only worth something if these values do bite.
    pwned = tmp_path / "PWNED"
    value = injection.format(pwned=pwned)
    quoting = "'" if value.startswith("'") else '"' if value.startswith('"') else ""

    subprocess.run(
        ["/bin/sh", "-c", f"echo {quoting}{value}{quoting}"],
        check=False,
        capture_output=True,
    )

    assert pwned.exists()


@pytest.mark.parametrize("shell", [False, True])
async def test_no_value_put_in_a_placeholder_is_ever_run_as_a_command(
    log: EventLog, tmp_path: Path, shell: bool
) -> None:
    pwned = tmp_path / "PWNED"
    values = [injection.format(pwned=pwned) for injection in INJECTIONS]
    enqueue(
        log,
        *(
            {"item_id": value, "job_id": value, "payload": {"v": value}}
            for value in values
        ),
    )
    calls = tmp_path / "calls"
    template = worker(
        "record",
        calls,
        "{item_id}",
        "{job_id}",
        "{payload}",
        "{payload.v}",
        "--value={payload.v}",
    )

    summary = await run(log, template, shell=shell)

    assert summary.succeeded == len(values)
    assert not pwned.exists()
    payloads = {
        row["item_id"]: row["payload"]
        for row in query(log, "SELECT item_id, payload FROM items")
    }
    assert received(calls) == {
        value: [value, value, payloads[value], value, f"--value={value}"]
        for value in values
    }


async def test_a_placeholder_the_shell_template_quotes_itself_is_not_run(
    log: EventLog, tmp_path: Path
) -> None:
    # Pasting a shell-quoted value inside the template's own double quotes
    # would let `$(...)` run; a variable reference never does.
    pwned = tmp_path / "PWNED"
    values = [injection.format(pwned=pwned) for injection in INJECTIONS]
    enqueue(
        log, *({"item_id": f"i{n}", "payload": {"v": v}} for n, v in enumerate(values))
    )
    out = tmp_path / "out"
    out.mkdir()
    template = (
        f"printf '%s|%s|%s' \"in double {{payload.v}}\" 'in single {{payload.v}}' "
        f'{{payload.v}} > "{out}/{{item_id}}"',
    )

    summary = await run(log, template, shell=True)

    assert summary.succeeded == len(values)
    assert not pwned.exists()
    assert {path.name: path.read_text() for path in out.iterdir()} == {
        f"i{n}": f"in double {v}|in single {v}|{v}" for n, v in enumerate(values)
    }
