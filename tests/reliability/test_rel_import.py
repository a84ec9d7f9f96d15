"""Hostile input to `dlq import`: whatever a line holds, the import takes the
file whole or refuses it on one line naming the first bad line, and a refused
import leaves the log as it was, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import EventLog

runner = CliRunner()

# An id the import keeps: not blank, no NUL, at most 1024 characters, and
# text that UTF-8 can carry (no lone surrogates).
ids = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda text: not text.isspace())
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def valid_lines(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = {"item_id": draw(ids)}
    if draw(st.booleans()):
        record["job_id"] = draw(ids)
    if draw(st.booleans()):
        record["error"] = draw(texts)
    if draw(st.booleans()):
        record["payload"] = draw(json_values)
    if draw(st.booleans()):
        record["exit_code"] = draw(st.integers(-(2**63), 2**63 - 1))
    if draw(st.booleans()):
        # A long value that is still within a record's size.
        record["output"] = draw(st.sampled_from("xé\x00")) * draw(
            st.integers(10_000, 200_000)
        )
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    return text.encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def bad_lines(draw: st.DrawFn) -> bytes:
    """A line the import must refuse, of one of several kinds."""
    good = draw(valid_lines())
    kind = draw(st.integers(0, 11))
    if kind == 0:  # broken JSON: a strict prefix of an object
        return good[: draw(st.integers(1, len(good) - 1))]
    if kind == 1:  # an id of the wrong type
        wrong = draw(st.integers() | st.lists(st.integers(), max_size=2) | st.none())
        return json.dumps({"item_id": wrong}).encode()
    if kind == 2:  # a number field given as text or a fraction
        wrong = draw(st.sampled_from(['"2"', "2.5", "true", "[]"]))
        return b'{"item_id": "a", "exit_code": ' + wrong.encode() + b"}"
    if kind == 3:  # not an object at all
        return json.dumps(draw(st.lists(texts, max_size=2) | texts)).encode()
    if kind == 4:  # an unknown field, whose name may hold line breaks
        name = draw(texts.filter(lambda t: t not in _FIELDS))
        return json.dumps({"item_id": "a", name: 1}).encode()
    if kind == 5:  # an id the log cannot hold
        wrong = draw(
            st.sampled_from(["", " ", "\t\n", "a\x00b", "x" * 1025]) | st.just("")
        )
        field = draw(st.sampled_from(["item_id", "job_id", "failure_id"]))
        return json.dumps({"item_id": "a", field: wrong}).encode()
    if kind == 6:  # bytes that are not UTF-8, inside the text of a string
        cut = good.index(b'"item_id": "') + len(b'"item_id": "')
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
        return good[:cut] + junk + good[cut:]
    if kind == 7:  # a raw NUL byte or control character where JSON forbids it
        junk = draw(st.sampled_from([b"\x00", b"\x01", b"\x1f"]))
        return b'{"item_id": "a' + junk + b'"}'
    if kind == 8:  # nesting deeper than a decoder's recursion
        depth = draw(st.sampled_from([2_000, 20_000, 100_000]))
        field = draw(st.sampled_from(["payload", "error"]))
        return f'{{"item_id": "a", "{field}": {nested(depth)}}}'.encode()
    if kind == 9:  # a number outside 64 bits
        return b'{"item_id": "a", "exit_code": ' + str(2**64).encode() + b"}"
    if kind == 10:  # a lone surrogate escaped in an id
        return b'{"item_id": "a\\ud800"}'
    return good + b" trailing"


_FIELDS = {
    "item_id",
    "job_id",
    "payload",
    "error",
    "error_type",
    "exit_code",
    "signal",
    "command",
    "correlation_id",
    "output",
    "failure_id",
}


def dlq(*args: str | Path, stdin: bytes | None = None) -> Result:
    return runner.invoke(
        app, [str(arg) for arg in args], input=stdin, catch_exceptions=False
    )


def event_count(log: Path) -> int:
    return sum(table.num_rows for table in EventLog.open(log).iter_tables())


def assert_refused(result: Result, source: str, line: int) -> None:
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {source}, line {line}: "), result.stderr
    assert result.stderr.endswith("; nothing was imported\n"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def seeded_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("import") / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    return log


_tally = {"trials": 0, "faults": 0, "checked": 0, "lost": 0}


@seed(20261204)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    lines=st.lists(
        valid_lines().map(lambda line: (True, line))
        | bad_lines().map(lambda line: (False, line))
        | st.just((True, b"")),
        min_size=1,
        max_size=6,
    )
)
def test_hostile_lines_are_refused_by_number_or_imported_whole(
    seeded_log: Path,
    lines: list[tuple[bool, bytes]],
    tree_hash: Callable[[Path], str],
) -> None:
    before = tree_hash(seeded_log)
    events_before = event_count(seeded_log)
    stdin = b"".join(line + b"\n" for _, line in lines)
    first_bad = next((n for n, (ok, _) in enumerate(lines, 1) if not ok), None)

    result = dlq("import", "-", "--log", seeded_log, stdin=stdin)

    _tally["trials"] += 1
    if first_bad is not None:
        _tally["faults"] += 1
        assert_refused(result, "<stdin>", first_bad)
        assert tree_hash(seeded_log) == before
    else:
        assert result.exit_code == 0, result.stderr
        valid = sum(1 for _, line in lines if line)
        assert result.stderr == f"imported {valid} items\n"
        added = event_count(seeded_log) - events_before
        _tally["checked"] += valid
        _tally["lost"] += valid - added
        assert added == valid


def test_hostile_import_figures(seeded_log: Path, figures: Any) -> None:
    """Count what the property test above tried (it runs first, in file order)."""
    assert _tally["trials"] > 0
    figures.add(
        "hostile dlq import lines",
        trials=_tally["trials"],
        faults=_tally["faults"],
        events_checked=_tally["checked"],
        events_lost=_tally["lost"],
    )


NAMED = {
    "unknown field with a newline": (b'{"item_id": "a", "x\\nb": 1}', "unknown field"),
    "unknown field with a line separator": (
        '{"item_id": "a", "x\u2028b": 1}'.encode(),
        "unknown field",
    ),
    "100k levels in the payload": (
        f'{{"item_id": "a", "payload": {nested(100_000)}}}'.encode(),
        "nested too deeply",
    ),
    "100k levels of objects": (
        b'{"item_id": "a", "payload": ' + b'{"k": ' * 100_000 + b"1" + b"}" * 100_001,
        "nested too deeply",
    ),
    "a NUL byte in an id": (b'{"item_id": "a\x00"}', "not valid JSON"),
    "an escaped NUL in an id": (b'{"item_id": "a\\u0000"}', "NUL"),
    "invalid UTF-8": (b'{"item_id": "\xff"}', "not valid JSON"),
}


@pytest.mark.parametrize(("line", "problem"), NAMED.values(), ids=list(NAMED))
def test_named_hostile_lines_are_refused_on_one_line(
    tmp_path: Path,
    line: bytes,
    problem: str,
    figures: Any,
    tree_hash: Callable[[Path], str],
) -> None:
    log = tmp_path / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    before = tree_hash(log)

    result = dlq("import", "-", "--log", log, stdin=b'{"item_id": "ok"}\n' + line)

    assert_refused(result, "<stdin>", 2)
    assert problem in result.stderr
    assert tree_hash(log) == before
    figures.add("hostile dlq import lines", trials=1, faults=1)


def big_inputs(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    """Inputs too big for the runner's in-memory stdin, and the bad line."""
    ok = b'{"item_id": "ok"}\n'
    ten_mb = b'{"item_id": "big", "output": "' + b"o" * 10_000_000 + b'"}\n'
    deep = f'{{"item_id": "deep", "payload": {nested(100_000)}}}\n'.encode()
    return {
        "a 10 MB line": (ok + ten_mb + ok, 2),
        "a 10 MB line of broken JSON": (ok * 2 + ten_mb[:-3] + b"\n", 3),
        "100k levels after 10k good lines": (ok * 10_000 + deep, 10_001),
        "invalid UTF-8 after a 3 MB line": (
            b'{"item_id": "x", "output": "' + b"o" * 3_000_000 + b'"}\n'
            b'{"item_id": "\xc3("}\n',
            2,
        ),
    }


def test_big_hostile_inputs_are_refused_by_a_real_process(
    tmp_path: Path, figures: Any, tree_hash: Callable[[Path], str]
) -> None:
    log = tmp_path / "log"
    assert dlq("add", "existing", "--log", log).exit_code == 0
    before = tree_hash(log)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    refused = 0
    for name, (data, line) in big_inputs(tmp_path).items():
        source = tmp_path / "input.jsonl"
        source.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-m", "dlq", "import", str(source), "--log", str(log)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 1, (name, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith(f"error: {source}, line {line}: "), name
        assert done.stderr.endswith("; nothing was imported\n"), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert tree_hash(log) == before, name
        refused += 1

    assert event_count(log) == 1
    figures.add(
        "hostile dlq import lines (big, real process)",
        trials=len(big_inputs(tmp_path)),
        faults=refused,
        events_checked=1,
        events_lost=1 - event_count(log),
    )
