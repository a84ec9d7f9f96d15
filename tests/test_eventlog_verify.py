"""`verify_log` finds every edit, removal, reordering and insertion.

Each test builds a real log with real writers and imports, changes its files
as someone tampering with them (or a failing disk) would, and checks that
the report names the file, the place and what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from eventlog import (
    Event,
    EventLog,
    LogWriter,
    Problem,
    compact_log,
    import_records,
    verify_log,
)

HELPERS = Path(__file__).parent / "helpers"


def abandoned_writer(log: EventLog, count: int) -> Path:
    """Append ``count`` events from a writer process that exits without
    closing, as a crash would leave it; return its live segment."""
    subprocess.run(
        [sys.executable, str(HELPERS / "eventlog_writer.py"), str(log.path),
         str(count), "--abandon"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    [segment] = [s for s in log.segments() if not s.sealed]
    return segment.path


def sealed_writer(log: EventLog, count: int, **options: int) -> list[Path]:
    """Append ``count`` events through a writer that closes; return the
    sealed files of its segments, in order."""
    with LogWriter(log, **options) as writer:
        for i in range(count):
            writer.append([Event(type="item_enqueued", item_id=f"s-{i}", error="e")])
    return sorted(log.path.glob(f"sealed/{writer.writer_id}-*.parquet"))


def imported(log: EventLog, count: int) -> Path:
    lines = b"".join(b'{"item_id": "i%d"}\n' % i for i in range(count))
    before = set(log.path.glob("sealed/*.parquet"))
    import_records(log, io.BytesIO(lines), source="in.jsonl")
    [path] = set(log.path.glob("sealed/*.parquet")) - before
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def only_problem(log: EventLog) -> Problem:
    report = verify_log(log)
    assert not report.clean
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    return report.problems[0]


def test_a_clean_log_of_every_kind_of_file_verifies(log: EventLog) -> None:
    abandoned_writer(log, 5)
    sealed_writer(log, 30, segment_max_bytes=2_000)
    imported(log, 7)

    report = verify_log(log)

    assert report.clean, [str(p) for p in report.problems]
    assert report.notes == ()
    assert (report.events, report.writers) == (42, 3)
    assert report.files == len(log.segments())
    assert report.to_dict()["clean"] is True


def test_an_edited_line_that_is_still_valid_json_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    event = json.loads(lines[2])
    event["error"] = "a different error"
    lines[2] = json.dumps(event, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))

    problem = only_problem(log)

    assert (problem.file, problem.line, problem.seq) == (str(path), 3, 3)
    assert problem.event_id == event["event_id"]
    assert problem.problem == "edited: its content does not match its hash"


def test_a_line_removed_from_the_middle_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))

    problem = only_problem(log)

    assert (problem.file, problem.line, problem.seq) == (str(path), 3, 4)
    assert problem.problem == (
        "removed: seq 3 of its writer, before this event, are missing"
    )


def test_two_swapped_lines_are_reported_as_reordered(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"".join(lines))

    problem = only_problem(log)

    assert (problem.file, problem.line, problem.seq) == (str(path), 3, 2)
    assert problem.problem == "reordered: it comes after seq 3 of its writer"


def test_an_inserted_copy_with_a_new_event_id_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    copy = json.loads(lines[1])
    original_id = copy["event_id"]
    copy["event_id"] = "f" + original_id[1:]
    inserted = json.dumps(copy, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join([*lines[:4], inserted, *lines[4:]]))

    report = verify_log(log)

    assert [(p.line, p.seq, p.problem) for p in report.problems] == [
        (5, 2, "its event id does not match its time, writer and seq (edited)"),
        (5, 2, f"inserted: seq 2 of its writer is already event {original_id} "
               f"at {path.name}:2"),
    ]  # fmt: skip
    assert {p.file for p in report.problems} == {str(path)}


def test_a_duplicate_event_id_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    path.write_bytes(b"".join([*lines, lines[1]]))

    problem = only_problem(log)

    assert (problem.file, problem.line, problem.seq) == (str(path), 6, 2)
    assert problem.event_id == json.loads(lines[1])["event_id"]
    assert problem.problem == f"duplicate event id: the same event as at {path.name}:2"


def test_a_duplicate_in_another_file_is_reported(log: EventLog) -> None:
    [path] = sealed_writer(log, 3)
    copy = log.path / "sealed" / f"{'f' * 12}-000001.parquet"
    shutil.copy(path, copy)

    messages = [str(p) for p in verify_log(log).problems]

    assert any("duplicate event id" in m for m in messages), messages
    assert any(
        m.startswith(f"{copy}: ")
        and m.endswith("is not recorded in the manifest "
                       f"({log.path / 'manifest.jsonl'})")
        for m in messages
    ), messages  # fmt: skip


def test_a_byte_flipped_in_a_sealed_file_is_reported(log: EventLog) -> None:
    [path] = sealed_writer(log, 200)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))

    report = verify_log(log)

    assert not report.clean
    assert {p.file for p in report.problems} == {str(path)}


def test_a_truncated_sealed_file_is_reported_unreadable(log: EventLog) -> None:
    [path] = sealed_writer(log, 20)
    path.write_bytes(path.read_bytes()[:-100])

    problem = only_problem(log)

    assert problem.file == str(path)
    assert problem.problem.startswith("unreadable: ")


def test_a_deleted_sealed_file_in_the_middle_is_reported(log: EventLog) -> None:
    paths = sealed_writer(log, 30, segment_max_bytes=2_000)
    assert len(paths) > 3
    paths[1].unlink()

    problem = only_problem(log)

    assert problem.file == str(paths[1])
    assert problem.problem.startswith(f"deleted: the sealed segment {paths[1].stem} (")
    assert problem.problem.endswith("), recorded in the manifest (line 4), is missing")


def test_a_deleted_newest_sealed_segment_is_reported(log: EventLog) -> None:
    paths = sealed_writer(log, 30, segment_max_bytes=2_000)
    paths[-1].unlink()

    problem = only_problem(log)

    assert problem.file == str(paths[-1])
    assert problem.problem.startswith(f"deleted: the sealed segment {paths[-1].stem}")


def test_a_deleted_live_segment_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    path.unlink()

    problem = only_problem(log)

    assert problem.file == str(path)
    assert problem.problem == (
        f"deleted: the live segment {path.stem} (events from seq 1 on), "
        "recorded in the manifest (line 2), is missing"
    )


def test_a_deleted_imported_file_is_reported(log: EventLog) -> None:
    sealed_writer(log, 2)
    path = imported(log, 10)
    path.unlink()

    problem = only_problem(log)

    assert problem.file == str(path)
    assert problem.problem.startswith(
        f"deleted: the imported file {path.stem} (10 events, seqs 1 to 10)"
    )


def test_events_cut_from_the_end_of_a_sealed_file_are_reported(log: EventLog) -> None:
    [path] = sealed_writer(log, 5)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 4), path)

    problem = only_problem(log)

    assert problem.file == str(path)
    assert problem.problem.startswith(
        f"segment {path.stem} holds 4 events, seqs 1 to 4, but the manifest "
        "recorded 5 events, seqs 1 to 5"
    )


def test_an_unreadable_line_in_the_middle_is_reported(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    lines = lines_of(path)
    lines[2] = lines[2][:30] + b"\n"
    path.write_bytes(b"".join(lines))

    problem = only_problem(log)

    assert (problem.file, problem.line) == (str(path), 3)
    assert problem.problem.startswith("unreadable: ")


def test_a_torn_last_line_is_a_note_not_a_problem(log: EventLog) -> None:
    path = abandoned_writer(log, 5)
    with path.open("ab") as fh:
        fh.write(lines_of(path)[0][:25])

    report = verify_log(log)

    assert report.clean
    assert [(n.file, n.line) for n in report.notes] == [(str(path), 6)]
    assert report.notes[0].problem.startswith("torn last line (25 bytes")


def test_a_log_without_a_manifest_verifies_with_a_note(log: EventLog) -> None:
    sealed_writer(log, 3)
    (log.path / "manifest.jsonl").unlink()

    report = verify_log(log)

    assert report.clean
    assert [n.problem for n in report.notes] == [
        "this log has no manifest (it was written before manifests existed): "
        "the removal of whole files cannot be checked"
    ]


def test_a_verified_log_stays_verified_after_compaction(log: EventLog) -> None:
    for _ in range(4):
        sealed_writer(log, 3)
    imported(log, 5)
    abandoned_writer(log, 4)
    before = [t.column("event_id").to_pylist() for t in log.iter_tables()]

    result = compact_log(log)

    assert (result.sealed, result.merged, result.into) == (1, 6, 1)
    assert [i for t in log.iter_tables() for i in t.column("event_id").to_pylist()] == [
        i for ids in before for i in ids
    ]
    report = verify_log(log)
    assert report.clean, [str(p) for p in report.problems]
    assert report.events == 21


def test_a_deleted_merged_file_is_reported(log: EventLog) -> None:
    for _ in range(3):
        sealed_writer(log, 2)
    compact_log(log)
    [merged] = (log.path / "merged").iterdir()
    merged.unlink()

    report = verify_log(log)

    assert len(report.problems) == 3
    assert all(
        p.problem.startswith("deleted: the sealed segment") for p in report.problems
    )


def test_an_interrupted_import_is_a_note(log: EventLog) -> None:
    # What a crash between recording an import and publishing it leaves.
    path = imported(log, 3)
    os.rename(path, log.staging_path(path.name))

    report = verify_log(log)

    assert report.clean
    assert [n.problem for n in report.notes] == [
        f"import {path.stem} was interrupted before it was published; "
        "`dlq compact` clears it away"
    ]

    compact_log(log)

    assert verify_log(log) == verify_log(log)
    assert verify_log(log).clean
    assert verify_log(log).notes == ()


def test_verify_reads_a_live_segment_its_writer_is_appending_to(log: EventLog) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="run_started", run_id="r")])

        report = verify_log(log)

        assert report.clean
        assert report.events == 1


@pytest.mark.parametrize("trial", range(3))
def test_a_writer_killed_while_appending_leaves_a_log_that_verifies(
    log: EventLog, trial: int
) -> None:
    writer = subprocess.Popen(
        [sys.executable, str(HELPERS / "eventlog_writer.py"), str(log.path),
         "1000000", "--max-batch", "5", "--seed", str(trial),
         "--segment-max-bytes", str(3_000 + 4_000 * trial)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert writer.stdout is not None
    for _ in range(50 + 100 * trial):
        writer.stdout.readline()
    writer.kill()
    writer.wait()
    writer.stdout.close()

    report = verify_log(log)

    assert report.clean, [str(p) for p in report.problems]
    assert report.events >= 50
