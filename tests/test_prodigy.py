"""Prodigy's dead-letter queue, into dlq (`dlq import --format prodigy`) and back
(`dlq export --format prodigy`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import decode_prodigy_name, encode_prodigy_name

runner = CliRunner()


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory below ``root``."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def listed(log: Path) -> dict[str, dict[str, Any]]:
    result = dlq("list", "--json", "--log", log)
    assert result.exit_code == 0, result.stderr
    return {row["item_id"]: row for row in json.loads(result.stdout)}


def queried(log: Path, sql: str) -> list[dict[str, Any]]:
    result = dlq("query", sql, "--format", "json", "--log", log)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


# -- a Prodigy DLQ, as Prodigy writes it -----------------------------------------


def entry(number: int, at: str, error_type: Any, message: str, **optional: Any) -> Any:
    return {
        "attempt_number": number,
        "timestamp": at,
        "error_type": error_type,
        "error_message": message,
        **optional,
        "agent_id": f"agent-{number}",
        "step_failed": "claude: /fix-issue ${item.file}",
        "duration_ms": 1500 * number,
    }


def item(item_id: str, history: list[Any], **fields: Any) -> dict[str, Any]:
    document = {
        "item_id": item_id,
        "item_data": {"file": f"src/{item_id}.rs"},
        "first_attempt": history[0]["timestamp"] if history else "2025-01-01T00:00:00Z",
        "last_attempt": history[-1]["timestamp"] if history else "2025-01-01T00:00:00Z",
        "failure_count": len(history),
        "failure_history": history,
        "error_signature": "sig",
        "reprocess_eligible": True,
        "manual_review_required": False,
    }
    document.update(fields)
    return document


def write_job(
    base: Path, job_id: str, items: list[dict[str, Any]], *, dir_name: str | None = None
) -> Path:
    """One job's directory, pretty-printed as Prodigy writes it."""
    job = base / "mapreduce" / "dlq" / (dir_name or job_id)
    (job / "items").mkdir(parents=True)
    for document in items:
        name = encode_prodigy_name(document["item_id"])
        (job / "items" / f"{name}.json").write_text(json.dumps(document, indent=2))
    index = {
        "job_id": job_id,
        "item_count": len(items),
        "item_ids": [document["item_id"] for document in items],
        "updated_at": "2025-03-01T12:00:00.123456789Z",
    }
    (job / "index.json").write_text(json.dumps(index, indent=2))
    return job


