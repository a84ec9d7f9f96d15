"""`dlq import`: items in bulk from JSON Lines, all of them or none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import EventLog

runner = CliRunner()

RECORDS = (
    b'{"item_id": "inv-1", "job_id": "invoices", "error": "negative total",'
    b' "payload": {"n": 1}, "failure_id": "f-1"}\n'
    b'{"item_id": "inv-2", "job_id": "invoices", "exit_code": 2, "failure_id": "f-2"}\n'
)


def dlq(*args: str | Path, stdin: bytes | None = None) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(
        app, [str(arg) for arg in args], input=stdin, catch_exceptions=False
    )


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory below ``root``."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def event_ids(log: Path) -> list[str]:
    """The ids of every event stored in the log, read by the event log itself."""
    tables = EventLog.open(log).iter_tables(["event_id"])
    return sorted(i for table in tables for i in table.column("event_id").to_pylist())


def listed(log: Path) -> list[dict[str, Any]]:
    result = dlq("list", "--json", "--log", log)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "failed.jsonl"
    path.write_bytes(RECORDS)
    return path


def test_import_a_file(tmp_path: Path, records: Path) -> None:
    log = tmp_path / "log"

    result = dlq("import", records, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "imported 2 items\n"
    rows = listed(log)
    assert [(row["item_id"], row["job_id"], row["status"]) for row in rows] == [
        ("inv-1", "invoices", "pending"),
        ("inv-2", "invoices", "pending"),
    ]
    assert rows[0]["last_error"] == "negative total"
    assert json.loads(rows[0]["payload"]) == {"n": 1}
    assert rows[1]["last_exit_code"] == 2


def test_import_from_stdin(tmp_path: Path) -> None:
    log = tmp_path / "log"

    result = dlq("import", "-", "--log", log, stdin=RECORDS)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "imported 2 items\n"
    assert [row["item_id"] for row in listed(log)] == ["inv-1", "inv-2"]


def test_importing_the_same_file_twice_changes_nothing(
    tmp_path: Path, records: Path
) -> None:
    log = tmp_path / "log"
    assert dlq("import", records, "--log", log).exit_code == 0
    first = event_ids(log)

    result = dlq("import", records, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "imported 0 items, skipped 2 duplicates\n"
    assert event_ids(log) == first
    assert len(first) == 2


def test_duplicates_within_one_input_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    lines = (
        b'{"item_id": "a", "failure_id": "same"}\n'
        b'{"item_id": "b"}\n'
        b'{"item_id": "a", "failure_id": "same"}\n'
    )

    result = dlq("import", "-", "--log", log, stdin=lines)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "imported 2 items, skipped 1 duplicates\n"
    assert len(event_ids(log)) == 2


def test_records_without_failure_id_are_imported_each_time(tmp_path: Path) -> None:
    log = tmp_path / "log"
    line = b'{"item_id": "a", "error": "boom"}\n'

    for _ in range(2):
        result = dlq("import", "-", "--log", log, stdin=line)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == "imported 1 items\n"

    assert len(event_ids(log)) == 2
    assert listed(log)[0]["failures"] == 2


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log"

    result = dlq("import", "-", "--log", log, stdin=b'\n{"item_id": "a"}\n  \n')

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "imported 1 items\n"


def test_an_invalid_line_in_the_middle_imports_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    source = tmp_path / "broken.jsonl"
    source.write_bytes(b'{"item_id": "a"}\n{"item_id": "b",\n{"item_id": "c"}\n')
    before = snapshot(tmp_path)

    result = dlq("import", source, "--log", log)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {source}, line 2: not valid JSON (")
    assert result.stderr.endswith("; nothing was imported\n")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before
    assert [row["item_id"] for row in listed(log)] == ["existing"]


@pytest.mark.parametrize("format_", ["jsonl", "prodigy"])
def test_a_failed_import_into_a_new_log_leaves_no_log_behind(
    tmp_path: Path, format_: str
) -> None:
    if format_ == "jsonl":
        source = tmp_path / "broken.jsonl"
        source.write_bytes(b'{"item_id": "a"}\n{"item_id": 7}\n')
    else:
        source = tmp_path / "prodigy"
        (source / "items").mkdir(parents=True)
        (source / "items" / "item_0.json").write_text('{"item_id": "item_0"')
    before = snapshot(tmp_path)

    result = dlq("import", "--format", format_, source, "--log", tmp_path / "new")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert snapshot(tmp_path) == before


def test_a_failed_import_into_an_existing_empty_log_keeps_it(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log", create=True).path
    source = tmp_path / "broken.jsonl"
    source.write_bytes(b'{"item_id": 7}\n')
    before = snapshot(tmp_path)

    assert dlq("import", source, "--log", log).exit_code == 1

    assert snapshot(tmp_path) == before


def test_an_invalid_line_on_stdin_is_named(tmp_path: Path) -> None:
    lines = b'{"item_id": "a"}\n\n{"job_id": "no id"}\n'

    result = dlq("import", "-", "--log", tmp_path / "log", stdin=lines)

    assert result.exit_code == 1
    assert result.stderr == (
        "error: <stdin>, line 3: missing required field `item_id`; "
        "nothing was imported\n"
    )


def test_an_unknown_field_is_refused_by_name(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    source = tmp_path / "typo.jsonl"
    source.write_bytes(b'{"item_id": "a"}\n{"item_id": "b", "eror": "boom"}\n')
    before = snapshot(tmp_path)

    result = dlq("import", source, "--log", log)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {source}, line 2: Object contains unknown field `eror`; "
        "nothing was imported\n"
    )
    assert snapshot(tmp_path) == before


def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    result = dlq("import", "-", "--log", tmp_path / "log", stdin=b'{"item_id": 7}\n')

    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>, line 1: ")
    assert "item_id" in result.stderr
    assert result.stderr.endswith("; nothing was imported\n")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"item_id": "a", "error": "\xff\xfe"}', "not valid JSON (Invalid UTF-8"),
        (b'{"item_id": "a", "payload": "\xe9t\xe9"}', "`payload` is not valid UTF-8"),
        (b"\xff\xfe{}", "not valid JSON ("),
    ],
    ids=["in-a-string", "in-the-payload", "outside-json"],
)
def test_bytes_that_are_not_utf8_are_refused(
    tmp_path: Path, line: bytes, problem: str
) -> None:
    log = tmp_path / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    before = snapshot(tmp_path)

    stdin = b'{"item_id": "ok"}\n' + line + b"\n"
    result = dlq("import", "-", "--log", log, stdin=stdin)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: <stdin>, line 2: {problem}")
    assert result.stderr.endswith("; nothing was imported\n")
    assert result.stderr.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"

    result = dlq("import", missing, "--log", tmp_path / "log")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: no such file: {missing}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_not_a_file_to_import(tmp_path: Path) -> None:
    result = dlq("import", tmp_path, "--log", tmp_path / "log")

    assert result.exit_code == 1
    assert result.stderr == f"error: no such file: {tmp_path}\n"


def test_import_without_a_source_is_bad_usage(tmp_path: Path) -> None:
    result = dlq("import", "--log", tmp_path / "log")

    assert result.exit_code == 2
    assert "Missing argument 'source'" in result.stderr
    assert list(tmp_path.iterdir()) == []
