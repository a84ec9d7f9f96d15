"""The `dlq` command line: each command parses, calls one library function,
and renders what it returns."""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

import analytics
import eventlog
from dlq import _render

app = typer.Typer(
    name="dlq",
    help="A dead-letter queue that keeps every failed item, replays it, and "
    "answers in SQL why it failed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LogOption = Annotated[
    Path,
    typer.Option(
        "--log",
        envvar="DLQ_LOG",
        help="The log directory (also DLQ_LOG).",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="See the queue as it was at this time (ISO 8601, UTC unless it "
        "says otherwise): only events up to it count.",
    ),
]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("dlq")

# The packages whose loggers `-v` and DLQ_LOG_LEVEL turn on.
LOGGED_PACKAGES = ("eventlog", "analytics", "reprocessor", "dlq")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _StderrHandler(logging.Handler):
    """Writes each record to stderr as it is at that moment, which a test
    runner may have swapped since the handler was made."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_handler = _StderrHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def log_level(verbose: bool, setting: str | None) -> int:
    """The level to log at: DEBUG with ``-v``, else DLQ_LOG_LEVEL, else WARNING.

    Raises:
        typer.Exit: DLQ_LOG_LEVEL is not a level's name (exit 2).
    """
    if verbose:
        return logging.DEBUG
    if setting is None or not setting.strip():
        return logging.WARNING
    name = setting.strip().upper()
    if name not in _LEVELS:
        raise fail(
            f"DLQ_LOG_LEVEL {setting!r} is not a log level; use one of "
            f"{', '.join(_LEVELS)}",
            2,
        )
    return logging.getLevelNamesMapping()[name]


def echo(text: str) -> None:
    """Write data to stdout as it is (no extra newline)."""
    sys.stdout.write(text)


def note(text: str) -> None:
    """Tell the person something on stderr, keeping stdout for data."""
    typer.echo(text, err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


# Characters that would end or garble an error's one line on a terminal.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(message: str) -> str:
    """``message`` with line breaks and other control characters escaped.

    Messages quote what the input held (a field's name, a file's name),
    and a newline there would split the one line a script reads.
    """
    return _BREAKS.sub(lambda found: repr(found[0])[1:-1], message)


_FREE_SPACE = "free some space and run the command again"


def _disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from, is a full disk."""
    while exc is not None:
        if isinstance(exc, OSError) and (
            exc.errno == errno.ENOSPC or "[errno 28]" in str(exc).lower()
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def errors_as_messages(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the libraries' errors into one line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except eventlog.LogBusyError as exc:
            raise fail(str(exc), code=3) from None
        except (eventlog.EventLogError, analytics.AnalyticsError) as exc:
            if _disk_full(exc):
                raise fail(f"{exc}; {_FREE_SPACE}") from None
            raise fail(str(exc)) from None
        except OSError as exc:
            if _disk_full(exc):
                # pyarrow's own wording names a write, not the disk.
                raise fail(
                    f"No space left on device ({exc.filename or 'the log'}); "
                    f"{_FREE_SPACE}"
                ) from None
            if exc.strerror is None:  # raised with a message of our own
                raise fail(str(exc)) from None
            raise fail(f"{exc.strerror} ({exc.filename or 'the log'})") from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def examples(*lines: str) -> str:
    """A command's help epilog: the example command lines it shows."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command whose errors are reported as one line."""

    def register(function: Callable[P, R]) -> Callable[P, R]:
        app.command(*args, **kwargs)(errors_as_messages(function))
        return function

    return register


def require_text(arguments: dict[str, str | list[str] | None]) -> None:
    """Refuse an argument that is not UTF-8 text, naming it (exit 2).

    Bytes of the command line that are not UTF-8 arrive as lone surrogates,
    which neither the log nor DuckDB can encode.
    """
    for name, value in arguments.items():
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise fail(f"{name} is not valid UTF-8 text", 2) from None


def moment(text: str | None, option: str) -> datetime | None:
    """Parse an ISO 8601 time given to ``option`` (exit 2 if it is none).

    A time without a zone is passed on as it is: analytics takes it as UTC.
    """
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(
            f"{option} {text!r} is not a time; give an ISO 8601 time such as "
            "2026-12-03T14:30:00Z or 2026-12-03",
            2,
        ) from None


@contextmanager
def connection(log: Path, as_of: str | None = None) -> Iterator[Any]:
    conn = analytics.connect(
        eventlog.EventLog.open(log), as_of=moment(as_of, "--as-of")
    )
    try:
        yield conn
    finally:
        conn.close()


@app.callback()
def _configure(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log what happens to stderr, down to DEBUG detail (or set "
            "DLQ_LOG_LEVEL to DEBUG, INFO, WARNING or ERROR).",
        ),
    ] = False,
) -> None:
    level = log_level(verbose, os.environ.get("DLQ_LOG_LEVEL"))
    loggers = [logging.getLogger(name) for name in LOGGED_PACKAGES]
    before = [(each.level, each.propagate) for each in loggers]
    for each in loggers:
        each.setLevel(level)
        each.addHandler(_handler)
        # Our handler says it once; the root's would say it again.
        each.propagate = False

    def restore() -> None:
        # For a caller that runs the app in its own process (tests, scripts).
        for each, (old_level, propagate) in zip(loggers, before, strict=True):
            each.removeHandler(_handler)
            each.setLevel(old_level)
            each.propagate = propagate

    ctx.call_on_close(restore)


_ADD_EXAMPLES = examples(
    "dlq add img-0042 --job thumbnails --payload '{\"n\": 42}' --error 'HTTP 503'",
)


@command("add", epilog=_ADD_EXAMPLES)
def add(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    job: Annotated[str | None, typer.Option(help="The job it belongs to.")] = None,
    payload: Annotated[
        str | None, typer.Option(help="The item's data, as JSON.")
    ] = None,
    error: Annotated[str | None, typer.Option(help="Why it failed.")] = None,
    error_type: Annotated[
        str | None, typer.Option(help="A category for the failure.")
    ] = None,
    exit_code: Annotated[
        int | None, typer.Option(help="The failed command's exit code.")
    ] = None,
    command_: Annotated[
        str | None,
        typer.Option("--command", help="The command that processes the item."),
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option(help="An id that follows the item across systems.")
    ] = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Add one failed item to the queue (or record a new failure of it)."""
    require_text(
        {
            "ITEM_ID": item_id,
            "--job": job,
            "--payload": payload,
            "--error": error,
            "--error-type": error_type,
            "--command": command_,
            "--correlation-id": correlation_id,
        }
    )
    record = eventlog.new_record(
        item_id,
        payload=payload,
        job_id=job,
        error=error,
        error_type=error_type,
        exit_code=exit_code,
        command=command_,
        correlation_id=correlation_id,
    )
    with log_to_write(log) as opened:
        (event,) = eventlog.enqueue_items(opened, [record])
    note(f"enqueued {event.item_id} ({event.event_id})")


@contextmanager
def log_to_write(path: Path) -> Iterator[eventlog.EventLog]:
    """Open the log at ``path`` for a command that adds to it, creating it if
    there is none; if the command then fails before any event is in it, the
    log it created is removed, so that bad input leaves the disk as it was."""
    existed = path.exists()
    log = eventlog.EventLog.open(path, create=True)
    try:
        yield log
    except BaseException:
        if not existed and not log.segments():
            shutil.rmtree(path, ignore_errors=True)
        raise


_IMPORT_EXAMPLES = examples(
    "dlq import failures.jsonl",
    "my-batch-job --failures | dlq import -",
    "dlq import --format prodigy ~/.prodigy/mapreduce/dlq/job-42",
    "dlq import --format prodigy ~/.prodigy --skip-invalid",
)


@command("import", epilog=_IMPORT_EXAMPLES)
def import_(
    source: Annotated[
        str,
        typer.Argument(
            help="A JSON Lines file of items, or - for stdin; with --format "
            "prodigy, a Prodigy job's DLQ directory or a base holding several."
        ),
    ],
    format_: Annotated[
        str, typer.Option("--format", help="jsonl or prodigy.")
    ] = "jsonl",
    skip_invalid: Annotated[
        bool,
        typer.Option(help="prodigy: import the valid item files and list the others."),
    ] = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Import failed items in bulk from JSON Lines or Prodigy: all, or none.

    One item per line, with the fields of `dlq add` (item_id, job_id, payload,
    error, error_type, exit_code, signal, command, correlation_id, output) and
    an optional failure_id: a record whose failure_id is already in the log is
    skipped as a duplicate. With --format prodigy, each Prodigy item becomes
    an item `<job_id>/<item_id>` and its failure history its failed attempts
    (docs/prodigy.md); importing the same files again adds nothing.
    """
    if format_ not in ("jsonl", "prodigy"):
        raise fail(f"unknown --format {format_!r}; use jsonl or prodigy", 2)
    if format_ == "prodigy":
        _import_prodigy(source, skip_invalid, log)
        return
    if skip_invalid:
        raise fail("--skip-invalid applies only to --format prodigy", 2)
    if source == "-":
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        path = Path(source)
        if not path.is_file():
            raise fail(f"no such file: {source}")
        stream, name = path.open("rb"), source
    with stream, log_to_write(log) as opened:
        result = eventlog.import_records(opened, stream, source=name)
    note(
        f"imported {result.imported} items"
        + (f", skipped {result.duplicates} duplicates" if result.duplicates else "")
    )


def _import_prodigy(source: str, skip_invalid: bool, log: Path) -> None:
    require_text({"SOURCE": source})
    path = Path(source)
    if not path.is_dir():
        raise fail(f"no such directory: {source}")
    with log_to_write(log) as opened:
        result = eventlog.import_prodigy(opened, path, skip_invalid=skip_invalid)
    for file, reason in result.skipped:
        note(f"skipped {file}: {reason}")
    note(
        f"read {result.items} items of {result.jobs} Prodigy jobs; "
        f"imported {result.imported} events"
        + (
            f", skipped {result.duplicates} already in the log"
            if result.duplicates
            else ""
        )
        + (f"; left out {len(result.skipped)} invalid files" if result.skipped else "")
    )


_LIST_EXAMPLES = examples(
    "dlq list --status pending --limit 20",
    'dlq list --where "attempts >= 3" --json',
)


@command("list", epilog=_LIST_EXAMPLES)
def list_(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="Only items with this status (repeatable): pending, running, "
            "succeeded, quarantined, discarded."
        ),
    ] = None,
    where: Annotated[
        str | None, typer.Option(help="A SQL condition over the `items` view.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N items.")] = None,
    json: JsonOption = False,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """List items with their current state."""
    require_text({"--status": status, "--where": where, "--as-of": as_of})
    with connection(log, as_of) as conn:
        table = analytics.list_items(
            conn, statuses=status or (), where=where, limit=limit
        )
    if json:
        echo(_render.render(table, "json"))
        return
    columns = ["item_id", "job_id", "status", "attempts", "last_error", "updated_at"]
    echo(_render.table_text(table.select(columns)))
    note(f"{table.num_rows} items")


_SHOW_EXAMPLES = examples(
    "dlq show img-0042",
    "dlq show img-0042 --as-of 2026-12-01T09:00:00Z --json",
)


@command("show", epilog=_SHOW_EXAMPLES)
def show(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    json: JsonOption = False,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Show an item's state, then its timeline: every event, oldest first.

    One line per event: its time, type, attempt, run, who wrote it
    (user@host), the exit code, and the first line of its error (or of the
    reason a person gave).
    """
    require_text({"ITEM_ID": item_id, "--as-of": as_of})
    with connection(log, as_of) as conn:
        history = analytics.show_item(conn, item_id)
    if history is None:
        raise fail(f"no item {item_id!r} in {log}; `dlq list` shows the items")
    if json:
        document = {"item": history.item, "events": _render.rows_of(history.events)}
        echo(_render.render_json(document))
        return
    echo(_render.key_values(history.item.items()))
    echo(_render.timeline_text(history.events))


_QUERY_EXAMPLES = examples(
    'dlq query "SELECT status, count(*) FROM items GROUP BY status"',
    "dlq query \"SELECT * FROM failures WHERE error_type = 'timeout'\" --format csv",
)


@command("query", epilog=_QUERY_EXAMPLES)
def query(
    sql: Annotated[str, typer.Argument(help="One read-only SELECT over the views.")],
    format_: Annotated[
        str,
        typer.Option("--format", help="table, csv, json or jsonl."),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="Write the result to this file.")
    ] = None,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Run read-only SQL over the views (events, items, attempts, runs, errors).

    `failures` (one row per failure) and the macros `error_signature`,
    `error_text`, `error_line` and `classify_error` are there too.
    """
    require_text({"SQL": sql, "--as-of": as_of})
    if format_ not in _render.FORMATS:
        raise fail(
            f"unknown --format {format_!r}; use one of {', '.join(_render.FORMATS)}", 2
        )
    if output is not None and output.resolve().is_relative_to(log.resolve()):
        raise fail("--output must not be inside the log directory", 2)
    with connection(log, as_of) as conn:
        table = analytics.run_query(conn, sql)
    text = _render.render(table, format_)
    if output is None:
        echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        note(f"wrote {table.num_rows} rows to {output}")


_STATS_EXAMPLES = examples(
    "dlq stats",
    "dlq stats --job thumbnails --since 2026-12-01 --json",
)


@command("stats", epilog=_STATS_EXAMPLES)
def stats(
    json: JsonOption = False,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    run: Annotated[str | None, typer.Option(help="Only this replay run.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only attempts and failures from this time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only attempts and failures up to this time.")
    ] = None,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Items by status, attempts, durations, the last run and the top errors."""
    require_text(
        {
            "--job": job,
            "--run": run,
            "--since": since,
            "--until": until,
            "--as-of": as_of,
        }
    )
    filters = analytics.StatsFilter(
        job_id=job,
        run_id=run,
        since=moment(since, "--since"),
        until=moment(until, "--until"),
    )
    with connection(log, as_of) as conn:
        figures = analytics.queue_stats(conn, filters)
    if json:
        echo(_render.render_json(figures))
        return
    from dlq._stats_view import stats_text

    echo(stats_text(figures))


_ERRORS_EXAMPLES = examples(
    "dlq errors --limit 5",
    "dlq errors --json",
)


@command("errors", epilog=_ERRORS_EXAMPLES)
def errors(
    json: JsonOption = False,
    limit: Annotated[
        int | None, typer.Option(min=0, help="At most N signatures.")
    ] = 20,
    as_of: AsOfOption = None,
    log: LogOption = Path(".dlq"),
) -> None:
    """Failures grouped by error signature, most frequent first."""
    require_text({"--as-of": as_of})
    with connection(log, as_of) as conn:
        table = analytics.top_errors(conn, limit)
    if json:
        echo(_render.render(table, "json"))
        return
    from dlq._stats_view import errors_text

    echo(errors_text(table))
    note(f"{table.num_rows} signatures; `dlq replay --signature ID` replays one")


_COMPACT_EXAMPLES = examples(
    "dlq compact",
    "dlq compact --log /var/lib/dlq && dlq verify --log /var/lib/dlq",
)


@command("compact", epilog=_COMPACT_EXAMPLES)
def compact(log: LogOption = Path(".dlq")) -> None:
    """Seal what finished or dead writers left live, and merge small files.

    Safe to run beside writers and a running replay, and to interrupt: every
    event stays readable exactly once, in the same order.
    """
    done = eventlog.compact_log(eventlog.EventLog.open(log))
    note(f"sealed {done.sealed} segments, merged {done.merged} files into {done.into}")


_DEMO_EXAMPLES = examples(
    "dlq demo",
    "dlq demo --dir /tmp/dlq-demo --no-replay",
)


@command("demo", epilog=_DEMO_EXAMPLES)
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to build the sample log.")
    ] = Path("dlq-demo"),
    replay: Annotated[
        bool,
        typer.Option(
            "--replay/--no-replay",
            help="Replay the sample queue with a worker that still fails for some.",
        ),
    ] = True,
) -> None:
    """Build a sample queue, replay it and show what went wrong."""
    from dlq import _demo, _replay_view
    from dlq._stats_view import stats_text
    from reprocessor import Selection

    log = _demo.build_demo(directory)
    note(f"built a sample queue in {log.path}")
    with connection(log.path) as conn:
        echo(_status_table(conn, "items by status"))
        if not replay:
            pending = analytics.list_items(conn, statuses=["pending"], limit=10)
            columns = ["item_id", "job_id", "status", "last_error"]
            echo(_render.table_text(pending.select(columns), title="pending items"))
    if replay:
        options = _demo.demo_options()
        note(
            f"replaying it:  dlq replay --log {log.path} -- {' '.join(options.command)}"
        )
        summary = _replay_view.run_with_progress(log, options, Selection())
        echo(_replay_view.summary_text(summary, json=False))
        with connection(log.path) as conn:
            figures = analytics.queue_stats(conn, analytics.StatsFilter())
        echo("\nafter the replay (dlq stats)\n\n" + stats_text(figures))
    note(
        f"explore it:  dlq list --log {log.path}   dlq errors --log {log.path}   "
        f"dlq stats --log {log.path}"
    )


def _status_table(conn: Any, title: str) -> str:
    return _render.table_text(analytics.status_counts(conn), title=title)


_REPLAY_EXAMPLES = examples(
    "dlq replay -j 8 --timeout 60 -- python resize.py --url {payload.url}",
    "dlq replay --job thumbnails --dry-run",
    "dlq replay --canary 20 --min-success 0.9 --attempts 3 -- ./process.sh {item_id}",
    "dlq replay --where \"last_error LIKE '%Timeout%'\" --limit 100",
    "dlq replay --signature 3f2a9c01d4e7 -- ./process.sh {item_id}",
)


@command(
    "replay",
    epilog=_REPLAY_EXAMPLES,
    context_settings={"allow_interspersed_args": False},
)
def replay(
    command_: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- COMMAND [ARG ...]]",
            help="What to run per item, with placeholders {item_id}, {job_id}, "
            "{attempt}, {payload}, {payload.KEY}; without it, each item's own "
            "recorded command.",
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option("--parallel", "-j", help="Concurrent attempts [default: CPUs]."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds an attempt may take.")
    ] = None,
    attempts: Annotated[int, typer.Option(help="Tries per item in this run.")] = 1,
    backoff: Annotated[
        str, typer.Option(help="Wait between tries: none, fixed or exponential.")
    ] = "exponential",
    delay: Annotated[
        float, typer.Option(help="Seconds between tries (the first, if exponential).")
    ] = 1.0,
    max_attempts: Annotated[
        int, typer.Option(help="Lifetime tries before an item is quarantined.")
    ] = 10,
    item: Annotated[
        list[str] | None, typer.Option(help="Only this item (repeatable).")
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only items of this job.")] = None,
    where: Annotated[
        str | None, typer.Option(help="A SQL condition over the `items` view.")
    ] = None,
    signature: Annotated[
        str | None,
        typer.Option(help="Only items whose last failure has this error signature."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N items.")] = None,
    force: Annotated[bool, typer.Option(help="Also replay quarantined items.")] = False,
    rate: Annotated[
        float | None, typer.Option(help="At most N starts per second.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Show what would run; run and write nothing.")
    ] = False,
    canary: Annotated[
        int | None, typer.Option(help="Run N items first and check them.")
    ] = None,
    min_success: Annotated[
        float, typer.Option(help="Fraction of canary items that must succeed.")
    ] = 1.0,
    shell: Annotated[
        bool, typer.Option(help="Run COMMAND with sh -c; values reach it as variables.")
    ] = False,
    json: JsonOption = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Run pending items again and record every attempt."""
    import reprocessor
    from dlq import _replay_view

    options = reprocessor.ReplayOptions(
        command=tuple(command_ or ()),
        shell=shell,
        parallel=parallel if parallel is not None else (os.cpu_count() or 1),
        timeout=timeout,
        attempts=attempts,
        backoff=backoff,  # type: ignore[arg-type]  # checked by options.check()
        delay=delay,
        max_attempts=max_attempts,
        rate=rate,
        canary=canary,
        min_success=min_success,
    )
    selection = reprocessor.Selection(
        item_ids=tuple(item or ()),
        job_id=job,
        where=where,
        signature=signature,
        limit=limit,
        force=force,
    )
    try:
        if dry_run:
            plan = reprocessor.plan_replay(
                eventlog.EventLog.open(log), options, selection
            )
            echo(_replay_view.plan_text(plan, json=json))
            return
        summary = _replay_view.run_with_progress(
            eventlog.EventLog.open(log), options, selection
        )
    except reprocessor.ReplayUsageError as exc:
        raise fail(str(exc), code=2) from None
    echo(_replay_view.summary_text(summary, json=json))
    raise typer.Exit(summary.exit_code)