JOB_1 = [
    item(
        "item_0",
        [
            entry(
                1,
                "2025-01-01T10:00:00Z",
                {"CommandFailed": {"exit_code": 101}},
                "cargo test failed: 3 tests",
                error_context=["running tests", "in crate core"],
                stack_trace="thread 'main' panicked at src/lib.rs:10",
            ),
            entry(
                2,
                "2025-01-01T10:05:00.5Z",
                "Timeout",
                "agent timed out after 300s",
                json_log_location="/home/u/.claude/logs/a.json",
            ),
        ],
        worktree_artifacts={
            "worktree_path": "/tmp/wt/agent-1",
            "branch_name": "prodigy-agent-1",
            "uncommitted_changes": "M src/item_0.rs",
            "error_logs": None,
        },
    ),
    item(
        "item_1",
        [entry(1, "2025-01-01T11:00:00+00:00", "MergeConflict", "conflict in b.rs")],
        reprocess_eligible=False,
        manual_review_required=True,
    ),
]
JOB_2 = [
    item(
        "item_0",
        [
            entry(
                1,
                "2025-02-01T10:00:00+02:00",
                "Unknown",
                "boom",
                stack_trace=None,
                error_context=None,
            )
        ],
        item_data="plain text data",
        worktree_artifacts=None,
    ),
]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A Prodigy base with two jobs that both have an `item_0`."""
    root = tmp_path / "prodigy"
    write_job(root, "mapreduce-1", JOB_1)
    write_job(root, "mapreduce-2", JOB_2)
    return root


def import_prodigy(log: Path, path: Path, *options: str) -> Result:
    return dlq("import", "--format", "prodigy", path, *options, "--log", log)


def documents(base: Path) -> dict[str, Any]:
    """Every JSON file of a Prodigy base, parsed, by path."""
    return {
        str(path.relative_to(base)): json.loads(path.read_text())
        for path in sorted(base.rglob("*.json"))
    }


# -- import ----------------------------------------------------------------------


def test_import_one_job_directory(base: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"

    result = import_prodigy(log, base / "mapreduce" / "dlq" / "mapreduce-1")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "read 2 items of 1 Prodigy jobs; imported 6 events\n"
    items = listed(log)
    assert list(items) == ["mapreduce-1/item_0", "mapreduce-1/item_1"]
    first = items["mapreduce-1/item_0"]
    assert (first["job_id"], first["correlation_id"]) == ("mapreduce-1", "item_0")
    assert json.loads(first["payload"]) == {"file": "src/item_0.rs"}
    assert (first["status"], first["attempts"], first["failures"]) == ("pending", 2, 2)
    assert (first["last_error"], first["last_error_type"]) == (
        "agent timed out after 300s",
        "timeout",
    )


@pytest.mark.parametrize("where", ["", "mapreduce/dlq"])
def test_import_a_base_keeps_the_same_item_id_of_two_jobs_apart(
    base: Path, tmp_path: Path, where: str
) -> None:
    log = tmp_path / "log"

    result = import_prodigy(log, base / where if where else base)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "read 3 items of 2 Prodigy jobs; imported 8 events\n"
    items = listed(log)
    assert sorted(items) == [
        "mapreduce-1/item_0",
        "mapreduce-1/item_1",
        "mapreduce-2/item_0",
    ]
    assert json.loads(items["mapreduce-2/item_0"]["payload"]) == "plain text data"


def test_history_entries_are_failed_attempts_at_their_own_times(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert import_prodigy(log, base).exit_code == 0

    failures = queried(
        log,
        "SELECT item_id, attempt, ts, error_type, exit_code, error FROM failures "
        "ORDER BY item_id, attempt",
    )
    attempts = queried(
        log,
        "SELECT item_id, attempt, finished_at, outcome, duration_ms, exit_code "
        "FROM attempts ORDER BY item_id, attempt",
    )

    assert failures == [
        {
            "item_id": "mapreduce-1/item_0",
            "attempt": 1,
            "ts": "2025-01-01T10:00:00.000000Z",
            "error_type": "exit_code",
            "exit_code": 101,
            "error": "cargo test failed: 3 tests",
        },
        {
            "item_id": "mapreduce-1/item_0",
            "attempt": 2,
            "ts": "2025-01-01T10:05:00.500000Z",
            "error_type": "timeout",
            "exit_code": None,
            "error": "agent timed out after 300s",
        },
        {
            "item_id": "mapreduce-1/item_1",
            "attempt": 1,
            "ts": "2025-01-01T11:00:00.000000Z",
            "error_type": "MergeConflict",
            "exit_code": None,
            "error": "conflict in b.rs",
        },
        {
            "item_id": "mapreduce-2/item_0",
            "attempt": 1,
            "ts": "2025-02-01T08:00:00.000000Z",
            "error_type": "unknown",
            "exit_code": None,
            "error": "boom",
        },
    ]
    assert [(a["finished_at"], a["outcome"], a["duration_ms"]) for a in attempts] == [
        ("2025-01-01T10:00:00.000000Z", "failed", 1500),
        ("2025-01-01T10:05:00.500000Z", "failed", 3000),
        ("2025-01-01T11:00:00.000000Z", "failed", 1500),
        ("2025-02-01T08:00:00.000000Z", "failed", 1500),
    ]


def test_manual_review_and_ineligible_items_are_quarantined(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert import_prodigy(log, base).exit_code == 0

    items = listed(log)
    events = queried(
        log,
        "SELECT type, reason FROM events WHERE item_id = 'mapreduce-1/item_1' "
        "ORDER BY event_id",
    )

    assert {key: row["status"] for key, row in items.items()} == {
        "mapreduce-1/item_0": "pending",
        "mapreduce-1/item_1": "quarantined",
        "mapreduce-2/item_0": "pending",
    }
    assert events == [
        {"type": "item_enqueued", "reason": None},
        {"type": "attempt_failed", "reason": None},
        {
            "type": "item_quarantined",
            "reason": "Prodigy: manual review required and not eligible for "
            "reprocessing",
        },
    ]


def test_importing_twice_changes_nothing(base: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert import_prodigy(log, base).exit_code == 0
    before = snapshot(log)

    result = import_prodigy(log, base)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "read 3 items of 2 Prodigy jobs; imported 0 events, "
        "skipped 8 already in the log\n"
    )
    assert snapshot(log) == before


def test_reimporting_after_prodigy_added_an_entry_adds_just_that_entry(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert import_prodigy(log, base).exit_code == 0
    path = base / "mapreduce" / "dlq" / "mapreduce-2" / "items" / "item_0.json"
    document = json.loads(path.read_text())
    document["failure_history"].append(
        entry(2, "2025-02-02T09:00:00Z", "ResourceExhausted", "out of memory")
    )
    document["failure_count"] = 2
    document["last_attempt"] = "2025-02-02T09:00:00Z"
    path.write_text(json.dumps(document, indent=2))

    result = import_prodigy(log, base)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "read 3 items of 2 Prodigy jobs; imported 1 events, "
        "skipped 8 already in the log\n"
    )
    failures = queried(
        log,
        "SELECT attempt, error_type, error FROM failures "
        "WHERE item_id = 'mapreduce-2/item_0' ORDER BY attempt",
    )
    assert failures == [
        {"attempt": 1, "error_type": "unknown", "error": "boom"},
        {"attempt": 2, "error_type": "resource_exhausted", "error": "out of memory"},
    ]
    # The export writes the item as Prodigy last wrote it.
    out = tmp_path / "out"
    assert dlq("export", "--format", "prodigy", out, "--log", log).exit_code == 0
    assert documents(out)["mapreduce/dlq/mapreduce-2/items/item_0.json"] == document


def test_a_new_failure_of_a_quarantined_item_keeps_it_quarantined(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert import_prodigy(log, base).exit_code == 0
    path = base / "mapreduce" / "dlq" / "mapreduce-1" / "items" / "item_1.json"
    document = json.loads(path.read_text())
    document["failure_history"].append(entry(2, "2025-01-02T11:00:00Z", "Unknown", "x"))
    path.write_text(json.dumps(document, indent=2))

    assert import_prodigy(log, base).exit_code == 0

    assert listed(log)["mapreduce-1/item_1"]["status"] == "quarantined"


# -- invalid input ---------------------------------------------------------------


def _set(key: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document[key] = value

    return change


def _drop(key: str) -> Any:
    def change(document: dict[str, Any]) -> None:
        del document[key]

    return change


def _entry_duration_text(document: dict[str, Any]) -> None:
    document["failure_history"][0]["duration_ms"] = "1s"


def _unknown_error_type(document: dict[str, Any]) -> None:
    document["failure_history"][0]["error_type"] = {"Crashed": {"code": 1}}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_drop("error_signature"), "missing required field `error_signature`"),
        (
            _set("failure_count", "two"),
            "Expected `int`, got `str` - at `failure_count`",
        ),
        (
            _set("reprocess_eligible", 1),
            "Expected `bool`, got `int` - at `reprocess_eligible`",
        ),
        (
            _entry_duration_text,
            "Expected `int`, got `str` - at `failure_history[0].duration_ms`",
        ),
        (
            _unknown_error_type,
            "Object contains unknown field `Crashed` - at "
            "`failure_history[0].error_type`",
        ),
        (
            _set("item_id", "item_9"),
            "its item_id 'item_9' does not match the file's name",
        ),
        (
            _set("last_attempt", "yesterday"),
            "Invalid RFC3339 encoded datetime - at `last_attempt`",
        ),
    ],
)
def test_an_invalid_item_file_is_named_and_nothing_is_imported(
    base: Path, tmp_path: Path, change: Any, reason: str
) -> None:
    log = tmp_path / "log"
    assert dlq("add", "other", "--log", log).exit_code == 0
    before = snapshot(log)
    path = base / "mapreduce" / "dlq" / "mapreduce-2" / "items" / "item_0.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))

    result = import_prodigy(log, base)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path}: {reason}; nothing was imported "
        "(--skip-invalid imports the valid files)\n"
    )
    assert snapshot(log) == before


def test_a_file_that_is_not_json_is_named(base: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    path = base / "mapreduce" / "dlq" / "mapreduce-1" / "items" / "item_1.json"
    path.write_text('{"item_id": "item_1", ')

    result = import_prodigy(log, base)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}: not valid JSON (")
    assert result.stderr.endswith(
        "; nothing was imported (--skip-invalid imports the valid files)\n"
    )
    assert result.stderr.count("\n") == 1
    assert not log.exists()  # the log this import would have created


@pytest.mark.parametrize(
    ("index", "file", "reason"),
    [
        (
            {"item_count": 5},
            "index.json",
            "its item_count is 5 but it lists 1 item_ids",
        ),
        (
            {"item_ids": ["item_0", "item_7"], "item_count": 2},
            "index.json",
            "it lists 'item_7', which has no file",
        ),
        (
            {"item_ids": [], "item_count": 0},
            "items/item_0.json",
            "its item_id 'item_0' is not listed in index.json",
        ),
        (
            {"job_id": "another"},
            "index.json",
            "its job_id 'another' is not its directory's name",
        ),
    ],
)
def test_an_index_that_disagrees_is_named(
    base: Path, tmp_path: Path, index: dict[str, Any], file: str, reason: str
) -> None:
    log = tmp_path / "log"
    job = base / "mapreduce" / "dlq" / "mapreduce-2"
    document = json.loads((job / "index.json").read_text()) | index
    (job / "index.json").write_text(json.dumps(document))

    result = import_prodigy(log, base)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {job / file}: {reason}; nothing was imported "
        "(--skip-invalid imports the valid files)\n"
    )
    assert not log.exists()  # the log this import would have created


def test_skip_invalid_imports_the_rest_and_lists_what_it_skipped(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    items = base / "mapreduce" / "dlq" / "mapreduce-1" / "items"
    (items / "item_1.json").write_text("[]")
    (items / "item_2.json").write_text(json.dumps(item("item_3", [])))

    result = import_prodigy(log, base, "--skip-invalid")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"skipped {items / 'item_1.json'}: Expected `object`, got `array`\n"
        f"skipped {items / 'item_2.json'}: its item_id 'item_3' does not match "
        "the file's name\n"
        "read 2 items of 2 Prodigy jobs; imported 5 events; left out 2 invalid files\n"
    )
    assert sorted(listed(log)) == ["mapreduce-1/item_0", "mapreduce-2/item_0"]


@pytest.mark.parametrize("kind", ["empty", "file", "missing"])
def test_a_path_that_is_no_prodigy_dlq_is_refused(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "log"
    path = tmp_path / "somewhere"
    if kind == "empty":
        path.mkdir()
        (path / "notes").mkdir()
    elif kind == "file":
        path.write_text("x")

    result = import_prodigy(log, path)

    assert result.exit_code == 1
    if kind == "empty":
        assert result.stderr == (
            f"error: {path} is not a Prodigy dead-letter queue: give a job's "
            "directory (holding index.json and items/) or a directory holding "
            "mapreduce/dlq/<job_id>/\n"
        )
    else:
        assert result.stderr == f"error: no such directory: {path}\n"
    assert not (log / "sealed").exists() or list((log / "sealed").iterdir()) == []


def test_skip_invalid_is_refused_for_json_lines(tmp_path: Path) -> None:
    result = dlq("import", "-", "--skip-invalid", "--log", tmp_path / "log")

    assert result.exit_code == 2
    assert result.stderr == "error: --skip-invalid applies only to --format prodigy\n"
    assert not (tmp_path / "log").exists()


# -- export and the round trip ----------------------------------------------------


def test_round_trip_gives_back_the_same_documents(base: Path, tmp_path: Path) -> None:
    log, out = tmp_path / "log", tmp_path / "out"
    assert import_prodigy(log, base).exit_code == 0

    result = dlq("export", "--format", "prodigy", out, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote 3 items in 2 jobs to {out} (prodigy)\n"
    exported, original = documents(out), documents(base)
    assert sorted(exported) == sorted(original)
    for name, document in original.items():
        if name.endswith("index.json"):
            # What may differ: the index's updated_at is the export's own time,
            # and its item_ids come in name order (Prodigy's are unordered).
            assert exported[name]["updated_at"] != document["updated_at"]
            assert sorted(exported[name].pop("item_ids")) == sorted(
                document.pop("item_ids")
            )
            del exported[name]["updated_at"], document["updated_at"]
        assert exported[name] == document, name


def test_export_writes_items_dlq_added_itself_as_prodigy_items(
    tmp_path: Path,
) -> None:
    log, out = tmp_path / "log", tmp_path / "out"
    adds = [
        [
            "img-1",
            "--payload",
            '{"n": 1}',
            "--exit-code",
            "3",
            "--error",
            "exit status 3",
        ],
        ["img-2", "--error", "Read timed out"],
    ]
    for options in adds:
        added = dlq("add", *options, "--job", "thumbs", "--log", log)
        assert added.exit_code == 0, added.stderr

    result = dlq("export", "--format", "prodigy", out, "--log", log)

    assert result.exit_code == 0, result.stderr
    files = documents(out)
    assert sorted(files) == [
        "mapreduce/dlq/thumbs/index.json",
        "mapreduce/dlq/thumbs/items/img-1.json",
        "mapreduce/dlq/thumbs/items/img-2.json",
    ]
    first = files["mapreduce/dlq/thumbs/items/img-1.json"]
    second = files["mapreduce/dlq/thumbs/items/img-2.json"]
    assert first["item_data"] == {"n": 1}
    assert (first["failure_count"], first["reprocess_eligible"]) == (1, True)
    assert first["manual_review_required"] is False
    (failure,) = first["failure_history"]
    assert failure["error_type"] == {"CommandFailed": {"exit_code": 3}}
    assert failure["error_message"] == "exit status 3"
    assert failure["timestamp"] == first["first_attempt"] == first["last_attempt"]
    assert second["failure_history"][0]["error_type"] == "Timeout"
    assert files["mapreduce/dlq/thumbs/index.json"]["item_ids"] == ["img-1", "img-2"]
    # What dlq wrote, Prodigy's layout reads back in.
    assert import_prodigy(tmp_path / "again", out).exit_code == 0
    assert sorted(listed(tmp_path / "again")) == ["thumbs/img-1", "thumbs/img-2"]


def test_export_with_force_replaces_only_the_jobs_it_writes(
    base: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert (
        import_prodigy(log, base / "mapreduce" / "dlq" / "mapreduce-2").exit_code == 0
    )
    kept = documents(base)["mapreduce/dlq/mapreduce-1/items/item_0.json"]
    stale = base / "mapreduce" / "dlq" / "mapreduce-2" / "items" / "old.json"
    stale.write_text("{}")
    (base / "mapreduce" / "events").mkdir()

    refused = dlq("export", "--format", "prodigy", base, "--log", log)
    result = dlq("export", "--format", "prodigy", base, "--force", "--log", log)

    assert refused.exit_code == 2
    assert (
        refused.stderr == f"error: {base} exists already; give --force to replace it\n"
    )
    assert result.exit_code == 0, result.stderr
    assert not stale.exists()
    assert documents(base)["mapreduce/dlq/mapreduce-1/items/item_0.json"] == kept
    assert (base / "mapreduce" / "events").is_dir()
    assert sorted(p.name for p in base.iterdir()) == ["mapreduce"]


HOSTILE = [
    "../../etc/passwd",
    "a/b",
    "..",
    ".",
    "with space",
    "line\nbreak",
    "日本語",
    "100%",
]


def test_hostile_ids_never_leave_out_and_come_back_the_same(tmp_path: Path) -> None:
    base, log, out = tmp_path / "prodigy", tmp_path / "log", tmp_path / "out"
    write_job(
        base,
        "../job/..",
        [
            item(name, [entry(1, "2025-01-01T00:00:00Z", "Unknown", "x")])
            for name in HOSTILE
        ],
        dir_name=encode_prodigy_name("../job/.."),
    )
    assert import_prodigy(log, base).exit_code == 0

    result = dlq("export", "--format", "prodigy", out, "--log", log)

    assert result.exit_code == 0, result.stderr
    everything = sorted(p.resolve() for p in tmp_path.rglob("*"))
    outside = [p for p in everything if not p.is_relative_to(tmp_path.resolve())]
    assert outside == []
    jobs = list((out / "mapreduce" / "dlq").iterdir())
    assert [decode_prodigy_name(job.name) for job in jobs] == ["../job/.."]
    names = sorted(
        decode_prodigy_name(p.name[:-5]) for p in (jobs[0] / "items").iterdir()
    )
    assert names == sorted(HOSTILE)
    assert documents(out) == documents(base) | {
        name: documents(out)[name]
        for name in documents(out)
        if name.endswith("index.json")
    }


@given(st.text(min_size=1))
def test_encoded_names_are_one_safe_path_component_that_decodes_back(
    text: str,
) -> None:
    name = encode_prodigy_name(text)

    assert "/" not in name
    assert "\x00" not in name
    assert not name.startswith(".")
    assert decode_prodigy_name(name) == text
