"""The write side of dlq: an append-only, tamper-evident log of events.

Events are appended by :class:`LogWriter` to JSONL segments of its own,
sealed into Parquet when the writer closes them, and imported in bulk by
:func:`import_records` (JSON Lines) or :func:`import_prodigy` (Prodigy's
dead-letter queue, whose file names :func:`encode_prodigy_name` makes safe);
:func:`compact_log` seals what dead writers left and merges small files.
Readers list segments with :meth:`EventLog.segments` and read each as an
Arrow table; :func:`follow_events` gives each event once as it is appended,
for monitoring. :func:`verify_log` recomputes every hash and checks the log
against its manifest.
"""

from eventlog._compact import CompactResult, compact_log
from eventlog._errors import (
    DamagedLogError,
    EventLogError,
    InvalidItemError,
    InvalidRecordError,
    LogBusyError,
    LogNotFoundError,
    ProdigyFormatError,
    WriterFailedError,
)
from eventlog._event import (
    ARROW_SCHEMA,
    EVENT_TYPES,
    FIELD_NAMES,
    GENESIS_HASH,
    SCHEMA_VERSION,
    Event,
    canonical_bytes,
    chain_hash,
    event_from_row,
    format_ts,
)
from eventlog._import import (
    EnqueueRecord,
    ImportResult,
    check_record,
    enqueue_event,
    enqueue_items,
    import_records,
    new_record,
)
from eventlog._log import EventLog, Segment, read_live_segment
from eventlog._prodigy import (
    ProdigyImportResult,
    decode_prodigy_name,
    encode_prodigy_name,
    import_prodigy,
    prodigy_item_id,
)
from eventlog._tail import follow_events
from eventlog._verify import Problem, VerifyReport, verify_log
from eventlog._writer import LogWriter

__all__ = [
    "ARROW_SCHEMA",
    "EVENT_TYPES",
    "FIELD_NAMES",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "CompactResult",
    "DamagedLogError",
    "EnqueueRecord",
    "Event",
    "EventLog",
    "EventLogError",
    "ImportResult",
    "InvalidItemError",
    "InvalidRecordError",
    "LogBusyError",
    "LogNotFoundError",
    "LogWriter",
    "Problem",
    "ProdigyFormatError",
    "ProdigyImportResult",
    "Segment",
    "VerifyReport",
    "WriterFailedError",
    "canonical_bytes",
    "chain_hash",
    "check_record",
    "compact_log",
    "decode_prodigy_name",
    "encode_prodigy_name",
    "enqueue_event",
    "enqueue_items",
    "event_from_row",
    "follow_events",
    "format_ts",
    "import_prodigy",
    "import_records",
    "new_record",
    "prodigy_item_id",
    "read_live_segment",
    "verify_log",
]
