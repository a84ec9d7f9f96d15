"""`dlq demo`: a sample queue in a directory of its own, shown at once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from dlq import app
from eventlog import EventLog

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


def listed(log: Path, *args: str) -> list[dict[str, Any]]:
    result = dlq("list", "--json", *args, "--log", log)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def event_count(log: Path) -> int:
    return sum(table.num_rows for table in EventLog.open(log).iter_tables(["seq"]))


def still_failing(item: dict[str, Any]) -> bool:
    """Whether the demo's worker fails for this item every time, by the rules
    its docstring tells: corrupt thumbnails (every third), negative invoices
    (every fourth), and documents too big to finish before the timeout."""
    payload = json.loads(item["payload"])
    n = payload["n"]
    if payload.get("pages", 0) > 10_000:
        return True
    if item["job_id"] == "thumbnails":
        return bool(n % 3 == 0)
    return bool(n % 4 == 0)


def flaky(item: dict[str, Any]) -> bool:
    """Whether the worker fails this item on its first attempt only."""
    return not still_failing(item) and json.loads(item["payload"])["n"] % 5 == 1


def test_demo_builds_a_queue_replays_it_and_shows_what_went_wrong(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "demo"

    result = dlq("demo", "--dir", directory)

    assert result.exit_code == 0, result.stderr
    items = listed(directory)
    failing = [item["item_id"] for item in items if still_failing(item)]
    assert 0 < len(failing) < 60
    assert sorted(i["item_id"] for i in items if i["status"] == "pending") == sorted(
        failing
    )
    assert all(
        item["status"] == "succeeded" for item in items if not still_failing(item)
    )
    assert {item["attempts"] for item in items if flaky(item)} == {2}
    assert {item["attempts"] for item in items if not still_failing(item)} == {1, 2}
    (slow,) = [item for item in items if "pages" in item["payload"]]
    assert (slow["status"], slow["last_error_type"]) == ("pending", "timeout")
    before, _, after = result.stdout.partition("after the replay (dlq stats)")
    assert table_cells(before)[:2] == [["status", "items"], ["pending", "60"]]
    assert f"selected:    60\nsucceeded:   {60 - len(failing)}\n" in before
    assert f"failed:      {len(failing)}\n" in before
    stats = dlq("stats", "--log", directory)
    assert stats.exit_code == 0, stats.stderr
    assert after.strip() == stats.stdout.strip()
    assert f"succeeded:      {60 - len(failing)}\n" in after
    assert "failures by error type\n" in after
    assert "timeout:" in after.partition("failures by error type")[2]
    assert result.stderr.startswith(f"built a sample queue in {directory}\n")
    assert f"replaying it:  dlq replay --log {directory} -- " in result.stderr
    assert f"explore it:  dlq list --log {directory}" in result.stderr


def test_demo_without_replay_shows_the_pending_items(tmp_path: Path) -> None:
    directory = tmp_path / "demo"

    result = dlq("demo", "--dir", directory, "--no-replay")

    assert result.exit_code == 0, result.stderr
    by_status, _, pending = result.stdout.partition("pending items")
    assert "items by status" in by_status
    assert table_cells(by_status) == [["status", "items"], ["pending", "60"]]
    header, *rows = table_cells(pending)
    assert header == ["item_id", "job_id", "status", "last_error"]
    first = listed(directory, "--status", "pending", "--limit", "10")
    assert [row[:3] for row in rows] == [
        [item["item_id"], item["job_id"], "pending"] for item in first
    ]
    assert len(listed(directory)) == 60
    assert event_count(directory) == 60


def test_demo_items_carry_their_failures(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    assert dlq("demo", "--dir", directory, "--no-replay").exit_code == 0

    items = listed(directory)

    assert {item["job_id"] for item in items} == {"thumbnails", "invoices"}
    assert all(item["last_error"] and item["last_error_type"] for item in items)
    assert all(json.loads(item["payload"])["source"] for item in items)


def test_demo_twice_replaces_its_own_directory(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    assert dlq("demo", "--dir", directory).exit_code == 0
    first = listed(directory)

    result = dlq("demo", "--dir", directory, "--no-replay")

    assert result.exit_code == 0, result.stderr
    assert event_count(directory) == 60
    again = listed(directory)
    assert [row["item_id"] for row in again] == [row["item_id"] for row in first]


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "notes.txt").write_text("keep me\n")

    result = dlq("demo", "--dir", directory)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {directory} exists and is not a demo; pass --dir with a new path\n"
    )
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]
    assert (directory / "notes.txt").read_text() == "keep me\n"


def test_demo_refuses_an_existing_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert dlq("add", "precious", "--log", log).exit_code == 0

    result = dlq("demo", "--dir", log)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {log} exists and is not a demo; pass --dir with a new path\n"
    )
    assert [row["item_id"] for row in listed(log)] == ["precious"]


def test_demo_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("data\n")

    result = dlq("demo", "--dir", path)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path} exists and is not a demo; pass --dir with a new path\n"
    )
    assert path.read_text() == "data\n"
