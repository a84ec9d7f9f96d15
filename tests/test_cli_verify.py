"""`dlq verify`: exit 0 for an intact log, 1 with one line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()
HELPERS = Path(__file__).parent / "helpers"


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log of three added items, an import of four, and a live segment of
    five events whose writer exited without closing it."""
    path = tmp_path / "log"
    for item in ("a", "b", "c"):
        assert dlq("add", item, "--error", "boom", "--log", path).exit_code == 0
    source = tmp_path / "items.jsonl"
    source.write_text("".join(f'{{"item_id": "i{n}"}}\n' for n in range(4)))
    assert dlq("import", source, "--log", path).exit_code == 0
    subprocess.run(
        [sys.executable, str(HELPERS / "eventlog_writer.py"), str(path), "5",
         "--abandon"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def live_segment(log: Path) -> Path:
    [path] = (log / "segments").glob("*.jsonl")
    return path


def imported_file(log: Path) -> Path:
    manifest = (log / "manifest.jsonl").read_text().splitlines()
    [name] = [
        json.loads(line)["name"]
        for line in manifest
        if json.loads(line)["record"] == "import"
    ]
    return log / "sealed" / f"{name}.parquet"


def added_file(log: Path) -> Path:
    return sorted(set((log / "sealed").iterdir()) - {imported_file(log)})[0]


def edit_a_line(log: Path) -> tuple[Path, str]:
    path = live_segment(log)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"item-1"', b'"item-9"')
    path.write_bytes(b"".join(lines))
    return path, ":2: "


def remove_a_line(log: Path) -> tuple[Path, str]:
    path = live_segment(log)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + lines[2:]))
    return path, ":2: "


def swap_two_lines(log: Path) -> tuple[Path, str]:
    path = live_segment(log)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    return path, ":4: "


def duplicate_a_line(log: Path) -> tuple[Path, str]:
    path = live_segment(log)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines + lines[:1]))
    return path, ":6: "


def truncate_a_sealed_file(log: Path) -> tuple[Path, str]:
    path = added_file(log)
    path.write_bytes(path.read_bytes()[:-50])
    return path, ": unreadable: "


def delete_a_sealed_file(log: Path) -> tuple[Path, str]:
    path = added_file(log)
    path.unlink()
    return path, ": writer "


def delete_the_live_segment(log: Path) -> tuple[Path, str]:
    path = live_segment(log)
    path.unlink()
    return path, ": writer "


def delete_the_imported_file(log: Path) -> tuple[Path, str]:
    path = imported_file(log)
    path.unlink()
    return path, ": writer "


TAMPERINGS: dict[str, tuple[Callable[[Path], tuple[Path, str]], str]] = {
    "edited line": (edit_a_line, "edited: its content does not match its hash"),
    "removed line": (remove_a_line, "removed: seq 2 of its writer"),
    "swapped lines": (swap_two_lines, "reordered: it comes after seq 4"),
    "duplicate line": (duplicate_a_line, "duplicate event id: the same event"),
    "truncated sealed file": (truncate_a_sealed_file, "unreadable: "),
    "deleted sealed file": (delete_a_sealed_file, "deleted: the sealed segment"),
    "deleted live segment": (delete_the_live_segment, "deleted: the live segment"),
    "deleted imported file": (delete_the_imported_file, "deleted: the imported file"),
}


def test_an_intact_log_verifies(log: Path) -> None:
    result = dlq("verify", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "verified 12 events of 5 writers in 5 files: intact\n"


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_verify_names_the_file_and_the_problem(log: Path, tampering: str) -> None:
    change, problem = TAMPERINGS[tampering]
    path, place = change(log)

    result = dlq("verify", "--log", log)

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith(f"{path}{place}") and problem in line for line in lines
    ), lines
    count = len(lines)
    assert result.stderr.startswith(
        f"error: {count} problem{'s' if count > 1 else ''} in "
    )
    assert result.stderr.endswith(
        f" of {log}; the log was changed or damaged after it was written\n"
    )


def test_json_report_lists_the_problems(log: Path) -> None:
    path, _ = edit_a_line(log)

    result = dlq("verify", "--json", "--log", log)

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["clean"], report["events"], report["writers"], report["files"]) == (
        False,
        12,
        5,
        5,
    )
    [problem] = report["problems"]
    assert problem["file"] == str(path)
    assert (problem["line"], problem["row"], problem["seq"]) == (2, None, 2)
    assert problem["problem"] == "edited: its content does not match its hash"
    assert report["notes"] == []


def test_json_report_of_an_intact_log(log: Path) -> None:
    result = dlq("verify", "--json", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "clean": True,
        "events": 12,
        "writers": 5,
        "files": 5,
        "problems": [],
        "notes": [],
    }


def test_a_torn_last_line_exits_zero_with_a_note(log: Path) -> None:
    path = live_segment(log)
    with path.open("ab") as fh:
        fh.write(b'{"v":1,"event_id":"0')

    result = dlq("verify", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        f"note: {path}:6: torn last line (20 bytes without a newline, as a crash "
        "or a write under way leaves them); readers ignore it\n"
        "verified 12 events of 5 writers in 5 files: intact\n"
    )


