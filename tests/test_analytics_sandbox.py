"""A person's SQL can read the log's events and nothing else, and change nothing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import duckdb
import pytest

from analytics import ForbiddenQueryError, QueryError, connect, list_items, run_query
from eventlog import EventLog, import_records

ALLOWED = (
    r"only a single read-only SELECT \(or WITH, FROM, VALUES, DESCRIBE, SHOW, "
    r"SUMMARIZE or EXPLAIN of one\) is allowed"
)


@pytest.fixture
def conn(log: EventLog) -> duckdb.DuckDBPyConnection:
    import_records(log, io.BytesIO(b'{"item_id": "a"}\n'), source="test")
    return connect(log)


def files_under(path: Path) -> set[Path]:
    return {Path(root) / name for root, _, names in os.walk(path) for name in names}


@pytest.mark.parametrize("inside_log", [True, False])
def test_copy_to_a_file_is_refused_and_creates_nothing(
    conn: duckdb.DuckDBPyConnection, log: EventLog, tmp_path: Path, inside_log: bool
) -> None:
    target = (log.path if inside_log else tmp_path) / "out.csv"
    before = files_under(tmp_path)

    with pytest.raises(
        ForbiddenQueryError, match=rf"^{ALLOWED}; COPY statements are refused$"
    ):
        run_query(conn, f"COPY (SELECT * FROM items) TO '{target}'")

    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("ATTACH '{log}/other.db' AS other", "ATTACH"),
        ("DETACH memory", "DETACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD json", "LOAD"),
        ("SET threads = 1", "SET"),
        ("SET VARIABLE x = 1", "SET"),
        ("RESET threads", "RESET"),
        ("PRAGMA version", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("CREATE TABLE t AS SELECT * FROM items", "CREATE"),
        ("CREATE TEMP VIEW v AS SELECT 1", "CREATE"),
        ("INSERT INTO items VALUES (1)", "INSERT"),
        ("DROP VIEW items", "DROP"),
        ("EXPORT DATABASE '{log}/dump'", "EXPORT"),
        ("IMPORT DATABASE '{log}'", "IMPORT"),
        ("USE memory", "USE"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("BEGIN", "BEGIN"),
        ("/* a comment first */ COPY items TO '{log}/x.csv'", "COPY"),
    ],
)
def test_statements_that_do_more_than_read_are_refused(
    conn: duckdb.DuckDBPyConnection, log: EventLog, sql: str, word: str
) -> None:
    before = files_under(log.path)

    with pytest.raises(
        ForbiddenQueryError, match=rf"^{ALLOWED}; {word} statements are refused$"
    ):
        run_query(conn, sql.format(log=log.path))

    assert files_under(log.path) == before
    assert run_query(conn, "SELECT count(*) AS n FROM items").to_pylist() == [{"n": 1}]


def test_two_statements_are_refused_even_when_both_read(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(ForbiddenQueryError, match=rf"^{ALLOWED}; got 2 statements$"):
        run_query(conn, "SELECT 1; SELECT 2")


def test_explain_of_a_statement_that_writes_is_refused(
    conn: duckdb.DuckDBPyConnection, log: EventLog
) -> None:
    with pytest.raises(
        ForbiddenQueryError,
        match=rf"^{ALLOWED}; EXPLAIN of CREATE statements is refused$",
    ):
        run_query(conn, "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1")
    with pytest.raises(ForbiddenQueryError, match=r"EXPLAIN of COPY statements"):
        run_query(conn, f"EXPLAIN ANALYZE (FORMAT json) COPY items TO '{log.path}/x'")

    assert run_query(conn, "EXPLAIN ANALYZE SELECT * FROM items").num_rows == 1


@pytest.mark.parametrize("reader", ["read_csv", "read_json", "read_text"])
def test_files_outside_the_log_cannot_be_read(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, reader: str
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}\n')

    with pytest.raises(ForbiddenQueryError, match=r"^queries may read only .*"):
        run_query(conn, f"SELECT * FROM {reader}('{secret}')")


def test_the_log_files_themselves_cannot_be_read_by_other_means(
    conn: duckdb.DuckDBPyConnection, log: EventLog
) -> None:
    with pytest.raises(ForbiddenQueryError):
        run_query(conn, f"SELECT * FROM read_text('{log.path}/dlq-log.json')")
    with pytest.raises(ForbiddenQueryError):
        run_query(conn, f"SELECT * FROM glob('{log.path}/*')")


def test_the_connection_itself_is_locked_down(
    conn: duckdb.DuckDBPyConnection, log: EventLog
) -> None:
    """What the statement check would let through, DuckDB refuses anyway."""
    with pytest.raises(duckdb.PermissionException):
        conn.execute(f"COPY (SELECT 1) TO '{log.path}/x.csv'")
    with pytest.raises(duckdb.PermissionException):
        conn.execute(f"ATTACH '{log.path}/x.db'")
    with pytest.raises(duckdb.Error, match=r"configuration has been locked"):
        conn.execute("SET enable_external_access = true")
    assert conn.sql("SELECT current_setting('temp_directory')").fetchall() == [("",)]
    assert conn.sql("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]

    assert not (log.path / "x.db").exists()
    assert not (log.path / "x.csv").exists()


@pytest.mark.parametrize(
    "where",
    [
        "1=1; COPY items TO '/tmp/out.csv'",
        "1=1) UNION ALL SELECT * FROM items WHERE (1=1",
        "true) OR (true",
        "1=1)--",
    ],
)
def test_a_where_condition_cannot_escape_its_parentheses(
    conn: duckdb.DuckDBPyConnection, where: str
) -> None:
    with pytest.raises(ForbiddenQueryError, match=r"^the where condition "):
        list_items(conn, where=where)


def test_a_where_condition_may_hold_parentheses_and_semicolons_in_strings(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    table = list_items(conn, where="item_id <> ')' AND item_id <> ';' -- (")

    assert table.column("item_id").to_pylist() == ["a"]


def test_a_where_condition_is_checked_like_any_query(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")

    with pytest.raises(ForbiddenQueryError):
        list_items(conn, where=f"item_id IN (SELECT a FROM read_csv('{outside}'))")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC * FROM items", r'^Parser Error: syntax error at or near "SELEC"$'),
        ("SELECT * FROM itemz", r"^Catalog Error: .*itemz.*$"),
        ("SELECT nope FROM items", r'^Binder Error: .*"nope".*$'),
        ("", r"^the query is empty; "),
    ],
)
def test_a_mistake_in_sql_is_a_query_error_on_one_line(
    conn: duckdb.DuckDBPyConnection, sql: str, message: str
) -> None:
    with pytest.raises(QueryError, match=message) as caught:
        run_query(conn, sql)

    assert not isinstance(caught.value, ForbiddenQueryError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (SELECT * FROM items) SELECT count(*) FROM x",
        "FROM events",
        "DESCRIBE items",
        "SHOW TABLES",
        "SUMMARIZE items",
        "VALUES (1)",
        "EXPLAIN SELECT * FROM items",
        "PIVOT items ON status IN ('pending') USING count(*)",
    ],
)
def test_read_only_statements_of_every_kind_run(
    conn: duckdb.DuckDBPyConnection, sql: str
) -> None:
    assert run_query(conn, sql).num_rows >= 1
