"""The event: one immutable fact about an item, an attempt or a run.

Every event has the same flat schema, in both storage formats (JSONL and
Parquet), so that any reader sees one table. Fields that do not apply to an
event's type are null. Structured values with no fixed shape (the item's
payload, run options, what an amendment changed) are stored as JSON text.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import Final

import msgspec
import pyarrow as pa

SCHEMA_VERSION: Final = 1

EVENT_TYPES: Final = frozenset(
    {
        "item_enqueued",
        "item_amended",
        "item_discarded",
        "item_requeued",
        "item_quarantined",
        "attempt_started",
        "attempt_succeeded",
        "attempt_failed",
        "attempt_interrupted",
        "run_started",
        "run_finished",
    }
)

# The hash of the (absent) event before a writer's first event.
GENESIS_HASH: Final = "0" * 64


class Event(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One fact, as stored. Field order is the storage and hashing order.

    Callers fill in what the fact is about (``type``, ``item_id``, ...); the
    writer stamps the rest (``event_id``, ``ts``, ``user``, ``host``, ``pid``,
    ``writer``, ``seq``, ``hash``) when it appends the event.
    """

    v: int = SCHEMA_VERSION
    event_id: str = ""
    ts: str = ""
    type: str
    item_id: str | None = None
    job_id: str | None = None
    correlation_id: str | None = None
    run_id: str | None = None
    attempt: int | None = None
    payload: str | None = None
    command: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error: str | None = None
    output: str | None = None
    failure_id: str | None = None
    reason: str | None = None
    data: str | None = None
    user: str = ""
    host: str = ""
    pid: int = 0
    writer: str = ""
    seq: int = 0
    hash: str = ""


FIELD_NAMES: Final = Event.__struct_fields__

# The Arrow schema shared by sealed Parquet segments and live segments once
# read. Timestamps are UTC with microsecond precision.
ARROW_SCHEMA: Final = pa.schema(
    [
        ("v", pa.int32()),
        ("event_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("type", pa.string()),
        ("item_id", pa.string()),
        ("job_id", pa.string()),
        ("correlation_id", pa.string()),
        ("run_id", pa.string()),
        ("attempt", pa.int64()),
        ("payload", pa.string()),
        ("command", pa.string()),
        ("exit_code", pa.int64()),
        ("signal", pa.int64()),
        ("duration_ms", pa.int64()),
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("output", pa.string()),
        ("failure_id", pa.string()),
        ("reason", pa.string()),
        ("data", pa.string()),
        ("user", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("writer", pa.string()),
        ("seq", pa.int64()),
        ("hash", pa.string()),
    ]
)
assert tuple(ARROW_SCHEMA.names) == FIELD_NAMES

_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(Event)


def format_ts(moment: datetime) -> str:
    """Format a UTC moment the one way the log stores it (always 6 digits)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_ts_us(micros: int) -> str:
    """Format microseconds since the epoch as a stored timestamp."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_format_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=4)
def _format_second(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def make_event_id(micros: int, writer: str, seq: int) -> str:
    """An id that sorts by time, then writer, then the writer's own order."""
    return f"{micros:013x}-{writer}-{seq:08x}"


def canonical_bytes(values: tuple[object, ...]) -> bytes:
    """The bytes an event's hash covers.

    ``values`` are the event's fields in schema order without ``hash`` (with
    ``ts`` as its stored string); the bytes are their compact JSON array.
    """
    return _encoder.encode(values)


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """Link an event to the one its writer wrote before it."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def event_values(event: Event) -> tuple[object, ...]:
    """An event's fields in schema order, without ``hash``."""
    return msgspec.structs.astuple(event)[:-1]


def encode_line(event: Event) -> bytes:
    """The stored JSONL line of a stamped event."""
    return _encoder.encode(event) + b"\n"


def decode_line(line: bytes) -> Event:
    """Parse one stored JSONL line; raises ``msgspec.ValidationError``."""
    return _line_decoder.decode(line)


def event_from_row(row: dict[str, object]) -> Event:
    """Rebuild an event from an Arrow row (as ``Table.to_pylist`` gives it)."""
    values = dict(row)
    ts = values["ts"]
    if isinstance(ts, datetime):
        values["ts"] = format_ts(ts)
    return Event(**values)  # type: ignore[arg-type]
