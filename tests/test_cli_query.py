"""`dlq query`: one read-only statement over the views, in four formats."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import EventLog, format_ts

runner = CliRunner()

RECORDS = (
    b'{"item_id": "a", "job_id": "nightly", "exit_code": 2, "error": "x, \\"y\\""}\n'
    b'{"item_id": "b", "job_id": "nightly"}\n'
    b'{"item_id": "c", "job_id": "hourly", "exit_code": 137, "error": "oom"}\n'
)
ITEMS_SQL = "SELECT item_id, job_id, last_exit_code, last_error FROM items ORDER BY 1"
ITEMS = [
    {"item_id": "a", "job_id": "nightly", "last_exit_code": 2, "last_error": 'x, "y"'},
    {"item_id": "b", "job_id": "nightly", "last_exit_code": None, "last_error": None},
    {"item_id": "c", "job_id": "hourly", "last_exit_code": 137, "last_error": "oom"},
]


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


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    result = runner.invoke(app, ["import", "-", "--log", str(path)], input=RECORDS)
    assert result.exit_code == 0, result.stderr
    return path


def query(log: Path, sql: str, *options: str | Path) -> str:
    """The stdout of a query that must succeed without a word on stderr."""
    result = dlq("query", sql, *options, "--log", log)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


# -- formats -------------------------------------------------------------------


def test_query_as_a_table_by_default(log: Path) -> None:
    text = query(log, ITEMS_SQL)

    rows = [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in text.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert rows == [
        ["item_id", "job_id", "last_exit_code", "last_error"],
        ["a", "nightly", "2", 'x, "y"'],
        ["b", "nightly", "", ""],
        ["c", "hourly", "137", "oom"],
    ]


def test_query_as_csv(log: Path) -> None:
    text = query(log, ITEMS_SQL, "--format", "csv")

    assert list(csv.reader(io.StringIO(text))) == [
        ["item_id", "job_id", "last_exit_code", "last_error"],
        ["a", "nightly", "2", 'x, "y"'],
        ["b", "nightly", "", ""],
        ["c", "hourly", "137", "oom"],
    ]


def test_query_as_json(log: Path) -> None:
    text = query(log, ITEMS_SQL, "--format", "json")

    assert json.loads(text) == ITEMS
    assert text.count("\n") == 1


def test_query_as_json_lines(log: Path) -> None:
    text = query(log, ITEMS_SQL, "--format", "jsonl")

    assert [json.loads(line) for line in text.splitlines()] == ITEMS


def test_query_with_no_rows(log: Path) -> None:
    sql = "SELECT item_id FROM items WHERE false"

    assert json.loads(query(log, sql, "--format", "json")) == []
    assert query(log, sql, "--format", "jsonl") == ""
    assert query(log, sql, "--format", "csv") == "item_id\n"


def test_times_are_written_as_the_log_stores_them(log: Path) -> None:
    stored = [
        (row["event_id"], format_ts(row["ts"]))
        for table in EventLog.open(log).iter_tables(["event_id", "ts"])
        for row in table.to_pylist()
    ]

    text = query(log, "SELECT event_id, ts FROM events", "--format", "jsonl")

    assert [tuple(json.loads(line).values()) for line in text.splitlines()] == sorted(
        stored
    )


def test_a_whole_second_keeps_its_six_digits(log: Path) -> None:
    sql = "SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00' AS t"

    assert json.loads(query(log, sql, "--format", "json")) == [
        {"t": "2024-01-02T03:04:05.000000Z"}
    ]
    assert query(log, sql, "--format", "csv") == "t\n2024-01-02T03:04:05.000000Z\n"


def test_nested_values_become_json_in_csv(log: Path) -> None:
    sql = "SELECT [1, 2] AS l, {'k': 'v'} AS s"

    assert json.loads(query(log, sql, "--format", "json")) == [
        {"l": [1, 2], "s": {"k": "v"}}
    ]
    rows = list(csv.reader(io.StringIO(query(log, sql, "--format", "csv"))))
    assert rows == [["l", "s"], ["[1,2]", '{"k":"v"}']]


def test_query_uses_dlq_log_from_the_environment(log: Path) -> None:
    result = dlq(
        "query",
        "SELECT count(*) AS n FROM items",
        "--format",
        "json",
        env={"DLQ_LOG": str(log)},
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 3}]


def test_an_unknown_format_is_bad_usage(log: Path) -> None:
    result = dlq("query", "SELECT 1", "--format", "xml", "--log", log)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: unknown --format 'xml'; use one of table, csv, json, jsonl\n"
    )


# -- output files --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "jsonl"])
def test_output_writes_what_stdout_would_show(
    log: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"result.{fmt}"

    result = dlq("query", ITEMS_SQL, "--format", fmt, "--output", out, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"wrote 3 rows to {out}\n"
    assert out.read_text(encoding="utf-8") == query(log, ITEMS_SQL, "--format", fmt)


@pytest.mark.parametrize(
    "place",
    ["log/out.csv", "log/sealed/out.parquet", "log", "elsewhere/../log/x.csv"],
)
def test_output_inside_the_log_is_refused(
    log: Path, tmp_path: Path, place: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    before = snapshot(tmp_path)

    result = dlq("query", ITEMS_SQL, "--output", tmp_path / place, "--log", log)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: --output must not be inside the log directory\n"
    assert snapshot(tmp_path) == before


def test_output_through_a_link_into_the_log_is_refused(
    log: Path, tmp_path: Path
) -> None:
    (tmp_path / "link").symlink_to(log, target_is_directory=True)
    before = snapshot(tmp_path)

    result = dlq(
        "query", ITEMS_SQL, "--output", tmp_path / "link" / "x.csv", "--log", log
    )

    assert result.exit_code == 2
    assert result.stderr == "error: --output must not be inside the log directory\n"
    assert snapshot(tmp_path) == before


def test_output_into_a_missing_directory_is_one_line(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir.csv"

    result = dlq("query", ITEMS_SQL, "--output", out, "--log", log)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert str(out) in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_failed_query_writes_no_output(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.csv"

    result = dlq("query", "SELECT nope FROM items", "--output", out, "--log", log)

    assert result.exit_code == 1
    assert not out.exists()


# -- mistakes and refusals -----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC item_id FROM items",
        "SELECT item_idd FROM items",
        "SELECT * FROM itemz",
        "SELECT * FROM items WHERE",
        "SELECT 'unterminated",
        "",
    ],
)
def test_a_wrong_query_is_one_line_on_stderr(log: Path, sql: str) -> None:
    result = dlq("query", sql, "--log", log)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_typo_is_named(log: Path) -> None:
    result = dlq("query", "SELEC item_id FROM items", "--log", log)

    assert result.exit_code == 1
    assert result.stderr == 'error: Parser Error: syntax error at or near "SELEC"\n'


_REFUSED = (
    "error: only a single read-only SELECT (or WITH, FROM, VALUES, DESCRIBE, SHOW, "
    "SUMMARIZE or EXPLAIN of one) is allowed; "
)
# Where {tmp} is the test's directory (outside the log) and {log} the log's.
FORBIDDEN = {
    "copy-to-file": (
        "COPY (SELECT * FROM events) TO '{tmp}/stolen.csv'",
        "COPY statements are refused",
    ),
    "copy-into-log": (
        "COPY events TO '{log}/sealed/forged.parquet' (FORMAT parquet)",
        "COPY statements are refused",
    ),
    "export": ("EXPORT DATABASE '{tmp}/exported'", "EXPORT statements are refused"),
    "read-csv": ("SELECT * FROM read_csv('{tmp}/secret.txt')", None),
    "read-text": ("SELECT content FROM read_text('{tmp}/secret.txt')", None),
    "read-json": ("SELECT * FROM read_json_auto('{tmp}/secret.txt')", None),
    "attach": ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH statements are refused"),
    "install": ("INSTALL httpfs", "INSTALL statements are refused"),
    "load": ("LOAD httpfs", "LOAD statements are refused"),
    "set": ("SET enable_external_access = true", "SET statements are refused"),
    "pragma": (
        "PRAGMA profiling_output = '{tmp}/profile.json'",
        "PRAGMA statements are refused",
    ),
    "two-statements": (
        "SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'",
        "got 2 statements",
    ),
    "create-table": (
        "CREATE TABLE kept AS SELECT * FROM events",
        "CREATE statements are refused",
    ),
    "explain-analyze-copy": (
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp}/explained.csv'",
        "EXPLAIN of COPY statements is refused",
    ),
}


@pytest.mark.parametrize(("sql", "refusal"), FORBIDDEN.values(), ids=FORBIDDEN)
def test_a_forbidden_query_is_refused_and_creates_nothing(
    log: Path, tmp_path: Path, sql: str, refusal: str | None
) -> None:
    (tmp_path / "secret.txt").write_text("secret-token,1\n")
    before = snapshot(tmp_path)

    result = dlq("query", sql.format(tmp=tmp_path, log=log), "--log", log)

    assert result.exit_code == 1
    assert result.stdout == ""
    if refusal is None:
        assert result.stderr.startswith("error: queries may read only the log's ")
        assert result.stderr.count("\n") == 1
    else:
        assert result.stderr == f"{_REFUSED}{refusal}\n"
    assert "secret-token" not in result.stderr
    assert snapshot(tmp_path) == before


def test_query_without_a_log(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"

    result = dlq("query", "SELECT 1", "--output", out, "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")
    assert list(tmp_path.iterdir()) == []


def test_sql_that_is_not_utf8_is_refused(log: Path) -> None:
    sql = b"SELECT '\xff'".decode("utf-8", "surrogateescape")

    result = dlq("query", sql, "--log", log)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: SQL is not valid UTF-8 text\n"
