"""Error signatures and error types: the SQL macros, run on a real DuckDB.

The heart of it is ``SAME_ERROR``: groups of realistic messages, where every
message of a group must get its group's signature and no two groups may share
one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

import analytics
import analytics._signatures as signatures
from analytics._signatures import MACROS

TRACEBACK = "Traceback (most recent call last):\n"


def python_traceback(path: str, line: int, exception: str) -> str:
    return (
        f"{TRACEBACK}"
        f'  File "{path}", line {line}, in <module>\n'
        "    main()\n"
        f'  File "{path}", line {line + 30}, in main\n'
        "    n = int(row['qty'])\n"
        f"{exception}\n"
    )


def java_trace(exception: str, line: int) -> str:
    return (
        f'Exception in thread "main" {exception}\n'
        f"\tat com.example.queue.Worker.run(Worker.java:{line})\n"
        f"\tat java.base/java.lang.Thread.run(Thread.java:{line + 791})\n"
        "Caused by: java.io.IOException: Broken pipe\n"
        "\tat com.example.queue.Sink.write(Sink.java:17)\n"
        "\t... 2 more\n"
    )


def go_panic(index: int, length: int, path: str) -> str:
    return (
        f"panic: runtime error: index out of range [{index}] with length {length}\n"
        "\n"
        "goroutine 1 [running]:\n"
        "main.main()\n"
        f"\t{path}:8 +0x1d\n"
        "exit status 2\n"
    )


def requests_http_error(code: str, url: str) -> str:
    return f"requests.exceptions.HTTPError: {code} for url: {url}"


def connection_refused(address: str, url: str) -> str:
    return (
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host="
        f"'api.example.com', port=443): Max retries exceeded with url: {url} "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection "
        f"object at {address}>: Failed to establish a new connection: "
        "[Errno 111] Connection refused'))"
    )


# Each group is one error; its messages differ only in what varies between
# occurrences of that error.
SAME_ERROR: dict[str, list[str]] = {
    "python ValueError traceback": [
        python_traceback(
            "/app/jobs/import.py",
            12,
            "ValueError: invalid literal for int() with base 10: 'abc'",
        ),
        python_traceback(
            "/srv/worker/tasks.py",
            310,
            "ValueError: invalid literal for int() with base 10: '12.5'",
        ),
        python_traceback(
            "jobs/import.py",
            7,
            "ValueError: invalid literal for int() with base 10: ''",
        ).replace("\n", "\r\n"),
        "ValueError: invalid literal for int() with base 10: 'x'\n\n",
    ],
    "python KeyError": [
        python_traceback("/app/a.py", 3, "KeyError: 'customer_id'"),
        python_traceback("/app/b.py", 99, "KeyError: 'email'"),
    ],
    "python TypeError with the ValueError's words": [
        "TypeError: invalid literal for int() with base 10: 'abc'",
    ],
    "missing input file": [
        "FileNotFoundError: [Errno 2] No such file or directory: '/data/in/0042.json'",
        python_traceback(
            "/app/load.py",
            5,
            "FileNotFoundError: [Errno 2] No such file or directory: "
            "'/data/in/2024-03-01/batch 7.json'",
        ),
    ],
    "chained exceptions end with the last one raised": [
        f"{TRACEBACK}"
        '  File "/app/run.py", line 8, in load\n'
        "    return json.load(f)\n"
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        f"{TRACEBACK}"
        '  File "/app/run.py", line 12, in <module>\n'
        "    load(path)\n"
        "RuntimeError: could not load batch 17\n",
        "RuntimeError: could not load batch 18",
    ],
    "JSON decode error": [
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        "json.decoder.JSONDecodeError: Expecting value: line 3 column 17 (char 42)",
    ],
    "Ctrl-C": [
        python_traceback("/app/a.py", 1, "KeyboardInterrupt"),
        f'{TRACEBACK}  File "/usr/lib/python3.11/threading.py", line 1583, in '
        "_shutdown\n    lock.acquire()\nKeyboardInterrupt",
    ],
    "HTTP 503 from requests": [
        requests_http_error(
            "503 Server Error: Service Unavailable",
            "https://api.example.com/v1/items/123?expand=true",
        ),
        requests_http_error(
            "503 Server Error: Service Unavailable",
            "https://api.example.com/v2/orders/3f2a9c1e-8b7d-4e6f-a5b4-c3d2e1f0a9b8",
        ),
        requests_http_error(
            "503 Server Error: Service Unavailable",
            "https://user:secret@api.example.com:8443/health",
        ),
    ],
    "HTTP 404 from requests": [
        requests_http_error(
            "404 Client Error: Not Found",
            "https://api.example.com/v1/items/123?expand=true",
        ),
        requests_http_error(
            "404 Client Error: Not Found", "https://api.example.com/v1/items/9"
        ),
    ],
    "HTTP 404 from urllib": [
        "urllib.error.HTTPError: HTTP Error 404: Not Found",
        f'{TRACEBACK}  File "/usr/lib/python3.11/urllib/request.py", line 643, '
        "in http_error_default\n    raise HTTPError(req.full_url, code, msg, "
        "hdrs, fp)\nurllib.error.HTTPError: HTTP Error 404: Not Found\n",
    ],
    "HTTP 500 from urllib": ["urllib.error.HTTPError: HTTP Error 500: Not Found"],
    "HTTP 404 from httpx": [
        "httpx.HTTPStatusError: Client error '404 Not Found' for url "
        "'https://api.example.com/v1/items/1'",
        "httpx.HTTPStatusError: Client error '404 Not Found' for url "
        "'https://api.example.com/v1/items/2?x=1'",
    ],
    "HTTP 410 from httpx": [
        "httpx.HTTPStatusError: Client error '410 Gone' for url "
        "'https://api.example.com/v1/items/1'",
    ],
    "status code 503": [
        "unexpected status code 503 from upstream after 3 tries",
        "unexpected status code 503 from upstream after 12 tries",
    ],
    "status code 502": ["unexpected status code 502 from upstream after 3 tries"],
    "connection refused": [
        connection_refused("0x7f3a2c1d4e50", "/v1/orders/981"),
        connection_refused("0x7f00dead1234", "/v1/orders/982?retry=2"),
    ],
    "the replay's own time-out": [
        "timed out after 30 s",
        "timed out after 5 s",
        "timed out after 0.5 s",
    ],
    "a time-out in any unit": [
        "TimeoutError: operation took longer than 30s",
        "TimeoutError: operation took longer than 1.5 seconds",
        "TimeoutError: operation took longer than 200ms",
        "TimeoutError: operation took longer than 1h30m",
        "TimeoutError: operation took longer than 2 minutes",
    ],
    "UUIDs": [
        "order 3f2a9c1e-8b7d-4e6f-a5b4-c3d2e1f0a9b8 is missing from the ledger",
        "order 0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9 is missing from the ledger",
    ],
    "commit ids": [
        "fatal: bad object 3f2a9c1e8b7d4e6fa5b4c3d2e1f0a9b8c7d6e5f4",
        "fatal: bad object 9d8c7b6",
        "fatal: bad object deadbeefcafe",
    ],
    "addresses": [
        "Segmentation fault at address 0x00007f3a2c1d4e50",
        "Segmentation fault at address 0xdeadbeef",
    ],
    "timestamps": [
        "lease expired at 2024-03-01T12:00:00Z, renew it",
        "lease expired at 2025-11-30 23:59:59.123456+01:00, renew it",
        "lease expired at 2024-03-01T12:00:00.5+0000, renew it",
        "lease expired at 2024-03-01, renew it",
        "lease expired at Tue, 02 Jan 2024 10:00:00 GMT, renew it",
        "lease expired at 07:15:00, renew it",
    ],
    "addresses with ports": [
        "could not reach 10.0.0.5:5432: handshake failed",
        "could not reach 192.168.1.20:6543: handshake failed",
        "could not reach [::1]:5432: handshake failed",
        "could not reach [2001:db8::8a2e:370:7334]:5432: handshake failed",
        "could not reach fe80::1: handshake failed",
    ],
    "e-mail addresses": [
        "recipient jane.doe+test@example.org was rejected",
        "recipient ops@mail.example.co.uk was rejected",
    ],
    "hosts and ids in URLs": [
        "could not reach http://10.0.0.7:8080/health?probe=1",
        "could not reach http://10.0.0.9:9090/health",
    ],
    "object store keys": [
        "NoSuchKey: s3://batch/thumbnails/0012.json",
        "NoSuchKey: s3://batch/invoices/2024/03/0099.json",
    ],
    "paths": [
        "could not read /data/in/batch-17.json: unexpected end of input",
        "could not read ./data/batch-18.json: unexpected end of input",
        "could not read ../fixtures/b.json: unexpected end of input",
        "could not read data/in/c.tar.gz: unexpected end of input",
        "could not read ~/inbox/x.json: unexpected end of input",
        r"could not read C:\data\in\0042.csv: unexpected end of input",
        "could not read /srv/app/reader.py:120: unexpected end of input",
    ],
    "quoted values": [
        "column 'total' of relation \"invoices\" cannot be negative",
        "column 'qty' of relation \"order_lines\" cannot be negative",
        "column '' of relation \"x\" cannot be negative",
    ],
    "numbers": [
        "invoice 12 has a negative total (-12.50 EUR)",
        "invoice 7 has a negative total (-1,234.00 EUR)",
        "invoice 0 has a negative total (-3 EUR)",
    ],
    "ids that are words and numbers": [
        "item thumbnails-0012 has no source",
        "item thumbnails-9 has no source",
        "item thumbnails-77 has no source",
    ],
    "ids joined by an underscore": ["job_7 has no source", "job_1234 has no source"],
    "exit status 1": [
        "subprocess.CalledProcessError: Command '['convert', 'in.png', 'out.jpg']' "
        "returned non-zero exit status 1.",
        "subprocess.CalledProcessError: Command '['convert', 'a.png', 'b.jpg']' "
        "returned non-zero exit status 1.",
    ],
    "exit status 2": [
        "subprocess.CalledProcessError: Command '['convert', 'in.png', 'out.jpg']' "
        "returned non-zero exit status 2.",
    ],
    "exit code 1": ["exit code 1"],
    "exit code 3": ["exit code 3"],
    "curl refused": [
        "curl: (7) Failed to connect to api.example.com port 443 after 3 ms: "
        "Connection refused",
        "curl: (7) Failed to connect to api.example.com port 8443 after 120 ms: "
        "Connection refused",
    ],
    "AWS throttling": [
        "botocore.exceptions.ClientError: An error occurred (ThrottlingException) "
        "when calling the PutRecord operation (reached max retries: 4): Rate "
        "exceeded",
        "botocore.exceptions.ClientError: An error occurred (ThrottlingException) "
        "when calling the PutRecord operation (reached max retries: 9): Rate "
        "exceeded",
    ],
    "PostgreSQL unique violation": [
        "psycopg2.errors.UniqueViolation: duplicate key value violates unique "
        'constraint "orders_pkey"\nDETAIL:  Key (id)=(42) already exists.\n',
        "psycopg2.errors.UniqueViolation: duplicate key value violates unique "
        'constraint "invoices_pkey"\nDETAIL:  Key (id)=(7) already exists.\n'
        "HINT:  Use ON CONFLICT.",
    ],
    "PostgreSQL authentication": [
        'FATAL:  password authentication failed for user "app"',
        'FATAL:  password authentication failed for user "etl"',
    ],
    "PostgreSQL missing table": [
        'ERROR:  relation "public.orders_2024" does not exist\n'
        "LINE 1: SELECT * FROM public.orders_2024\n"
        "                      ^\n",
        'ERROR:  relation "staging" does not exist',
    ],
    "Java exception": [
        java_trace("java.lang.IllegalStateException: queue full (capacity 100)", 42),
        java_trace("java.lang.IllegalStateException: queue full (capacity 2)", 7),
    ],
    "Java connect exception": [
        java_trace("java.net.ConnectException: Connection refused", 42),
    ],
    "Go panic": [
        go_panic(5, 3, "/tmp/sandbox/prog.go"),
        go_panic(17, 4, "/home/ci/src/worker/main.go"),
    ],
    "Node.js missing module": [
        "/app/index.js:3\n"
        "const cfg = require('./config/prod.json');\n"
        "            ^\n\n"
        "Error: Cannot find module './config/prod.json'\n"
        "Require stack:\n- /app/index.js\n"
        "    at Module._resolveFilename (node:internal/modules/cjs/loader:1039:15)\n"
        "    at Object.<anonymous> (/app/index.js:3:13)\n\n"
        "Node.js v18.17.0\n",
        "Error: Cannot find module './config/staging.json'\n"
        "    at Module._resolveFilename (node:internal/modules/cjs/loader:933:15)\n"
        "\nNode.js v20.1.0",
    ],
    "Rust panic": [
        "thread 'main' panicked at src/main.rs:14:5:\n"
        "called `Option::unwrap()` on a `None` value\n"
        "note: run with `RUST_BACKTRACE=1` environment variable to display a "
        "backtrace\n",
        "thread 'worker-3' panicked at src/queue.rs:201:17:\n"
        "called `Option::unwrap()` on a `None` value\n",
    ],
    "shell: command not found": [
        "bash: line 1: resize-images: command not found",
        "bash: line 12: resize-images: command not found",
    ],
    "killed": ["Killed", "Killed\n", "  Killed  \n\n", "Reading input\r\nKilled\r\n"],
    "out of memory": [
        "killed: out of memory (rss 2048 MiB)",
        "killed: out of memory (rss 511 MiB)",
    ],
    "no space left": [
        "OSError: [Errno 28] No space left on device: '/var/tmp/out-17.parquet'",
        "OSError: [Errno 28] No space left on device: '/var/tmp/x'",
    ],
    "a log and then the error": [
        "2024-03-01 12:00:01,123 INFO starting batch 17\n"
        "2024-03-01 12:00:02,456 INFO read 1200 rows\n"
        "error: upstream rejected the batch",
        "2024-03-02 08:00:00,000 INFO starting batch 18\n"
        "error: upstream rejected the batch\n",
    ],
}


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for macro in MACROS:
        connection.execute(macro)
    yield connection
    connection.close()


def one(conn: duckdb.DuckDBPyConnection, sql: str, *args: Any) -> Any:
    row = conn.execute(f"SELECT {sql}", list(args)).fetchone()
    assert row is not None
    return row[0]


def signature(conn: duckdb.DuckDBPyConnection, message: str | None) -> str | None:
    value: str | None = one(conn, "error_signature(?)", message)
    return value


def text(conn: duckdb.DuckDBPyConnection, message: str | None) -> str | None:
    value: str | None = one(conn, "error_text(?)", message)
    return value


def line(conn: duckdb.DuckDBPyConnection, message: str | None) -> str | None:
    value: str | None = one(conn, "error_line(?)", message)
    return value


def classify(
    conn: duckdb.DuckDBPyConnection,
    recorded_type: str | None,
    exit_code: int | None,
    signal: int | None,
    message: str | None,
) -> str:
    value: str = one(
        conn,
        "classify_error(?::VARCHAR, ?::BIGINT, ?::BIGINT, ?::VARCHAR)",
        recorded_type,
        exit_code,
        signal,
        message,
    )
    return value


def test_the_groups_are_many_realistic_messages() -> None:
    assert sum(len(messages) for messages in SAME_ERROR.values()) >= 60


@pytest.mark.parametrize("group", sorted(SAME_ERROR))
def test_messages_of_one_error_share_a_signature(
    conn: duckdb.DuckDBPyConnection, group: str
) -> None:
    messages = SAME_ERROR[group]

    texts = {message: text(conn, message) for message in messages}

    assert len(set(texts.values())) == 1, texts
    assert len({signature(conn, message) for message in messages}) == 1


def test_different_errors_never_share_a_signature(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    groups_of: dict[str, set[str]] = {}
    for group, messages in SAME_ERROR.items():
        for message in messages:
            found = signature(conn, message)
            assert found is not None
            groups_of.setdefault(found, set()).add(group)

    shared = {sig: groups for sig, groups in groups_of.items() if len(groups) > 1}

    assert shared == {}


def test_the_signature_is_twelve_hex_digits_of_the_texts_md5(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    message = "ValueError: invoice 12 has a negative total"

    found = signature(conn, message)

    assert found == one(conn, "left(md5(?), 12)", text(conn, message))
    assert found is not None
    assert len(found) == 12
    assert set(found) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable "
            "for url: https://api.example.com/v1/items/123?x=1",
            "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable "
            "for url: https://api.example.com/<path>",
        ),
        (
            "order 3f2a9c1e-8b7d-4e6f-a5b4-c3d2e1f0a9b8 not found at "
            "2024-03-01T12:00:00Z",
            "order <uuid> not found at <time>",
        ),
        (
            "connect to 10.0.0.5:5432 as bob@example.com failed after 1.5s",
            "connect to <ip> as <email> failed after <duration>",
        ),
        (
            "KeyError: 'customer_id' in /data/in/0042.json at 0x7f3a2c1d",
            "KeyError: <str> in <path> at <hex>",
        ),
        (
            "commit 3f2a9c1e8b7d can't be applied to item-42 (-3.50 EUR)",
            "commit <hex> can't be applied to item-<num> (<num> EUR)",
        ),
        (
            "   several     spaces\tand a\ttab   ",
            "several spaces and a tab",
        ),
        (
            "curl exited with code 7; HTTP/1.1 429 Too Many Requests; status=404",
            "curl exited with code 7; HTTP/<num> 429 Too Many Requests; status=404",
        ),
        ("utf8 codec for x86_64 v2", "utf8 codec for x86_<num> v2"),
    ],
)
def test_error_text_replaces_what_varies_with_placeholders(
    conn: duckdb.DuckDBPyConnection, message: str, expected: str
) -> None:
    assert text(conn, message) == expected


def test_error_text_is_at_most_two_hundred_characters(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    message = "RuntimeError: " + "word " * 100

    found = text(conn, message)

    assert found == ("RuntimeError: " + "word " * 100)[:200]


def test_error_text_survives_a_huge_line(conn: duckdb.DuckDBPyConnection) -> None:
    message = "ValueError: " + "'x' 12 /a/b " * 100_000

    assert text(conn, message) == text(conn, message.replace("12", "13"))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            python_traceback("/app/a.py", 3, "pkg.mod.SomeError: it broke"),
            "pkg.mod.SomeError: it broke",
        ),
        (python_traceback("/app/a.py", 3, "KeyboardInterrupt"), "KeyboardInterrupt"),
        (python_traceback("/app/a.py", 3, "pkg.mod.Retry"), "pkg.mod.Retry"),
        (
            java_trace("java.lang.IllegalStateException: queue full", 42),
            'Exception in thread "main" java.lang.IllegalStateException: queue full',
        ),
        (
            "System.InvalidOperationException: Sequence contains no elements\n"
            "   at System.Linq.ThrowHelper.ThrowNoElementsException()\n"
            "   at Worker.Run() in C:\\src\\Worker.cs:line 42\n",
            "System.InvalidOperationException: Sequence contains no elements",
        ),
        (
            go_panic(5, 3, "/tmp/prog.go"),
            "panic: runtime error: index out of range [5] with length 3",
        ),
        (
            "fatal error: all goroutines are asleep - deadlock!\n\n"
            "goroutine 1 [chan receive]:\nmain.main()\n\t/tmp/x.go:9 +0x2d\n",
            "fatal error: all goroutines are asleep - deadlock!",
        ),
        (
            'ERROR:  duplicate key value violates unique constraint "pk"\n'
            "DETAIL:  Key (id)=(42) already exists.\n",
            'ERROR:  duplicate key value violates unique constraint "pk"',
        ),
        (
            "Warning: disk almost full\nsomething failed here\n",
            "something failed here",
        ),
        ("  one line, padded  ", "one line, padded"),
        ("first\n\n  last line  \n  \n", "last line"),
        ("a\r\nb\r\n", "b"),
        (f'{TRACEBACK}  File "/app/a.py", line 3, in <module>\n    main()\n', "main()"),
        ("", ""),
        ("\n \n", ""),
    ],
)
def test_error_line_is_the_line_that_names_the_error(
    conn: duckdb.DuckDBPyConnection, message: str, expected: str
) -> None:
    assert line(conn, message) == expected


@pytest.mark.parametrize("macro", ["error_line", "error_text", "error_signature"])
def test_a_null_message_gives_null(conn: duckdb.DuckDBPyConnection, macro: str) -> None:
    assert one(conn, f"{macro}(?::VARCHAR)", None) is None


def test_the_macros_run_over_a_column(conn: duckdb.DuckDBPyConnection) -> None:
    rows = conn.execute(
        "SELECT error_signature(m), classify_error(t, c, s, m) FROM (VALUES "
        "('timed out after 5 s', 'timeout', NULL, NULL), "
        "('timed out after 9 s', 'timeout', NULL, NULL), "
        "(NULL, NULL, 3, NULL)) AS failures(m, t, c, s)"
    ).fetchall()

    assert rows[0] == rows[1]
    assert rows[0][1] == "timeout"
    assert rows[2] == (None, "exit_code")


# Messages each rule must recognise, each recorded as the replay records a
# command that failed: type exit_code, exit code 1. Under "exit_code" are
# messages that say nothing of the category, so the status decides.
BY_MESSAGE: dict[str, list[str]] = {
    "resource_exhausted": [
        "MemoryError",
        "killed: out of memory (rss 2048 MiB)",
        "OSError: [Errno 28] No space left on device",
        "OSError: [Errno 24] Too many open files",
        "fork: Resource temporarily unavailable",
        "write /data/x: disk quota exceeded",
        "java.lang.OutOfMemoryError: Java heap space",
        "rate limit exceeded, retry in 30s",
        "HTTPError: 429 Client Error: Too Many Requests for url: https://x.io/a",
        SAME_ERROR["AWS throttling"][0],
    ],
    "network": [
        connection_refused("0x7f3a2c1d4e50", "/v1/a"),
        "ConnectionResetError: [Errno 104] Connection reset by peer",
        "socket.gaierror: [Errno -2] Name or service not known",
        "curl: (6) Could not resolve host: api.example.com",
        "Temporary failure in name resolution",
        "dial tcp: lookup db.internal on 10.0.0.2:53: no such host",
        "connect ECONNREFUSED 127.0.0.1:5432",
        "OSError: [Errno 101] Network is unreachable",
        "requests.exceptions.HTTPError: 502 Server Error: Bad Gateway for url: "
        "https://x.io/a",
        "urllib.error.HTTPError: HTTP Error 504: Gateway Time-out",
        "unexpected status code 503 from upstream",
        "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] "
        "certificate verify failed",
        "timed out connecting to 10.0.0.5:443",
        "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='x', "
        "port=443): Max retries exceeded",
        "psql: error: could not connect to server: Connection timed out",
        java_trace("java.net.ConnectException: Connection refused", 42),
    ],
    "timeout": [
        "TimeoutError: operation took longer than 30s",
        "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='x', "
        "port=443): Read timed out. (read timeout=10)",
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        "curl: (28) Operation timed out after 30001 milliseconds",
    ],
    "permission": [
        "PermissionError: [Errno 13] Permission denied: '/etc/shadow'",
        "rm: cannot remove '/x': Operation not permitted",
        "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: "
        "https://x.io/a",
        "HTTP 401 Unauthorized",
        'FATAL:  password authentication failed for user "app"',
        "error: EACCES: permission denied, open '/x'",
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials",
        "OSError: [Errno 30] Read-only file system: '/data/out'",
    ],
    "not_found": [
        "bash: line 1: resize-images: command not found",
        "FileNotFoundError: [Errno 2] No such file or directory: '/data/in/1.json'",
        "ModuleNotFoundError: No module named 'pandas'",
        "requests.exceptions.HTTPError: 404 Client Error: Not Found for url: "
        "https://x.io/a",
        'psycopg2.errors.UndefinedTable: relation "orders" does not exist',
        "NoSuchKey: s3://batch/thumbnails/0012.json",
        SAME_ERROR["Node.js missing module"][0],
    ],
    "interrupted": [
        python_traceback("/app/a.py", 1, "KeyboardInterrupt"),
        "asyncio.exceptions.CancelledError",
    ],
    "signal": [
        "Segmentation fault (core dumped)",
        "Killed",
        "Terminated",
        "worker stopped by SIGTERM",
    ],
    "validation": [
        "ValueError: invoice 12 has a negative total (-12.50 EUR)",
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for Order",
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        # The key names a time-out; the quotes hide it.
        python_traceback("/app/a.py", 3, "KeyError: 'timeout'"),
        "requests.exceptions.HTTPError: 422 Client Error: Unprocessable Entity "
        "for url: https://x.io/a",
        "HTTP 400 Bad Request: malformed payload",
        "jsonschema.exceptions.ValidationError: 'id' is a required property",
        SAME_ERROR["PostgreSQL unique violation"][0],
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0",
    ],
    "exit_code": [
        go_panic(5, 3, "/tmp/prog.go"),
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
        "AttributeError: 'NoneType' object has no attribute 'id'",
        "exit code 1",
        "it went wrong",
        "",
    ],
}


@pytest.mark.parametrize(
    ("expected", "message"),
    [(kind, message) for kind, messages in BY_MESSAGE.items() for message in messages],
)
def test_a_generic_type_is_refined_from_the_message_first(
    conn: duckdb.DuckDBPyConnection, expected: str, message: str
) -> None:
    assert classify(conn, "exit_code", 1, None, message) == expected
    assert classify(conn, None, None, None, message) in {expected, "unknown"}


@pytest.mark.parametrize(
    ("recorded_type", "exit_code", "signal"),
    [
        ("CommitValidationFailed", 1, None),
        ("timeout", None, None),
        ("not_found", 127, None),
        ("permission", 126, None),
        ("interrupted", None, None),
        ("network", 7, None),
        ("Timeout", None, 9),
    ],
)
def test_a_specific_recorded_type_is_kept_whatever_the_message_says(
    conn: duckdb.DuckDBPyConnection,
    recorded_type: str,
    exit_code: int | None,
    signal: int | None,
) -> None:
    message = "MemoryError: Connection refused, invalid input"

    assert classify(conn, recorded_type, exit_code, signal, message) == recorded_type


@pytest.mark.parametrize(
    ("recorded_type", "exit_code", "signal", "expected"),
    [
        ("signal", None, 9, "signal"),
        ("signal", None, 2, "signal"),
        ("exit_code", 124, None, "timeout"),
        ("exit_code", 126, None, "permission"),
        ("exit_code", 127, None, "not_found"),
        (None, 127, None, "not_found"),
        ("exit_code", 137, None, "signal"),
        ("exit_code", 130, None, "signal"),
        ("exit_code", 143, None, "signal"),
        ("exit_code", -9, None, "signal"),
        ("exit_code", 2, None, "exit_code"),
        ("exit_code", 128, None, "exit_code"),
        ("exit_code", 255, None, "exit_code"),
        (None, 1, None, "exit_code"),
        # Nothing but the recorded generic type, or nothing at all.
        ("exit_code", None, None, "exit_code"),
        ("signal", None, None, "signal"),
        ("unknown", None, None, "unknown"),
        ("unknown", 0, None, "unknown"),
        (None, None, None, "unknown"),
        ("", 0, None, "unknown"),
    ],
)
@pytest.mark.parametrize(
    "message", [None, "", "could not start ./x: Exec format error"]
)
def test_then_the_exit_status_decides(
    conn: duckdb.DuckDBPyConnection,
    recorded_type: str | None,
    exit_code: int | None,
    signal: int | None,
    message: str | None,
    expected: str,
) -> None:
    assert classify(conn, recorded_type, exit_code, signal, message) == expected


def test_the_message_comes_before_the_status(conn: duckdb.DuckDBPyConnection) -> None:
    assert classify(conn, "signal", 137, 9, "out of memory") == "resource_exhausted"
    assert classify(conn, "exit_code", 127, None, "Permission denied") == "permission"
    assert classify(conn, "exit_code", 124, None, "Connection refused") == "network"


def test_every_failure_with_one_signature_and_status_gets_one_type(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    for messages in SAME_ERROR.values():
        types = {classify(conn, "exit_code", 1, None, message) for message in messages}
        assert len(types) == 1, messages


def test_the_docstring_names_every_type_the_rules_give() -> None:
    doc = signatures.__doc__
    assert doc is not None
    for kind, _pattern in signatures.MESSAGE_RULES:
        if kind is not None:
            assert f"``{kind}``" in doc
    for kind in ["exit_code", "unknown", "signal", "timeout", "not_found"]:
        assert f"``{kind}``" in doc


def test_classify_errors_gives_the_macros_types_in_order(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    failures = [
        (recorded, code, None, message)
        for messages in BY_MESSAGE.values()
        for message in messages
        for recorded, code in (("exit_code", 1), (None, None), ("timeout", 2))
    ]

    kinds = analytics.classify_errors(failures)

    assert kinds == [classify(conn, *failure) for failure in failures]
    assert kinds.count("timeout") >= len(failures) // 3
    assert analytics.classify_errors([]) == []
