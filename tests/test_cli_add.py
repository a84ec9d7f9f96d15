"""`dlq add`: one failed item enters the queue, with everything said about it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()


def dlq(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(
        app, [str(arg) for arg in args], env=env, catch_exceptions=False
    )


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory below ``root``."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def shown(log: Path, item_id: str) -> dict[str, Any]:
    """`dlq show --json` of an item, parsed."""
    result = dlq("show", item_id, "--json", "--log", log)
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_add_creates_the_log_and_reports_the_event(tmp_path: Path) -> None:
    log = tmp_path / "log"

    result = dlq("add", "img-1", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    (event,) = shown(log, "img-1")["events"]
    assert result.stderr == f"enqueued img-1 ({event['event_id']})\n"
    assert (log / "dlq-log.json").is_file()


def test_add_records_every_option(tmp_path: Path) -> None:
    log = tmp_path / "log"
    payload = '{"url": "s3://in/1.jpg",  "size": [640, 480]}'

    result = dlq(
        "add",
        "img-1",
        "--job",
        "thumbnails",
        "--payload",
        payload,
        "--error",
        "cannot identify image file",
        "--error-type",
        "decode",
        "--exit-code",
        "2",
        "--command",
        "python resize.py {payload.url}",
        "--correlation-id",
        "req-77",
        "--log",
        log,
    )

    assert result.exit_code == 0, result.stderr
    document = shown(log, "img-1")
    (event,) = document["events"]
    assert {key: event[key] for key in _ENQUEUED} == {
        "type": "item_enqueued",
        "item_id": "img-1",
        "job_id": "thumbnails",
        "correlation_id": "req-77",
        # The payload is kept as the JSON text it was given in, spaces and all.
        "payload": payload,
        "command": "python resize.py {payload.url}",
        "exit_code": 2,
        "error_type": "decode",
        "error": "cannot identify image file",
        "failure_id": None,
    }
    item = document["item"]
    assert {key: item[key] for key in _ITEM} == {
        "item_id": "img-1",
        "status": "pending",
        "job_id": "thumbnails",
        "correlation_id": "req-77",
        "attempts": 0,
        "failures": 1,
        "last_error_type": "decode",
        "last_error": "cannot identify image file",
        "last_exit_code": 2,
        "command": "python resize.py {payload.url}",
        "payload": payload,
    }


_ENQUEUED = (
    "type",
    "item_id",
    "job_id",
    "correlation_id",
    "payload",
    "command",
    "exit_code",
    "error_type",
    "error",
    "failure_id",
)
_ITEM = (
    "item_id",
    "status",
    "job_id",
    "correlation_id",
    "attempts",
    "failures",
    "last_error_type",
    "last_error",
    "last_exit_code",
    "command",
    "payload",
)


def test_add_without_options_uses_the_defaults(tmp_path: Path) -> None:
    log = tmp_path / "log"

    assert dlq("add", "img-1", "--log", log).exit_code == 0

    item = shown(log, "img-1")["item"]
    assert item["job_id"] == "default"
    assert item["correlation_id"] == "img-1"
    assert item["payload"] is None
    assert item["last_error"] is None


def test_adding_an_item_again_records_a_new_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert dlq("add", "img-1", "--error", "first", "--log", log).exit_code == 0

    result = dlq("add", "img-1", "--error", "second", "--log", log)

    assert result.exit_code == 0, result.stderr
    document = shown(log, "img-1")
    assert [event["error"] for event in document["events"]] == ["first", "second"]
    assert document["item"]["failures"] == 2
    assert document["item"]["last_error"] == "second"


def test_add_uses_dlq_log_from_the_environment(tmp_path: Path) -> None:
    log = tmp_path / "from-env"

    result = dlq("add", "img-1", env={"DLQ_LOG": str(log)})

    assert result.exit_code == 0, result.stderr
    assert shown(log, "img-1")["item"]["item_id"] == "img-1"


def test_add_defaults_to_dot_dlq_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = dlq("add", "img-1", env={"DLQ_LOG": None})

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / ".dlq" / "dlq-log.json").is_file()


def test_invalid_payload_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert dlq("add", "img-1", "--log", log).exit_code == 0
    before = snapshot(tmp_path)

    result = dlq("add", "img-2", "--payload", "{'url': 1}", "--log", log)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: the payload is not valid JSON (")
    assert result.stderr.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_invalid_payload_does_not_create_a_log(tmp_path: Path) -> None:
    result = dlq("add", "img-1", "--payload", "{", "--log", tmp_path / "log")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: the payload is not valid JSON (")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("item_id", ["", "   "])
def test_empty_item_id_is_refused(tmp_path: Path, item_id: str) -> None:
    result = dlq("add", item_id, "--log", tmp_path / "log")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: `item_id` must not be empty\n"
    assert list(tmp_path.iterdir()) == []


def test_exit_code_outside_64_bits_is_refused(tmp_path: Path) -> None:
    result = dlq("add", "img-1", "--exit-code", str(2**64), "--log", tmp_path / "log")

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: `exit_code` is {2**64}, outside the 64-bit range the log stores\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_exit_code_that_is_not_a_number_is_bad_usage(tmp_path: Path) -> None:
    result = dlq("add", "img-1", "--exit-code", "one", "--log", tmp_path / "log")

    assert result.exit_code == 2
    assert "--exit-code" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_log_path_that_is_a_file_is_reported_in_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "log"
    not_a_dir.write_text("hello\n")

    result = dlq("add", "img-1", "--log", not_a_dir)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert str(not_a_dir) in result.stderr
    assert not_a_dir.read_text() == "hello\n"


# Bytes of a command line that are not UTF-8 reach Python as lone surrogates.
NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ([NOT_UTF8], "ITEM_ID"),
        (["img-1", "--job", NOT_UTF8], "--job"),
        (["img-1", "--payload", f'"{NOT_UTF8}"'], "--payload"),
        (["img-1", "--error", NOT_UTF8], "--error"),
        (["img-1", "--error-type", NOT_UTF8], "--error-type"),
        (["img-1", "--command", NOT_UTF8], "--command"),
        (["img-1", "--correlation-id", NOT_UTF8], "--correlation-id"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_by_name(
    tmp_path: Path, args: list[str], name: str
) -> None:
    result = dlq("add", *args, "--log", tmp_path / "log")

    assert result.exit_code == 2
    assert result.stderr == f"error: {name} is not valid UTF-8 text\n"
    assert list(tmp_path.iterdir()) == []


def test_non_utf8_bytes_from_a_real_command_line(tmp_path: Path) -> None:
    log = tmp_path / "log"
    command = [sys.executable, "-m", "dlq", "add", b"img-\xff", "--log", log]

    result = subprocess.run(command, capture_output=True, check=False)

    assert result.returncode == 2
    assert result.stderr == b"error: ITEM_ID is not valid UTF-8 text\n"
    assert not log.exists()
