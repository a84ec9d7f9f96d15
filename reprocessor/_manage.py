"""Changing the queue by hand: discard items, requeue them, amend a payload.

A command names its items by id, or by a SQL condition over ``items`` that
is checked as for `dlq list --where` (:func:`analytics.select_items`). It
reads their state and checks everything before it writes: an unknown id, a
condition DuckDB refuses or an amendment that changes nothing is refused
with the log as it was. An item whose status the command does not apply to
(discarding an item already discarded) is skipped and counted; only when no
selected item is left is that an error. The command's events, one per item
it changes, go to the log in one ``LogWriter.append`` (one group commit), so
it records all of its changes or none, and the writer is closed (its
segment sealed) at the end.

The commands refuse to write while a replay runs (see :func:`_write`).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import msgspec

import analytics
import eventlog
from reprocessor._errors import ManageError, ManageUsageError
from reprocessor._plan import SHOWN_ITEMS

logger = logging.getLogger("reprocessor")

# How many unknown ids an error names.
_NAMED_UNKNOWN = 3

# The statuses a discard and a requeue leave alone, with the words that say
# why. A running item is one a replay that died left open (a live replay
# holds the lock these commands need): the next replay records its attempt
# as interrupted, which makes it pending again and would undo a discard.
_DISCARD_SKIPS = {
    "discarded": "already discarded",
    "succeeded": "succeeded",
    "running": "running",
}
_REQUEUE_SKIPS = {"pending": "already pending", "running": "running"}

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Change:
    """One value an amendment changes in an item's payload.

    Attributes:
        path: the dotted path of the value, or None for the whole payload.
        old: the value before, or None when there was none (see ``added``).
        new: the value after.
        added: whether the path had no value before.
    """

    path: str | None
    old: Any
    new: Any
    added: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "old": self.old,
            "new": self.new,
            "added": self.added,
        }


@dataclass(frozen=True, slots=True)
class ManageResult:
    """What a discard, a requeue or an amendment did, or would do.

    Attributes:
        action: ``discard``, ``requeue`` or ``amend``.
        selected: how many items the ids or the condition named.
        changed: the items it changes, oldest enqueued first.
        skipped: how many selected items it leaves as they are, by why
            (``{"already discarded": 3}``).
        changes: what an amendment changes in the payload.
        dry_run: it was a dry run: nothing was written.
        written: its events are in the log (false in a dry run, and when the
            confirmation was refused).
    """

    action: str
    selected: int
    changed: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    dry_run: bool = False
    written: bool = False

    @property
    def first_items(self) -> tuple[str, ...]:
        """The first few items it changes, for a person to check."""
        return self.changed[:SHOWN_ITEMS]

    def skipped_text(self) -> str:
        """Why items were skipped, in words: ``3 already discarded, 1 running``."""
        return _describe_skipped(self.skipped)

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "action": self.action,
            "selected": self.selected,
            "changed": len(self.changed),
            "first_items": list(self.first_items),
            "skipped": dict(self.skipped),
            "dry_run": self.dry_run,
            "written": self.written,
        }
        if self.action == "amend":
            document["changes"] = [change.as_dict() for change in self.changes]
        return document


Confirm = Callable[[ManageResult], bool]
"""Asked with what a command would do, before it writes; False stops it."""


@dataclass(frozen=True, slots=True)
class _Plan:
    result: ManageResult
    events: list[eventlog.Event]


_Planner = Callable[[duckdb.DuckDBPyConnection], _Plan]

LogLike = eventlog.EventLog | str | os.PathLike[str]


def discard_items(
    log: LogLike,
    *,
    item_ids: Sequence[str] = (),
    where: str | None = None,
    reason: str | None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
) -> ManageResult:
    """Take items out of the queue for good: each gets ``item_discarded``.

    Pending and quarantined items are discarded; discarded, succeeded and
    running ones are skipped. Their history stays in the log, and
    :func:`requeue_items` brings them back.

    Args:
        log: the log, or the path of its directory.
        item_ids: the items, by id; or else
        where: a SQL condition over ``items`` that selects them.
        reason: why, recorded with each event (required).
        dry_run: only say what would change.
        confirm: asked before anything is written; False writes nothing.

    Raises:
        ManageUsageError: both or neither of ``item_ids`` and ``where``, or
            no ``reason``.
        ManageError: an unknown id, or no selected item can be discarded.
        analytics.QueryError: ``where`` is not valid SQL over ``items``.
        eventlog.LogBusyError: a replay is running on the log.
    """
    item_ids = _check_selection(item_ids, where, "discard")
    text = _check_reason(
        reason,
        required="--reason is required: say why these items are given up, "
        "e.g. --reason 'bad input, fixed upstream'",
    )

    def event(row: dict[str, Any]) -> eventlog.Event:
        return _item_event("item_discarded", row, reason=text)

    log = _open(log)

    def plan(conn: duckdb.DuckDBPyConnection) -> _Plan:
        return _plan_each(conn, log, "discard", item_ids, where, _DISCARD_SKIPS, event)

    result = _run(log, plan, dry_run=dry_run, confirm=confirm)
    if result.written:
        logger.info("discarded %d items", len(result.changed))
    return result


def requeue_items(
    log: LogLike,
    *,
    item_ids: Sequence[str] = (),
    where: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
) -> ManageResult:
    """Put items back in the queue with a fresh budget: each gets ``item_requeued``.

    Quarantined, discarded and succeeded items become pending, and their
    ``budget_used`` starts again from 0 (the event records in ``attempt``
    how many attempts counted against the budget until then); pending and
    running ones are skipped.

    Args:
        log: the log, or the path of its directory.
        item_ids: the items, by id; or else
        where: a SQL condition over ``items`` that selects them.
        reason: why, recorded with each event (optional).
        dry_run: only say what would change.
        confirm: asked before anything is written; False writes nothing.

    Raises:
        ManageUsageError: both or neither of ``item_ids`` and ``where``, or
            an empty ``reason``.
        ManageError: an unknown id, or no selected item can be requeued.
        analytics.QueryError: ``where`` is not valid SQL over ``items``.
        eventlog.LogBusyError: a replay is running on the log.
    """
    item_ids = _check_selection(item_ids, where, "requeue")
    text = _check_reason(reason)

    def event(row: dict[str, Any]) -> eventlog.Event:
        return _item_event(
            "item_requeued", row, attempt=row["counted_attempts"], reason=text
        )

    log = _open(log)

    def plan(conn: duckdb.DuckDBPyConnection) -> _Plan:
        return _plan_each(conn, log, "requeue", item_ids, where, _REQUEUE_SKIPS, event)

    result = _run(log, plan, dry_run=dry_run, confirm=confirm)
    if result.written:
        logger.info("requeued %d items", len(result.changed))
    return result


def amend_item(
    log: LogLike,
    item_id: str,
    *,
    assignments: Sequence[str] = (),
    payload: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
) -> ManageResult:
    """Change an item's payload before its next replay: one ``item_amended``.

    The event carries the whole new payload, and in ``data`` (JSON text)
    ``{"changes": [{"path", "old", "new", "added"}, ...]}``: each value set,
    with what it was (``added`` when it had none; the path is null when
    ``payload`` replaced the whole payload).

    Args:
        log: the log, or the path of its directory.
        item_id: the item.
        assignments: ``PATH=VALUE`` texts: a dotted path into the payload
            (``user.email``), and a value taken as JSON when it is valid
            JSON, else as a string. Missing objects on the path are made.
        payload: a whole new payload, as JSON text (instead of
            ``assignments``); it is stored as given.
        reason: why, recorded with the event (optional).
        dry_run: only say what would change.

    Raises:
        ManageUsageError: both or neither of ``assignments`` and
            ``payload``, an assignment that is not ``PATH=VALUE``, two that
            overlap, a ``payload`` that is not JSON, or an empty ``reason``.
        ManageError: no such item, a path that goes through a value that is
            not an object, or nothing would change.
        eventlog.LogBusyError: a replay is running on the log.
    """
    if assignments and payload is not None:
        raise ManageUsageError("give --set or --payload, not both")
    if not assignments and payload is None:
        raise ManageUsageError(
            "say what to change: --set PATH=VALUE (repeatable) or --payload JSON"
        )
    text = _check_reason(reason)
    parsed = _parse_assignments(assignments)
    new_whole: Any = None
    if payload is not None:
        try:
            new_whole = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise ManageUsageError(f"--payload is not valid JSON ({exc})") from None
    log = _open(log)

    def plan(conn: duckdb.DuckDBPyConnection) -> _Plan:
        found = analytics.show_item(conn, item_id)
        if found is None:
            raise ManageError(_unknown(log, [item_id]))
        row = found.item
        old_text: str | None = row["payload"]
        current = _decode_stored(item_id, old_text)
        if payload is not None:
            new_text = payload
            changes = _replacement(item_id, old_text, current, new_whole)
        else:
            document, changes = _assign(item_id, current, parsed)
            new_text = _encode(document).decode()
        data = {"changes": [change.as_dict() for change in changes]}
        event = _item_event(
            "item_amended",
            row,
            payload=new_text,
            data=_encode(data).decode(),
            reason=text,
        )
        result = ManageResult("amend", 1, (item_id,), changes=tuple(changes))
        return _Plan(result, [event])

    result = _run(log, plan, dry_run=dry_run, confirm=None)
    if result.written:
        logger.info("amended %s (%d changes)", item_id, len(result.changes))
    return result


# -- checking the arguments ------------------------------------------------


def _open(log: LogLike) -> eventlog.EventLog:
    """The log, opened once the arguments are known to be good."""
    return log if isinstance(log, eventlog.EventLog) else eventlog.EventLog.open(log)


def _check_selection(
    item_ids: Sequence[str], where: str | None, action: str
) -> tuple[str, ...]:
    """The ids without repeats; refuses both or neither ids and ``where``."""
    if item_ids and where is not None:
        raise ManageUsageError("give ITEM_IDs or --where, not both")
    if not item_ids and where is None:
        raise ManageUsageError(
            f"name the items to {action}: give ITEM_IDs or --where SQL"
        )
    return tuple(dict.fromkeys(item_ids))


def _check_reason(reason: str | None, *, required: str | None = None) -> str | None:
    if reason is None:
        if required is not None:
            raise ManageUsageError(required)
        return None
    if not reason.strip():
        raise ManageUsageError("--reason must not be empty: say why")
    return reason


# Limitation: a --set path cannot name a key that holds a dot, nor an element
# of an array, because a path is plain keys joined by dots; a path syntax
# with quoting and indexes (as JSONPath has) would lift it.
def _parse_assignments(
    assignments: Sequence[str],
) -> list[tuple[str, tuple[str, ...], Any]]:
    """Each ``PATH=VALUE`` as its path, the path's keys, and its value."""
    parsed = []
    for text in assignments:
        path, equals, value = text.partition("=")
        if not equals or not path:
            raise ManageUsageError(
                f"--set {text!r} is not PATH=VALUE; "
                "e.g. --set user.email=ann@example.com"
            )
        keys = tuple(path.split("."))
        if "" in keys:
            raise ManageUsageError(
                f"--set {path!r}: a path is keys joined by dots, and no key is empty"
            )
        parsed.append((path, keys, _value(value)))
    for (first, first_keys, _), (second, second_keys, _) in itertools.combinations(
        parsed, 2
    ):
        shorter = min(len(first_keys), len(second_keys))
        if first_keys[:shorter] == second_keys[:shorter]:
            if first == second:
                raise ManageUsageError(f"--set {first} is given twice; set it once")
            raise ManageUsageError(
                f"--set {first} and --set {second} overlap; set each value once"
            )
    return parsed