def test_other_commands_still_refuse_a_damaged_line(log: Path) -> None:
    path = live_segment(log)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], b"not json\n", *lines[3:]]))

    result = dlq("list", "--log", log)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: damaged log segment {path}:3: ")
    assert dlq("verify", "--log", log).exit_code == 1


def test_verify_without_a_log(tmp_path: Path) -> None:
    result = dlq("verify", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")
    assert list(tmp_path.iterdir()) == []


def rewrite(path: Path, edit: Callable[[pa.Table], pa.Table] | None = None) -> None:
    """Write a Parquet file again, as someone editing it would: another
    compression, so that its bytes change even when its values do not."""
    table = pq.read_table(path)
    pq.write_table(edit(table) if edit else table, path, compression="snappy")


def import_record_line(log: Path) -> int:
    lines = (log / "manifest.jsonl").read_text().splitlines()
    return next(
        number
        for number, line in enumerate(lines, start=1)
        if json.loads(line)["record"] == "import"
    )


def first_item_edited(table: pa.Table) -> pa.Table:
    index = table.schema.get_field_index("item_id")
    ids = ["edited", *table.column(index).to_pylist()[1:]]
    return table.set_column(index, "item_id", pa.array(ids, pa.string()))


def test_a_parquet_file_rewritten_with_a_changed_value_is_refused(log: Path) -> None:
    path = imported_file(log)
    rewrite(path, first_item_edited)

    listed = dlq("list", "--log", log)
    verified = dlq("verify", "--log", log)

    assert listed.exit_code == 1
    assert listed.stdout == ""
    assert listed.stderr == (
        f"error: damaged log segment {path}: edited: its bytes are not those "
        f"recorded in the manifest (line {import_record_line(log)}) when it was "
        "published; `dlq verify` "
        "lists every problem\n"
    )
    assert verified.exit_code == 1
    assert f"{path} row 1: " in verified.stdout
    assert "edited: its content does not match its hash" in verified.stdout


def test_verify_names_a_parquet_file_whose_bytes_alone_changed(log: Path) -> None:
    path = imported_file(log)
    rewrite(path)  # every value as it was, so every event hash still holds

    verified = dlq("verify", "--log", log)

    assert verified.exit_code == 1
    [line] = verified.stdout.splitlines()
    assert line == (
        f"{path}: edited: its SHA-256 is not the one recorded when it was "
        f"published ({log / 'manifest.jsonl'}:{import_record_line(log)})"
    )
    assert dlq("list", "--log", log).exit_code == 1


def test_an_edited_live_line_is_refused_by_list_and_not_sealed(log: Path) -> None:
    path, _ = edit_a_line(log)
    edited = path.read_bytes()

    listed = dlq("list", "--log", log)
    compacted = dlq("compact", "--log", log)

    assert listed.exit_code == 1
    assert listed.stdout == ""
    assert listed.stderr.startswith(
        f"error: damaged log segment {path}:2: edited: the event does not match "
        "its hash chained from the one before it"
    )
    # Sealing it would give the edit a digest that vouches for it.
    assert compacted.exit_code == 1
    assert path.read_bytes() == edited
    assert not path.with_suffix(".parquet").exists()
    assert not (log / "sealed" / path.with_suffix(".parquet").name).exists()


def test_a_live_segment_whose_first_line_was_removed_is_refused(log: Path) -> None:
    # The second event then comes first, and does not chain from the hash the
    # segment's manifest record says its first event chains from.
    path, _ = remove_a_line(log)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[1:]))

    listed = dlq("list", "--log", log)

    assert listed.exit_code == 1
    assert listed.stderr.startswith(f"error: damaged log segment {path}:1: edited: ")


def test_records_written_without_a_digest_are_still_read(log: Path) -> None:
    # As a log written before digests were recorded: none in the manifest.
    manifest = log / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sum("sha256" in record for record in records) == 4
    manifest.write_text(
        "".join(
            json.dumps({k: v for k, v in record.items() if k != "sha256"}) + "\n"
            for record in records
        )
    )
    rewrite(imported_file(log))  # other bytes, the same events

    listed = dlq("list", "--json", "--log", log)
    verified = dlq("verify", "--log", log)

    assert listed.exit_code == 0, listed.stderr
    assert {row["item_id"] for row in json.loads(listed.stdout)} >= {
        "a", "b", "c", "i0", "i1", "i2", "i3"
    }  # fmt: skip
    assert verified.exit_code == 0, verified.stdout


def test_a_merged_file_rewritten_is_refused_and_named(log: Path) -> None:
    assert dlq("compact", "--log", log).exit_code == 0
    [path] = (log / "merged").iterdir()
    rewrite(path)  # its metadata, naming the segments it holds, is kept

    listed = dlq("list", "--log", log)
    verified = dlq("verify", "--log", log)

    assert listed.exit_code == 1
    assert listed.stderr.startswith(f"error: damaged log segment {path}: edited: ")
    assert verified.exit_code == 1
    [line] = verified.stdout.splitlines()
    assert line.startswith(f"{path}: edited: its SHA-256 is not the one recorded")
