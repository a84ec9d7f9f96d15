"""Malformed Prodigy item files: the import names the file and its fault on one
line and imports nothing, unless --skip-invalid says to take the rest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()

_STRICT = {
    "item_id": 7,
    "first_attempt": "not a time",
    "last_attempt": 12,
    "failure_count": "three",
    "failure_history": {"0": {}},
    "reprocess_eligible": "yes",
    "manual_review_required": 1,
}


def document(item_id: str) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "item_data": {"file": f"src/{item_id}.rs"},
        "first_attempt": "2025-01-01T00:00:00Z",
        "last_attempt": "2025-01-01T00:00:00Z",
        "failure_count": 1,
        "failure_history": [
            {
                "attempt_number": 1,
                "timestamp": "2025-01-01T00:00:00Z",
                "error_type": "Timeout",
                "error_message": "took too long",
                "agent_id": "agent-1",
                "step_failed": "claude: /fix",
                "duration_ms": 1500,
            }
        ],
        "error_signature": "sig",
        "reprocess_eligible": True,
        "manual_review_required": False,
    }


@st.composite
def broken_files(draw: st.DrawFn) -> bytes:
    """The bytes of item_1.json, broken in one of several ways."""
    good = json.dumps(document("item_1"), indent=2).encode()
    kind = draw(st.integers(0, 8))
    if kind == 0:  # cut short
        return good[: draw(st.integers(0, len(good) - 2))]
    if kind == 1:  # bytes that are not UTF-8 in a string
        at = good.index(b"took") + draw(st.integers(0, 4))
        return (
            good[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"]))
            + good[at:]
        )
    if kind == 2:  # item_data nested far deeper than a decoder recurses
        depth = draw(st.sampled_from([5_000, 100_000]))
        text = good.decode().replace(
            '"item_data": {', '"item_data": ' + "[" * depth + "]" * depth + ', "x": {'
        )
        return text.encode()
    if kind == 3:  # a value of the wrong type
        field = draw(st.sampled_from(sorted(_STRICT)))
        return json.dumps(document("item_1") | {field: _STRICT[field]}).encode()
    if kind == 4:  # not an object
        return json.dumps(draw(st.sampled_from([[], "item_1", None, 1]))).encode()
    if kind == 5:  # a raw NUL byte where JSON forbids it
        at = good.index(b"took")
        return good[:at] + b"\x00" + good[at:]
    if kind == 6:  # a required key missing
        field = draw(st.sampled_from(["item_id", "failure_history", "item_data"]))
        broken = document("item_1")
        del broken[field]
        return json.dumps(broken).encode()
    if kind == 7:  # an id far too long, and not the file's name
        return json.dumps(document("i" * draw(st.integers(1025, 100_000)))).encode()
    return b""


def dlq(*args: str | Path) -> Result:
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def item_ids(log: Path) -> list[str]:
    result = dlq("list", "--json", "--log", log)
    assert result.exit_code == 0, result.stderr
    return sorted(row["item_id"] for row in json.loads(result.stdout))


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prodigy job with a valid item_0 and an item_1 each example breaks."""
    job = tmp_path_factory.mktemp("prodigy") / "mapreduce" / "dlq" / "job-a"
    (job / "items").mkdir(parents=True)
    for name in ("item_0", "item_1"):
        (job / "items" / f"{name}.json").write_text(json.dumps(document(name)))
    index = {
        "job_id": "job-a",
        "item_count": 2,
        "item_ids": ["item_0", "item_1"],
        "updated_at": "2025-03-01T12:00:00Z",
    }
    (job / "index.json").write_text(json.dumps(index))
    return job


_tally = {"trials": 0, "faults": 0, "checked": 0, "lost": 0}


@seed(20261204)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=broken_files())
def test_a_broken_item_file_is_named_and_nothing_is_imported(
    job: Path, tmp_path: Path, data: bytes, tree_hash: Callable[[Path], str]
) -> None:
    path = job / "items" / "item_1.json"
    path.write_bytes(data)
    log = tmp_path / f"log-{_tally['trials']}"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    before = tree_hash(log)

    refused = dlq("import", "--format", "prodigy", job, "--log", log)

    _tally["trials"] += 1
    _tally["faults"] += 1
    assert refused.exit_code == 1, refused.stderr
    assert refused.stderr.startswith(f"error: {path}: "), refused.stderr
    assert refused.stderr.endswith(
        "; nothing was imported (--skip-invalid imports the valid files)\n"
    )
    assert refused.stderr.count("\n") == 1
    assert tree_hash(log) == before

    skipped = dlq("import", "--format", "prodigy", job, "--skip-invalid", "--log", log)

    assert skipped.exit_code == 0, skipped.stderr
    assert skipped.stderr.startswith(f"skipped {path}: "), skipped.stderr
    assert skipped.stderr.count("\n") == 2, skipped.stderr
    found = item_ids(log)
    _tally["checked"] += 2
    _tally["lost"] += len({"existing", "job-a/item_0"} - set(found))
    assert found == ["existing", "job-a/item_0"]


def test_prodigy_import_figures(figures: Any) -> None:
    """Count what the property test above tried (it runs first, in file order)."""
    assert _tally["trials"] > 0
    figures.add(
        "malformed Prodigy item files",
        trials=_tally["trials"],
        faults=_tally["faults"],
        events_checked=_tally["checked"],
        events_lost=_tally["lost"],
    )