def _value(text: str) -> Any:
    """A ``--set`` value: its JSON value if it is valid JSON, else the text."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


# -- planning --------------------------------------------------------------


# Limitation: a command holds every selected item, and an event for each, in
# memory, because its events go to the log in one append so that it writes
# all or none; writing them aside and publishing them at once, as an import
# does, would lift it.
def _plan_each(
    conn: duckdb.DuckDBPyConnection,
    log: eventlog.EventLog,
    action: str,
    item_ids: tuple[str, ...],
    where: str | None,
    skips: dict[str, str],
    event: Callable[[dict[str, Any]], eventlog.Event],
) -> _Plan:
    """One event per selected item the action applies to; the rest counted."""
    rows = analytics.select_items(conn, item_ids=item_ids, where=where)
    if item_ids and len(rows) < len(item_ids):
        found = {row["item_id"] for row in rows}
        raise ManageError(_unknown(log, [i for i in item_ids if i not in found]))
    skipped: Counter[str] = Counter()
    chosen = []
    for row in rows:
        why = skips.get(row["status"])
        if why is None:
            chosen.append(row)
        else:
            skipped[why] += 1
    if not chosen:
        if not rows:
            raise ManageError(
                f"nothing to {action}: no item meets the --where condition"
            )
        raise ManageError(
            f"nothing to {action}: {_items(len(rows))} selected, "
            f"{_describe_skipped(dict(skipped))}"
        )
    result = ManageResult(
        action,
        len(rows),
        tuple(row["item_id"] for row in chosen),
        dict(skipped.most_common()),
    )
    return _Plan(result, [event(row) for row in chosen])


def _item_event(type: str, row: dict[str, Any], **fields: Any) -> eventlog.Event:
    return eventlog.Event(
        type=type,
        item_id=row["item_id"],
        job_id=row["job_id"],
        correlation_id=row["correlation_id"],
        **fields,
    )


def _unknown(log: eventlog.EventLog, item_ids: Sequence[str]) -> str:
    named = ", ".join(map(repr, item_ids[:_NAMED_UNKNOWN]))
    if len(item_ids) > _NAMED_UNKNOWN:
        named += f" and {len(item_ids) - _NAMED_UNKNOWN} more"
    noun = "item" if len(item_ids) == 1 else "items"
    return f"no {noun} {named} in {log.path}; `dlq list` shows the items"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _describe_skipped(skipped: dict[str, int]) -> str:
    """``{"already discarded": 3, "running": 1}`` as ``3 already discarded, 1
    running``."""
    return ", ".join(f"{count} {why}" for why, count in skipped.items())


def _decode_stored(item_id: str, text: str | None) -> Any:
    """An item's stored payload as a value; None when it has none."""
    if text is None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise ManageError(
            f"the payload of {item_id!r} is not valid JSON; --payload replaces it whole"
        ) from None


