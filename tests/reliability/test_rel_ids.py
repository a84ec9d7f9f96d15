"""Item and job ids holding slashes, dots, spaces, newlines, unicode and rich
markup: stored and shown as they are by every command, and never a path."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()

IDS = [
    "a/b",
    "../../escape",
    "..",
    ".",
    "/etc/passwd",
    "~/home",
    " spaced id ",
    "line\nbreak",
    "tab\there",
    "ünïcødé ☃ 日本",
    "[red]x[/red]",
    "[/x]",
    "[bold",
    "[link=file:///etc/passwd]click[/link]",
    "%2F..%2F",
    "$(touch x)",
    "C:\\windows\\..",
]
# The ids a terminal table shows on one line (not a newline or tab in them).
PRINTABLE = [i for i in IDS if i.isprintable()]


def dlq(*args: str | Path, stdin: bytes | None = None) -> Result:
    return runner.invoke(
        app, [str(arg) for arg in args], input=stdin, catch_exceptions=False
    )


def files_under(root: Path) -> set[Path]:
    return {Path(r) / n for r, _, names in os.walk(root) for n in names}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A log with each id added by `dlq add` and, suffixed, by `dlq import`."""
    root = tmp_path_factory.mktemp("ids")
    log = root / "log"
    expected = {}
    for text in IDS:
        added = dlq("add", text, "--job", text, "--error", text, "--log", log)
        assert added.exit_code == 0, added.stderr
        expected[text] = text
    records = [{"item_id": f"{t}#imp", "job_id": t, "error": t} for t in IDS]
    source = root / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    imported = dlq("import", source, "--log", log)
    assert imported.exit_code == 0, imported.stderr
    for record in records:
        expected[record["item_id"]] = record["job_id"]
    return {"root": root, "log": log, "expected": expected}


def test_list_and_query_give_back_every_id_and_job_as_stored(
    scene: dict[str, Any], figures: Any
) -> None:
    log, expected = scene["log"], scene["expected"]

    listed = dlq("list", "--json", "--log", log)
    queried = dlq(
        "query",
        "SELECT item_id, job_id, last_error FROM items",
        "--format",
        "jsonl",
        "--log",
        log,
    )

    assert listed.exit_code == 0, listed.stderr
    assert {r["item_id"]: r["job_id"] for r in json.loads(listed.stdout)} == expected
    assert queried.exit_code == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines()]
    assert {r["item_id"]: r["job_id"] for r in rows} == expected
    assert all(r["last_error"] == r["job_id"] for r in rows)
    figures.add(
        "hostile item and job ids",
        trials=len(IDS),
        faults=len(expected),
        events_checked=len(expected),
        events_lost=len(set(expected) - {r["item_id"] for r in rows}),
    )


def test_tables_show_markup_and_paths_literally(scene: dict[str, Any]) -> None:
    log = scene["log"]

    listed = dlq("list", "--log", log)
    queried = dlq("query", "SELECT item_id FROM items", "--log", log)

    assert listed.exit_code == 0, listed.stderr
    assert queried.exit_code == 0, queried.stderr
    for text in PRINTABLE:
        assert text in queried.stdout, text
    # The list's table is narrower; its first column still holds short ids whole.
    for text in ("[red]x[/red]", "[/x]", "[bold", "a/b", ".."):
        assert f"│ {text} " in listed.stdout, text


@pytest.mark.parametrize("text", IDS)
def test_show_finds_each_item_by_its_exact_id(scene: dict[str, Any], text: str) -> None:
    log = scene["log"]

    as_json = dlq("show", text, "--json", "--log", log)
    as_table = dlq("show", text, "--log", log)

    assert as_json.exit_code == 0, as_json.stderr
    shown = json.loads(as_json.stdout)
    item = shown.get("item", shown)
    assert item["item_id"] == text
    assert item["job_id"] == text
    assert as_table.exit_code == 0, as_table.stderr
    if text.isprintable():
        assert f"item_id:         {text}\n" in as_table.stdout


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_export_writes_every_id_faithfully(
    scene: dict[str, Any], tmp_path: Path, form: str
) -> None:
    out = tmp_path / f"items.{form}"

    result = dlq("export", out, "--format", form, "--log", scene["log"])

    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    if form == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["item_id"]: r["job_id"] for r in rows} == scene["expected"]
    assert files_under(tmp_path) == {out}


def test_prodigy_export_names_files_inside_out_and_round_trips(
    scene: dict[str, Any], tmp_path: Path, figures: Any
) -> None:
    out = tmp_path / "out"

    result = dlq("export", out, "--format", "prodigy", "--log", scene["log"])

    assert result.exit_code == 0, result.stderr
    written = files_under(tmp_path)
    inside = {p for p in written if p.resolve().is_relative_to(out.resolve())}
    assert written == inside
    assert not any(p.is_symlink() for p in written)
    jobs = out / "mapreduce" / "dlq"
    for path in written:
        depth = 2 if path.parent.name == "items" else 1
        assert path.parents[depth] == jobs, path
    found = {}
    for path in written:
        if path.parent.name == "items":
            document = json.loads(path.read_text(encoding="utf-8"))
            index = json.loads((path.parent.parent / "index.json").read_text())
            found[document["item_id"]] = index["job_id"]
    assert found == scene["expected"]

    # Back in, under a new log: every item arrives as <job>/<id>.
    again = tmp_path / "again"
    back = dlq("import", "--format", "prodigy", out, "--log", again)
    assert back.exit_code == 0, back.stderr
    rows = json.loads(dlq("list", "--json", "--log", again).stdout)
    assert sorted((r["job_id"], r["correlation_id"]) for r in rows) == sorted(
        (job, item) for item, job in scene["expected"].items()
    )
    figures.add(
        "hostile item and job ids",
        trials=1,
        faults=len(found),
        events_checked=len(scene["expected"]),
        events_lost=len(set(scene["expected"]) - set(found)),
    )


def test_no_id_built_a_path_outside_the_log(scene: dict[str, Any]) -> None:
    root, log = scene["root"], scene["log"]

    outside = {p for p in files_under(root) if not p.is_relative_to(log)}

    assert outside == {root / "items.jsonl"}
    for path in files_under(log):
        assert path.resolve().is_relative_to(log.resolve())
        for text in IDS:
            if len(text) > 2:
                assert text not in path.name, path
