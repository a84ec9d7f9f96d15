"""`dlq export`: items or events to Parquet, CSV, JSON or JSON Lines files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()

RECORDS = (
    b'{"item_id": "a", "job_id": "nightly", "exit_code": 2, "error": "x, \\"y\\"\\n2",'
    b' "payload": {"url": "s3://b/1"}}\n'
    b'{"item_id": "b", "job_id": "nightly"}\n'
    b'{"item_id": "c", "job_id": "hourly", "exit_code": 137, "error": "oom",'
    b' "payload": [1, 2]}\n'
)
FILE_FORMATS = ("jsonl", "json", "csv", "parquet")


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


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
    result = dlq("add", "b", "--job", "nightly", "--error", "again", "--log", path)
    assert result.exit_code == 0, result.stderr
    return path


def listed(log: Path, *options: str) -> list[dict[str, Any]]:
    result = dlq("list", "--json", *options, "--log", log)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def queried(log: Path, sql: str) -> list[dict[str, Any]]:
    result = dlq("query", sql, "--format", "json", "--log", log)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def read_back(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The rows of an exported file as DuckDB reads them, every value as text
    (or null), so that they compare with `dlq list --json` made text too."""
    reader = {
        "jsonl": "read_json(?, format = 'newline_delimited')",
        "json": "read_json(?, format = 'array')",
        "csv": "read_csv(?, header = true, all_varchar = true)",
        "parquet": "read_parquet(?)",
    }[fmt]
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    table = conn.sql(f"SELECT * FROM {reader}", params=[str(path)]).to_arrow_table()
    return [as_text(row) for row in table.to_pylist()]


def as_text(row: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in row.items():
        if value is None:
            out[key] = None
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat(timespec="microseconds").replace("+00:00", "Z")
        else:
            out[key] = str(value)
    return out


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_every_format_reads_back_as_dlq_list_shows_the_items(
    log: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"items.{fmt}"

    result = dlq("export", out, "--format", fmt, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"wrote 3 items to {out} ({fmt})\n"
    assert read_back(out, fmt) == [as_text(row) for row in listed(log)]


def test_parquet_keeps_the_column_types(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.parquet"

    result = dlq("export", out, "--format", "parquet", "--log", log)

    assert result.exit_code == 0, result.stderr
    schema = pq.read_schema(out)
    assert schema.field("attempts").type == pa.int64()
    assert schema.field("last_exit_code").type == pa.int64()
    assert pa.types.is_timestamp(schema.field("updated_at").type)
    assert schema.field("updated_at").type.tz is not None
    table = pq.read_table(out)
    assert table.column("item_id").to_pylist() == ["a", "b", "c"]
    assert table.column("failures").to_pylist() == [1, 2, 1]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_where_keeps_only_the_items_it_selects(
    log: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"nightly.{fmt}"
    where = "job_id = 'nightly'"

    result = dlq("export", out, "--format", fmt, "--where", where, "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote 2 items to {out} ({fmt})\n"
    expected = [as_text(row) for row in listed(log, "--where", where)]
    assert [row["item_id"] for row in expected] == ["a", "b"]
    assert read_back(out, fmt) == expected


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_events_are_every_raw_event(log: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"events.{fmt}"

    result = dlq("export", out, "--format", fmt, "--events", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote 4 events to {out} ({fmt})\n"
    expected = queried(log, "SELECT * FROM events")
    assert read_back(out, fmt) == [as_text(row) for row in expected]


def test_events_with_where_are_those_of_the_selected_items(
    log: Path, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"

    result = dlq("export", out, "--events", "--where", "item_id = 'b'", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote 2 events to {out} (jsonl)\n"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == queried(log, "SELECT * FROM events WHERE item_id = 'b'")
    assert [row["error"] for row in rows] == [None, "again"]


def test_an_empty_selection_writes_an_empty_file_of_its_format(
    log: Path, tmp_path: Path
) -> None:
    where = "false"
    for fmt in FILE_FORMATS:
        out = tmp_path / f"none.{fmt}"
        result = dlq("export", out, "--format", fmt, "--where", where, "--log", log)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == f"wrote 0 items to {out} ({fmt})\n"
    assert json.loads((tmp_path / "none.json").read_text()) == []
    assert (tmp_path / "none.jsonl").read_bytes() == b""
    assert (tmp_path / "none.csv").read_text().startswith('"item_id","status"')
    assert pq.read_table(tmp_path / "none.parquet").num_rows == 0


# -- refusals ------------------------------------------------------------------


def test_an_existing_out_is_refused_without_force(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    out.write_text("keep me")
    before = snapshot(log)

    result = dlq("export", out, "--format", "csv", "--log", log)

    assert result.exit_code == 2
    assert result.stderr == f"error: {out} exists already; give --force to replace it\n"
    assert out.read_text() == "keep me"
    assert snapshot(log) == before


def test_force_replaces_an_existing_out(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    out.write_text("old")

    result = dlq("export", out, "--force", "--log", log)

    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["item_id"] for line in out.read_text().splitlines()] == [
        "a",
        "b",
        "c",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "log"]


@pytest.mark.parametrize("place", ["log/items.csv", "log/sealed/x.parquet", "log"])
def test_out_inside_the_log_is_refused(log: Path, tmp_path: Path, place: str) -> None:
    before = snapshot(log)

    result = dlq("export", tmp_path / place, "--force", "--log", log)

    assert result.exit_code == 2
    assert result.stderr == "error: OUT must not be inside the log directory\n"
    assert snapshot(log) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--format", "xml"],
            "unknown --format 'xml'; use one of jsonl, json, csv, parquet, prodigy",
        ),
        (
            ["--format", "prodigy", "--events"],
            "--events cannot be written as prodigy, which holds items",
        ),
    ],
)
def test_bad_usage_is_one_line_and_writes_nothing(
    log: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    out = tmp_path / "out"
    before = snapshot(log)

    result = dlq("export", out, *options, "--log", log)

    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert not out.exists()
    assert snapshot(log) == before


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("nope = 1", 'Binder Error: Referenced column "nope" not found'),
        (
            "true); DROP TABLE x; (",
            "the where condition closes a parenthesis it did not open",
        ),
    ],
)
def test_a_bad_where_fails_and_leaves_nothing_behind(
    log: Path, tmp_path: Path, where: str, message: str
) -> None:
    before = snapshot(log)

    result = dlq("export", tmp_path / "x.csv", "--where", where, "--log", log)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    assert snapshot(log) == before


def test_out_in_a_missing_directory_is_one_line(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "items.csv"

    result = dlq("export", out, "--log", log)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: No such file or directory (")
    assert not out.parent.exists()


def test_export_without_a_log_is_one_line(tmp_path: Path) -> None:
    result = dlq("export", tmp_path / "x.csv", "--log", tmp_path / "none")

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: no dead-letter queue at {tmp_path / 'none'}"
    )
    assert not (tmp_path / "x.csv").exists()