def _replacement(
    item_id: str, old_text: str | None, old: Any, new: Any
) -> list[Change]:
    if old_text is not None and _canonical(old) == _canonical(new):
        raise ManageError(
            f"nothing to amend: the payload of {item_id!r} is already this"
        )
    return [Change(None, old, new, added=old_text is None)]


_ABSENT = object()


def _assign(
    item_id: str, current: Any, parsed: list[tuple[str, tuple[str, ...], Any]]
) -> tuple[dict[str, Any], list[Change]]:
    """The payload with each value set, and what changed; refuses a no-op."""
    # An item enqueued without a payload has none: the values start one.
    document = {} if current is None else current
    if not isinstance(document, dict):
        raise ManageError(
            f"cannot --set {parsed[0][0]}: the payload of {item_id!r} is "
            f"{_kind(document)}, not an object; --payload replaces it whole"
        )
    changes = []
    for path, keys, value in parsed:
        node = document
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key, _ABSENT)
            if child is _ABSENT:
                child = node[key] = {}
            elif not isinstance(child, dict):
                inner = ".".join(keys[: depth + 1])
                raise ManageError(
                    f"cannot --set {path}: {inner} in the payload of {item_id!r} "
                    f"is {_kind(child)}, not an object"
                )
            node = child
        old = node.get(keys[-1], _ABSENT)
        if old is _ABSENT:
            changes.append(Change(path, None, value, added=True))
        elif _canonical(old) != _canonical(value):
            changes.append(Change(path, old, value, added=False))
        node[keys[-1]] = value
    if not changes:
        paths = ", ".join(path for path, _, _ in parsed)
        raise ManageError(
            f"nothing to amend: {paths} of {item_id!r} already "
            f"{'has' if len(parsed) == 1 else 'have'} the value given"
        )
    return document, changes


