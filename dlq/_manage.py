"""`dlq discard`, `dlq requeue` and `dlq amend`: change the queue by hand."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from dlq import _render
from dlq._app import JsonOption, LogOption, command, echo, fail, note, require_text

if TYPE_CHECKING:
    import reprocessor

# A command given --where asks before it changes more items than this, when a
# person can answer.
CONFIRM_ABOVE = 5


def stdin_is_terminal() -> bool:
    """Whether a person is there to answer a question on stdin.

    The one place that decides it, so that a test can stand in for a terminal.
    """
    return sys.stdin.isatty()


ItemIds = Annotated[
    list[str] | None,
    typer.Argument(metavar="[ITEM_ID]...", help="The items, by id."),
]
WhereOption = Annotated[
    str | None,
    typer.Option(help="Instead of ids: a SQL condition over the `items` view."),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask before changing many items."),
]
DryRunOption = Annotated[
    bool, typer.Option(help="Show what would change; write nothing.")
]

_DISCARD_EPILOG = """
Examples:

  dlq discard img-0042 img-0043 --reason "source image deleted"

  dlq discard --where "last_error LIKE '%404%'" --reason "gone upstream" --dry-run
"""

_REQUEUE_EPILOG = """
Examples:

  dlq requeue img-0042 --reason "the resize bug is fixed"

  dlq requeue --where "status = 'quarantined' AND job_id = 'thumbnails'" --yes
"""

_AMEND_EPILOG = """
Examples:

  dlq amend img-0042 --set url=s3://bucket/42.jpg --set size.width=640

  dlq amend order-17 --payload '{"order": 17, "currency": "EUR"}' --reason "typo"
"""


@command("discard", epilog=_DISCARD_EPILOG)
def discard(
    item_ids: ItemIds = None,
    where: WhereOption = None,
    reason: Annotated[
        str | None, typer.Option(help="Why you give up on them (required).")
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Give up on items: they leave the queue as discarded, their history stays.

    Pending and quarantined items are discarded; discarded, succeeded and
    running ones are skipped and counted. Refused while a replay runs.
    """
    import reprocessor

    _change_many(
        reprocessor.discard_items,
        item_ids,
        where,
        reason,
        yes=yes,
        dry_run=dry_run,
        json=json,
        log=log,
    )


@command("requeue", epilog=_REQUEUE_EPILOG)
def requeue(
    item_ids: ItemIds = None,
    where: WhereOption = None,
    reason: Annotated[str | None, typer.Option(help="Why they go back.")] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Put items back in the queue, pending, with a fresh attempt budget.

    Quarantined, discarded and succeeded items are requeued; pending and
    running ones are skipped and counted. Refused while a replay runs.
    """
    import reprocessor

    _change_many(
        reprocessor.requeue_items,
        item_ids,
        where,
        reason,
        yes=yes,
        dry_run=dry_run,
        json=json,
        log=log,
    )


@command("amend", epilog=_AMEND_EPILOG)
def amend(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="PATH=VALUE",
            help="Set one value of the payload (repeatable): a dotted path, and "
            "a value read as JSON when it is JSON, else as text.",
        ),
    ] = None,
    payload: Annotated[
        str | None, typer.Option(help="Replace the whole payload with this JSON.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why it changes.")] = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
    log: LogOption = Path(".dlq"),
) -> None:
    """Change an item's payload before its next replay; the log keeps the old one.

    The `item_amended` event records each changed path with its old and new
    value. Refused while a replay runs.
    """
    import reprocessor

    require_text(
        {"ITEM_ID": item_id, "--set": set_, "--payload": payload, "--reason": reason}
    )
    with _as_messages():
        result = reprocessor.amend_item(
            log,
            item_id,
            assignments=set_ or (),
            payload=payload,
            reason=reason,
            dry_run=dry_run,
        )
    _report(result, json=json)


def _change_many(
    change: Callable[..., reprocessor.ManageResult],
    item_ids: list[str] | None,
    where: str | None,
    reason: str | None,
    *,
    yes: bool,
    dry_run: bool,
    json: bool,
    log: Path,
) -> None:
    """Run ``change`` (discard or requeue) over the items named or selected."""
    require_text({"ITEM_ID": item_ids, "--where": where, "--reason": reason})
    with _as_messages():
        result = change(
            log,
            item_ids=item_ids or (),
            where=where,
            reason=reason,
            dry_run=dry_run,
            confirm=_confirmation(where, yes),
        )
    _report(result, json=json)


@contextmanager
def _as_messages() -> Iterator[None]:
    """The management commands' own errors as one line: 2 for bad usage."""
    import reprocessor

    try:
        yield
    except reprocessor.ManageUsageError as exc:
        raise fail(str(exc), 2) from None
    except reprocessor.ManageError as exc:
        raise fail(str(exc)) from None


def _confirmation(
    where: str | None, yes: bool
) -> Callable[[reprocessor.ManageResult], bool] | None:
    """For --where: say how many items change, and ask if they are many."""
    if where is None:
        return None

    def confirm(result: reprocessor.ManageResult) -> bool:
        note(
            f"--where selects {_items(result.selected)}: "
            f"{len(result.changed)} to {result.action}{_skipped(result)}"
        )
        if yes or len(result.changed) <= CONFIRM_ABOVE or not stdin_is_terminal():
            return True
        return typer.confirm(
            f"{result.action} {_items(len(result.changed))}?", default=False, err=True
        )

    return confirm


_PAST = {"discard": "discarded", "requeue": "requeued", "amend": "amended"}


def _report(result: reprocessor.ManageResult, *, json: bool) -> None:
    if not result.written and not result.dry_run:
        raise fail("not confirmed; nothing was written (--yes does not ask)")
    if json:
        echo(_render.render_json(result.as_dict()))
    elif result.dry_run:
        echo(_plan_text(result))
    elif result.changes:
        echo(_changes_text(result))
    if result.dry_run:
        note("dry run: nothing was written")
    elif result.action == "amend":
        paths = ", ".join(
            change.path or "the whole payload" for change in result.changes
        )
        note(f"amended {result.changed[0]}: {paths}")
    else:
        note(f"{_PAST[result.action]} {_items(len(result.changed))}{_skipped(result)}")


def _plan_text(result: reprocessor.ManageResult) -> str:
    if result.action == "amend":
        return f"would amend: {result.changed[0]}\n" + _changes_text(result)
    shown = ", ".join(result.first_items)
    if len(result.changed) > len(result.first_items):
        shown += ", ..."
    lines: list[tuple[str, Any]] = [
        (f"would {result.action}", _items(len(result.changed))),
        ("first", shown),
    ]
    if result.skipped:
        lines.append(("skipped", result.skipped_text()))
    return _render.key_values(lines)


def _changes_text(result: reprocessor.ManageResult) -> str:
    """Each change as ``path: old -> new``, the values as JSON."""
    lines = []
    for change in result.changes:
        old = "(none)" if change.added else _json(change.old)
        lines.append((change.path or "payload", f"{old} -> {_json(change.new)}"))
    return _render.key_values(lines)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _skipped(result: reprocessor.ManageResult) -> str:
    """`` (3 skipped: already discarded)``, or nothing when none was."""
    if not result.skipped:
        return ""
    total = sum(result.skipped.values())
    if len(result.skipped) == 1:
        (why,) = result.skipped
        return f" ({total} skipped: {why})"
    return f" ({total} skipped: {result.skipped_text()})"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"
