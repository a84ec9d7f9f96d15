"""`dlq query` with SQL that tries to write, to read outside the log, or to
change the session: each refused on one line, and nothing written anywhere."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlq import app

runner = CliRunner()

ATTACKS = [
    "COPY (SELECT * FROM items) TO '{out}/stolen.csv'",
    "COPY items TO '{log}/sealed/evil.parquet' (FORMAT parquet)",
    "COPY (SELECT 1) TO '{log}/manifest.jsonl'",
    "copy events to '{log}/x.json'",
    "/* hidden */ COPY items TO '{out}/c.csv'",
    "EXPLAIN ANALYZE COPY items TO '{out}/e.csv'",
    "WITH t AS (SELECT 1) SELECT * FROM t; COPY items TO '{out}/w.csv'",
    "SELECT 1; SELECT 2",
    "SELECT 1;;COPY items TO '{out}/s.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_json('{out}/secret.json')",
    "SELECT * FROM read_text('{log}/manifest.jsonl')",
    "SELECT * FROM read_parquet('{log}/sealed/*.parquet')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM '{out}/secret.json'",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM glob('{log}/*')",
    "SELECT * FROM read_text('../../../../etc/passwd')",
    "ATTACH '{out}/other.db' AS other",
    "ATTACH ':memory:' AS m",
    "INSTALL httpfs",
    "LOAD httpfs",
    "FORCE INSTALL json",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET temp_directory = '{out}'",
    "RESET enable_external_access",
    "PRAGMA enable_profiling",
    "PRAGMA database_list",
    "CALL pragma_version()",
    "CREATE TABLE t AS SELECT * FROM items",
    "CREATE MACRO m() AS 1",
    "EXPORT DATABASE '{out}/dump'",
    "INSERT INTO items SELECT * FROM items",
    "DROP VIEW items",
    "CHECKPOINT",
    "BEGIN TRANSACTION",
]


def files_under(root: Path) -> set[str]:
    return {os.path.join(r, n) for r, ds, ns in os.walk(root) for n in [*ns, *ds]}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("query")
    log = out / "log"
    for item in ("a", "b"):
        added = runner.invoke(app, ["add", item, "--log", str(log), "--error", "x"])
        assert added.exit_code == 0, added.stderr
    (out / "secret.json").write_text('{"password": "hunter2"}\n')
    return out, log


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_through_dlq_query_is_refused_and_writes_nothing(
    scene: tuple[Path, Path],
    attack: str,
    figures: Any,
    tree_hash: Callable[[Path], str],
) -> None:
    out, log = scene
    before, listing = tree_hash(log), files_under(out)
    sql = attack.format(out=out, log=log)

    result = runner.invoke(app, ["query", sql, "--log", str(log)])

    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code != 0, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert "root:" not in result.stderr
    assert tree_hash(log) == before
    assert files_under(out) == listing
    figures.add("SQL attacks through dlq query", trials=1, faults=1)


def test_a_plain_read_still_works_after_the_attacks(
    scene: tuple[Path, Path], figures: Any
) -> None:
    _, log = scene

    result = runner.invoke(
        app,
        [
            "query",
            "SELECT count(*) AS n FROM items",
            "--format",
            "csv",
            "--log",
            str(log),
        ],
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "n\n2\n"
    figures.add(
        "SQL attacks through dlq query",
        events_checked=2,
        events_lost=2 - int(result.stdout.split()[1]),
    )
