"""The public face of ``eventlog``: the names it exports and its error tree."""

from __future__ import annotations

import inspect

import eventlog

PUBLIC_NAMES = {
    "ARROW_SCHEMA",
    "CompactResult",
    "DamagedLogError",
    "EVENT_TYPES",
    "EnqueueRecord",
    "Event",
    "EventLog",
    "EventLogError",
    "FIELD_NAMES",
    "GENESIS_HASH",
    "ImportResult",
    "InvalidItemError",
    "InvalidRecordError",
    "LogBusyError",
    "LogNotFoundError",
    "LogWriter",
    "Problem",
    "ProdigyFormatError",
    "ProdigyImportResult",
    "SCHEMA_VERSION",
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
}


def test_package_exports_exactly_its_public_names() -> None:
    assert set(eventlog.__all__) == PUBLIC_NAMES
    assert len(eventlog.__all__) == len(PUBLIC_NAMES)
    for name in PUBLIC_NAMES:
        assert hasattr(eventlog, name), name


def test_every_error_derives_from_the_package_base() -> None:
    errors = [
        value
        for value in vars(eventlog).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    ]

    assert len(errors) >= 6
    assert all(issubclass(error, eventlog.EventLogError) for error in errors)


def test_every_exported_function_and_class_has_a_docstring() -> None:
    exported = {name: getattr(eventlog, name) for name in eventlog.__all__}
    undocumented = [
        name
        for name, value in exported.items()
        if (inspect.isfunction(value) or inspect.isclass(value))
        and not inspect.getdoc(value)
    ]

    assert undocumented == []