def _canonical(value: Any) -> bytes:
    """The JSON of ``value`` with sorted keys: equal for equal JSON values
    (unlike ``==``, which takes ``true`` for ``1``)."""
    return msgspec.json.encode(value, order="sorted")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


# -- writing ---------------------------------------------------------------


def _run(
    log: eventlog.EventLog,
    plan: _Planner,
    *,
    dry_run: bool,
    confirm: Confirm | None,
) -> ManageResult:
    """Plan from the log; unless a dry run or refused, write the plan."""
    if not dry_run:
        log.check_free("replay")  # refuse at once rather than after the checks
    seen = _fingerprint(log)
    planned = _read(log, plan)
    if dry_run:
        return replace(planned.result, dry_run=True)
    if confirm is not None and not confirm(planned.result):
        return planned.result
    return _write(log, plan, planned, seen, confirmed=confirm is not None)


# Limitation: a command refuses while any replay runs on the log, even one
# that runs other items, because the replay lock is one for the whole log;
# a replay that reads each item's state again just before it runs it, and
# leaves alone what changed, would lift it.
def _write(
    log: eventlog.EventLog,
    plan: _Planner,
    planned: _Plan,
    seen: object,
    *,
    confirmed: bool,
) -> ManageResult:
    """Append the planned events, planned again if the log changed meanwhile.

    The events are written holding the log's ``replay`` lock, so a command
    refuses (``eventlog.LogBusyError``, exit 3) while a replay runs, rather
    than change items under it. A replay works from the state it read when
    it started: it would still run an item discarded meanwhile, and the
    outcome it appends after the discard would make the item pending or
    succeeded again; it would run an item amended meanwhile with the old
    payload; and a requeue would record the attempts of an item the replay
    may be running, which would soon be out of date. Each event would be in
    its place, but the log would not say what the person asked. The lock
    also keeps a replay from starting between the check and the write.

    The plan is made before the lock is taken, so that a refusal leaves every
    file of the log as it was (taking the lock writes the lock file), and
    made again under the lock only if a segment changed since.
    """
    with log.exclusive("replay"):
        now = _fingerprint(log)
        if now is None or now != seen:
            current = _read(log, plan)
            if confirmed and current.result.changed != planned.result.changed:
                raise ManageError(
                    "the selected items changed while you were asked; nothing was "
                    "written: run the command again"
                )
            planned = current
        with eventlog.LogWriter(log) as writer:
            writer.append(planned.events)
    return replace(planned.result, written=True)


def _read(log: eventlog.EventLog, plan: _Planner) -> _Plan:
    conn = analytics.connect(log)
    try:
        return plan(conn)
    finally:
        conn.close()


def _fingerprint(log: eventlog.EventLog) -> tuple[tuple[str, bool, int], ...] | None:
    """What changes whenever an event is appended: the segments and their
    sizes; None when a segment went away while they were listed."""
    try:
        return tuple(
            (segment.name, segment.sealed, segment.path.stat().st_size)
            for segment in log.segments()
        )
    except FileNotFoundError:
        return None
