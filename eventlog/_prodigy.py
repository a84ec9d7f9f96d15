"""Importing Prodigy's dead-letter queue: one JSON file per item, all or nothing.

Prodigy (a MapReduce workflow tool) keeps the items that failed a job in
``<base>/mapreduce/dlq/<job_id>/items/<item_id>.json``, with an
``index.json`` beside ``items/`` listing them. Each item becomes:

- an ``item_enqueued`` with its ``item_data`` as payload, which records no
  failure of its own (its ``data`` says ``"failure": false``);
- one ``attempt_failed`` per entry of its ``failure_history``, stamped now
  but carrying the entry's own time in ``data`` (``occurred_at``), which the
  analytics views prefer;
- an ``item_quarantined`` after them when Prodigy marked it for manual
  review or not eligible for reprocessing.

Prodigy's item ids are unique only within a job, so the log's item id is
``<job_id, encoded>/<item_id>`` (:func:`prodigy_item_id`). What has no
column (the entry's context, stack trace, agent, step, the item's
signature, artifacts, flags and times) is kept in ``data`` under
``prodigy``, so that an export can write the files back as they were.

Every event gets a ``failure_id`` made from what it records, so importing
the same files twice adds nothing, and importing them after Prodigy added a
history entry adds just that entry. The events are written aside and
published at once, by the same staging as :func:`eventlog.import_records`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pyarrow as pa

from eventlog._errors import ProdigyFormatError
from eventlog._event import ARROW_SCHEMA, Event, format_ts
from eventlog._import import (
    _DECODE_ERRORS,
    StagedSegment,
    _bad_id,
    _describe,
    staged_segment,
)
from eventlog._log import EventLog

# Bytes a file name may keep as they are; every other byte of its UTF-8 text
# is written %XX, and so is a leading ".", so that no name is "." or ".."
# (nor hidden).
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

# An item file larger than this is refused rather than held in memory.
MAX_ITEM_BYTES = 64 * 1024 * 1024

# Events are stamped and handed to the staged segment this many at a time.
_BATCH = 4096

# Prodigy's error types, and the dlq error type each is recorded as: the
# ones dlq knows by another name are translated (so that `dlq stats` counts
# them with dlq's own), CommandFailed becomes its exit code, Unknown is left
# for dlq to classify from the message, the rest are kept as they are.
ERROR_TYPES: dict[str, str | None] = {
    "Timeout": "timeout",
    "ResourceExhausted": "resource_exhausted",
    "ValidationFailed": "validation",
    "CommitValidationFailed": "CommitValidationFailed",
    "WorktreeError": "WorktreeError",
    "MergeConflict": "MergeConflict",
    "Unknown": None,
}

_U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
_U63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_I32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
_Moment = Annotated[datetime, msgspec.Meta(tz=True)]


class _ExitCode(msgspec.Struct, forbid_unknown_fields=True):
    exit_code: _I32


class _CommandFailed(msgspec.Struct, forbid_unknown_fields=True):
    CommandFailed: _ExitCode


class _Failure(msgspec.Struct, kw_only=True):
    attempt_number: _U32
    timestamp: _Moment
    error_type: str | _CommandFailed
    error_message: str
    error_context: list[str] | None = None
    stack_trace: str | None = None
    agent_id: str
    step_failed: str
    duration_ms: _U63
    json_log_location: str | None = None


class _Artifacts(msgspec.Struct, kw_only=True):
    worktree_path: str
    branch_name: str
    uncommitted_changes: str | None = None
    error_logs: str | None = None


class _Item(msgspec.Struct, kw_only=True):
    """What an item file must hold. Unknown keys are allowed (a newer Prodigy
    may add some) and kept with the rest in ``data``."""

    item_id: str
    item_data: Any
    first_attempt: _Moment
    last_attempt: _Moment
    failure_count: _U32
    failure_history: list[_Failure]
    error_signature: str
    worktree_artifacts: _Artifacts | None = None
    reprocess_eligible: bool
    manual_review_required: bool


class _Index(msgspec.Struct, kw_only=True):
    job_id: str
    item_count: _U63
    item_ids: list[str]
    updated_at: _Moment


_item_decoder = msgspec.json.Decoder(_Item)
_index_decoder = msgspec.json.Decoder(_Index)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# An entry's and an item's keys that have a column of their own.
_ENTRY_COLUMNS = frozenset({"attempt_number", "error_message", "duration_ms"})
_ITEM_COLUMNS = frozenset({"item_id", "item_data", "failure_history"})


@dataclass(frozen=True, slots=True)
class ProdigyImportResult:
    """What a Prodigy import did.

    Attributes:
        jobs: how many job directories were read.
        items: how many valid item files were read.
        imported: how many events were added to the log.
        duplicates: events already in the log (by ``failure_id``), not added.
        skipped: ``(file, reason)`` of each invalid file left out (only with
            ``skip_invalid``).
    """

    jobs: int
    items: int
    imported: int
    duplicates: int
    skipped: tuple[tuple[str, str], ...]


def encode_prodigy_name(text: str) -> str:
    """``text`` as one file name that stays inside its folder, reversibly.

    Letters, digits, ``-``, ``_`` and ``.`` are kept; every other byte of the
    UTF-8 text is written ``%XX`` (so ``/`` is ``%2F`` and ``%`` is ``%25``),
    and so is a leading ``.`` (``..`` becomes ``%2E.``).
    :func:`decode_prodigy_name` reverses it.
    """
    data = text.encode("utf-8", "surrogatepass")
    return "".join(
        chr(byte) if byte in _SAFE and (index or byte != 0x2E) else f"%{byte:02X}"
        for index, byte in enumerate(data)
    )


def decode_prodigy_name(name: str) -> str:
    """The text :func:`encode_prodigy_name` made ``name`` from.

    Raises:
        ValueError: ``name`` has a ``%`` not followed by two hex digits, or
            encodes bytes that are not UTF-8 text.
    """
    out = bytearray()
    index = 0
    while index < len(name):
        char = name[index]
        if char == "%":
            digits = name[index + 1 : index + 3]
            if len(digits) != 2 or not all(
                c in "0123456789abcdefABCDEF" for c in digits
            ):
                raise ValueError(
                    f"{name!r} has a % that is not followed by two hex digits"
                )
            out.append(int(digits, 16))
            index += 3
        else:
            out += char.encode("utf-8")
            index += 1
    return out.decode("utf-8")


def prodigy_item_id(job_id: str, item_id: str) -> str:
    """The log's id of Prodigy item ``item_id`` of job ``job_id``.

    Prodigy's ids are unique only within a job; the job's id, encoded by
    :func:`encode_prodigy_name` so that it holds no ``/``, comes first.
    """
    return f"{encode_prodigy_name(job_id)}/{item_id}"


def import_prodigy(
    log: EventLog, path: Path, *, skip_invalid: bool = False
) -> ProdigyImportResult:
    """Import a Prodigy dead-letter queue, all or nothing.

    Args:
        log: the log to import into.
        path: one job's directory (``.../mapreduce/dlq/<job_id>``), or a
            directory holding several: ``<base>/mapreduce/dlq`` or ``<base>``.
        skip_invalid: leave invalid files out and import the rest, rather
            than import nothing.

    Raises:
        ProdigyFormatError: ``path`` is not a Prodigy dead-letter queue, or
            (without ``skip_invalid``) a file in it is not valid; nothing was
            imported.
        OSError: a file could not be read, or the disk refused the write;
            nothing was imported.
    """
    jobs = find_prodigy_jobs(path)
    skipped: list[tuple[str, str]] = []
    counts = {"items": 0, "duplicates": 0}

    def refuse(file: Path, reason: str) -> None:
        if not skip_invalid:
            raise ProdigyFormatError(
                f"{file}: {reason}; nothing was imported "
                "(--skip-invalid imports the valid files)"
            )
        skipped.append((str(file), reason))

    with staged_segment(log, str(path)) as staged:
        known = log.failure_ids()
        batch: list[Event] = []
        for job in jobs:
            for job_id, item, raw in _read_job(job, refuse):
                counts["items"] += 1
                events = _item_events(item, raw, job_id=job_id)
                new = [event for event in events if event.failure_id not in known]
                counts["duplicates"] += len(events) - len(new)
                if not new:
                    continue
                known.update(event.failure_id for event in new if event.failure_id)
                _attach_item_document(new[-1], raw, job_id)
                batch += new
                if len(batch) >= _BATCH:
                    _stamp_into(staged, batch)
                    batch = []
        _stamp_into(staged, batch)
        imported = staged.rows
    return ProdigyImportResult(
        jobs=len(jobs),
        items=counts["items"],
        imported=imported,
        duplicates=counts["duplicates"],
        skipped=tuple(skipped),
    )


def find_prodigy_jobs(path: Path) -> list[Path]:
    """The job directories ``path`` stands for, in name order.

    Raises:
        ProdigyFormatError: ``path`` is neither a job's directory nor one that
            holds jobs (``<base>`` or ``<base>/mapreduce/dlq``).
    """
    if not path.is_dir():
        raise ProdigyFormatError(f"no such directory: {path}")
    if _is_job(path):
        return [path]
    root = path / "mapreduce" / "dlq"
    holder = root if root.is_dir() else path
    jobs = sorted(
        entry for entry in holder.iterdir() if entry.is_dir() and _is_job(entry)
    )
    if jobs or holder is root or (path.name, path.parent.name) == ("dlq", "mapreduce"):
        return jobs
    raise ProdigyFormatError(
        f"{path} is not a Prodigy dead-letter queue: give a job's directory "
        "(holding index.json and items/) or a directory holding "
        "mapreduce/dlq/<job_id>/"
    )


def _is_job(path: Path) -> bool:
    return (path / "items").is_dir() or (path / "index.json").is_file()


# Told of each invalid file and why; raises, or notes it and lets the import go on.
Refuse = Callable[[Path, str], None]


def _read_job(job: Path, refuse: Refuse) -> Iterator[tuple[str, _Item, dict[str, Any]]]:
    """The job id and valid items of one job directory, with their documents.

    Problems are handed to ``refuse`` (which raises, or notes and goes on).
    """
    job_id = _decoded(job.name)
    items_dir = job / "items"
    files = sorted(
        entry
        for entry in (items_dir.iterdir() if items_dir.is_dir() else ())
        if entry.suffix == ".json" and entry.is_file()
    )
    listed = _read_index(job, job_id, refuse)
    if listed is not None:
        job_id = listed[0]
        present = {file.name[: -len(".json")] for file in files}
        for item_id in listed[1]:
            if item_id not in present and encode_prodigy_name(item_id) not in present:
                refuse(job / "index.json", f"it lists {item_id!r}, which has no file")
    if job_id is None:
        refuse(job, "the directory's name is not a job id dlq can decode")
        return
    names_listed = None if listed is None else set(listed[1])

    for file in files:
        stem = file.name[: -len(".json")]
        try:
            data = _read_bytes(file)
        except ValueError as exc:
            refuse(file, str(exc))
            continue
        try:
            item = _item_decoder.decode(data)
            raw = _any_decoder.decode(data)
        except _DECODE_ERRORS as exc:
            refuse(file, _describe(exc))
            continue
        problem = _item_problem(item, stem, job_id, names_listed)
        if problem is not None:
            refuse(file, problem)
            continue
        yield job_id, item, raw


def _decoded(name: str) -> str | None:
    try:
        return decode_prodigy_name(name)
    except ValueError:
        return None


def _read_bytes(file: Path) -> bytes:
    with file.open("rb") as fh:
        data = fh.read(MAX_ITEM_BYTES + 1)
    if len(data) > MAX_ITEM_BYTES:
        raise ValueError(f"the file is larger than the {MAX_ITEM_BYTES} bytes allowed")
    return data


def _read_index(
    job: Path, job_id: str | None, refuse: Refuse
) -> tuple[str, list[str]] | None:
    """The job id and item ids ``index.json`` gives, once checked, or None."""
    path = job / "index.json"
    if not path.is_file():
        refuse(path, "the job has no index.json")
        return None
    try:
        index = _index_decoder.decode(_read_bytes(path))
    except (*_DECODE_ERRORS, ValueError) as exc:
        refuse(path, str(exc) if type(exc) is ValueError else _describe(exc))
        return None
    if job_id is not None and index.job_id != job_id and index.job_id != job.name:
        refuse(path, f"its job_id {index.job_id!r} is not its directory's name")
        return None
    if index.item_count != len(index.item_ids):
        refuse(
            path,
            f"its item_count is {index.item_count} but it lists "
            f"{len(index.item_ids)} item_ids",
        )
    return index.job_id, index.item_ids


def _item_problem(
    item: _Item, stem: str, job_id: str, listed: set[str] | None
) -> str | None:
    """What is wrong with a decoded item beyond its types, or None."""
    if stem not in (item.item_id, encode_prodigy_name(item.item_id)):
        return f"its item_id {item.item_id!r} does not match the file's name"
    if listed is not None and item.item_id not in listed:
        return f"its item_id {item.item_id!r} is not listed in index.json"
    key = prodigy_item_id(job_id, item.item_id)
    if _bad_id(key) or _bad_id(job_id):
        return (
            "its item_id or job_id is empty, longer than 1024 characters or holds NUL"
        )
    return None


def failure_id(*parts: str | int) -> str:
    """A failure id made from what an event records, the same on every import."""
    digest = hashlib.sha256(_encoder.encode(parts)).hexdigest()
    return f"prodigy-{digest[:40]}"


def _item_events(item: _Item, raw: dict[str, Any], *, job_id: str) -> list[Event]:
    """Every event the item's file stands for, oldest first."""
    key = prodigy_item_id(job_id, item.item_id)
    origin = {"job_id": job_id, "item_id": item.item_id}
    events = [
        Event(
            type="item_enqueued",
            item_id=key,
            job_id=job_id,
            correlation_id=item.item_id,
            payload=_encoder.encode(raw["item_data"]).decode(),
            failure_id=failure_id("enqueued", job_id, item.item_id),
            data=_encoder.encode({"failure": False, "prodigy": origin}).decode(),
        )
    ]
    last = ""
    for entry, raw_entry in zip(
        item.failure_history, raw["failure_history"], strict=True
    ):
        stamp = raw_entry["timestamp"]
        last = f"{entry.attempt_number}@{stamp}"
        error_type: str | None
        if isinstance(entry.error_type, _CommandFailed):
            error_type, exit_code = None, entry.error_type.CommandFailed.exit_code
        else:
            error_type = ERROR_TYPES.get(entry.error_type, entry.error_type)
            exit_code = None
        kept = {k: v for k, v in raw_entry.items() if k not in _ENTRY_COLUMNS}
        events.append(
            Event(
                type="attempt_failed",
                item_id=key,
                job_id=job_id,
                correlation_id=item.item_id,
                attempt=entry.attempt_number,
                exit_code=exit_code,
                duration_ms=entry.duration_ms,
                error_type=error_type,
                error=entry.error_message,
                failure_id=failure_id("attempt", job_id, item.item_id, last),
                data=_encoder.encode(
                    {
                        "occurred_at": format_ts(entry.timestamp),
                        "prodigy": {**origin, "entry": kept},
                    }
                ).decode(),
            )
        )
    reasons = []
    if item.manual_review_required:
        reasons.append("manual review required")
    if not item.reprocess_eligible:
        reasons.append("not eligible for reprocessing")
    if reasons:
        # Keyed on the latest entry too: a failure Prodigy records later puts
        # the item back to pending, and the quarantine must follow it again.
        events.append(
            Event(
                type="item_quarantined",
                item_id=key,
                job_id=job_id,
                correlation_id=item.item_id,
                reason="Prodigy: " + " and ".join(reasons),
                failure_id=failure_id("quarantined", job_id, item.item_id, last),
            )
        )
    return events


# Limitation: a re-import records an item's own fields (item_data, flags,
# signature, artifacts) only along with a new history entry or quarantine,
# because what is new is told by failure ids alone; a change Prodigy made to
# them without a new failure is not imported. Comparing each file with the
# document the log holds would lift it, at the cost of reading every item's
# events at each import.
def _attach_item_document(event: Event, raw: dict[str, Any], job_id: str) -> None:
    """Keep the item's own fields (as this import read them) on ``event``, the
    newest one written for it; an export takes them from there."""
    document = {k: v for k, v in raw.items() if k not in _ITEM_COLUMNS}
    data = _any_decoder.decode(event.data) if event.data else {}
    prodigy = data.setdefault("prodigy", {"job_id": job_id, "item_id": raw["item_id"]})
    prodigy["item"] = document
    event.data = _encoder.encode(data).decode()


def _stamp_into(staged: StagedSegment, events: list[Event]) -> None:
    """Stamp ``events`` with the staged segment's writer and add them."""
    if not events:
        return
    rows = []
    for event in events:
        stamped, _ = staged.stamper.stamp(event)
        row = msgspec.structs.asdict(stamped)
        row["ts"] = datetime.fromisoformat(stamped.ts)
        rows.append(row)
    staged.add(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA))
