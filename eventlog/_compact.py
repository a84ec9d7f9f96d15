"""Compaction: seal what finished writers left live, merge small sealed files.

Every `dlq add` is a writer of its own, so a log fills with tiny Parquet
files, and reading many small files costs more than reading few big ones.
A merge writes the events of consecutive small sealed files (in the order
readers list them) aside as one Parquet file, publishes it in ``merged/``,
then removes its inputs. The merged file names the segments it holds in its
metadata and readers skip those segments' own files, so at every instant of
a merge (and of a crash in it) each event is read exactly once, in the same
order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
from dataclasses import dataclass

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from eventlog._errors import DamagedLogError
from eventlog._event import ARROW_SCHEMA
from eventlog._files import create_locked, file_digest, fsync_dir, publish
from eventlog._log import (
    DIGEST,
    MERGED,
    MERGED_FROM,
    SEALED,
    SEGMENTS,
    EventLog,
    Segment,
)

logger = logging.getLogger("eventlog")

# A sealed file smaller than this is merged with its neighbours into files
# of at most MERGE_TARGET_BYTES.
SMALL_FILE_BYTES = 8 * 1024 * 1024
MERGE_TARGET_BYTES = 64 * 1024 * 1024

# Rows gathered before a row group of a merged file is written.
_ROW_GROUP = 64 * 1024


@dataclass(frozen=True, slots=True)
class CompactResult:
    """What a compaction did.

    Attributes:
        sealed: live segments of finished or dead writers sealed.
        merged: small sealed files merged.
        into: merged files written.
    """

    sealed: int
    merged: int
    into: int


def compact_log(
    log: EventLog,
    *,
    small_file_bytes: int = SMALL_FILE_BYTES,
    target_bytes: int = MERGE_TARGET_BYTES,
) -> CompactResult:
    """Seal abandoned segments and merge small sealed files, crash-safely.

    Live segments whose writer runs are left alone, and so is their place in
    the order: only files that are next to each other in the listing, with no
    live segment between them, are merged. The events and their order, as
    :meth:`EventLog.segments` lists them, are the same afterwards.

    Args:
        log: the log to compact.
        small_file_bytes: sealed files smaller than this are merged.
        target_bytes: a merged file holds at most about this many bytes of
            its inputs' files.

    Raises:
        LogBusyError: another compaction is running on the log.
        DamagedLogError: a file to merge cannot be read (nothing was merged
            from its group).
    """
    with log.exclusive("compact"):
        sealed = log.seal_abandoned()
        (log.path / MERGED).mkdir(exist_ok=True)
        _finish_merges(log)
        groups = _plan(log, small_file_bytes, target_bytes)
        for group in groups:
            _merge(log, group)
    merged = sum(len(group) for group in groups)
    logger.info("compacted %s: sealed %d, merged %d", log.path, sealed, merged)
    return CompactResult(sealed=sealed, merged=merged, into=len(groups))


def _finish_merges(log: EventLog) -> None:
    """Remove the inputs a crash left beside a published merged file."""
    removed = False
    for segment in log.segments():
        if segment.path.parent.name != MERGED:
            continue
        for name, _ in log.merged_inputs(segment.name):
            removed |= _remove_input(log, name)
    if removed:
        fsync_dir(log.path / SEALED)
        fsync_dir(log.path / SEGMENTS)


def _plan(log: EventLog, small_bytes: int, target_bytes: int) -> list[list[Segment]]:
    """Groups of two or more consecutive small sealed files to merge."""
    groups: list[list[Segment]] = []
    run: list[Segment] = []
    size = 0

    def close_run() -> None:
        nonlocal run, size
        if len(run) > 1:
            groups.append(run)
        run, size = [], 0

    for segment in log.segments():
        # Merged files are not merged again (see the limitation in _merge), and
        # a live segment or a big file keeps its place between the groups.
        if not segment.sealed or segment.path.parent.name != SEALED:
            close_run()
            continue
        try:
            file_size = segment.path.stat().st_size
        except FileNotFoundError:
            close_run()
            continue
        if file_size >= small_bytes:
            close_run()
            continue
        if run and size + file_size > target_bytes:
            close_run()
        run.append(segment)
        size += file_size
    close_run()
    return groups


# Limitation: a DuckDB connection opened before a merge (a notebook's
# analytics.connect) fails on its next query once the merge removed its
# inputs, because the connection names the files it read when it was
# opened; open a new connection after `dlq compact`. Keeping the inputs
# until no reader holds them would need readers to register themselves.
# Limitation: a merged file is never merged again, because readers list
# merged/ after the files a merge replaces and a merge of merged files would
# publish into the same folder it removes from, where one listing can miss
# both; merges into a further folder per generation would lift it. Files that
# many compactions each merge a few of stay as many merged files.
def _merge(log: EventLog, group: list[Segment]) -> None:
    """Write ``group`` aside as one file, publish it, then remove the group."""
    inputs: list[tuple[str, int]] = []
    for segment in group:
        try:
            inputs.append((segment.name, pq.read_metadata(segment.path).num_rows))
        except (pa.ArrowException, OSError) as exc:
            raise DamagedLogError(str(segment.path), None, str(exc)) from exc
    name = f"{group[0].name}+{secrets.token_hex(6)}"
    schema = ARROW_SCHEMA.with_metadata({MERGED_FROM: msgspec.json.encode(inputs)})
    tmp = log.staging_path(f".merge-{name}.parquet")
    fd = create_locked(tmp)  # the lock keeps a clean-up from removing it
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as out:
            gathered: list[pa.Table] = []
            rows = 0
            for segment in group:
                table = log.read_segment(segment)
                gathered.append(table.replace_schema_metadata(schema.metadata))
                rows += table.num_rows
                if rows >= _ROW_GROUP:
                    out.write_table(pa.concat_tables(gathered))
                    gathered, rows = [], 0
            if gathered:
                out.write_table(pa.concat_tables(gathered))
        os.fsync(fd)
        _crash_point("written")
        log.record(
            {
                "record": "merged",
                "name": name,
                "inputs": inputs,
                DIGEST: file_digest(tmp),
            }
        )
        publish(tmp, log.merged_path(name))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(fd)
    _crash_point("published")
    for index, (input_name, _) in enumerate(inputs):
        _remove_input(log, input_name)
        if index == 0:
            _crash_point("removing")
    fsync_dir(log.path / SEALED)
    logger.debug("merged %d files into %s", len(inputs), name)


def _remove_input(log: EventLog, name: str) -> bool:
    """Remove the files of segment ``name``, which a merged file holds."""
    removed = False
    for path in (
        log.segment_path(name, sealed=True),
        log.segment_path(name, sealed=False),
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed = True
    return removed


def _crash_point(step: str) -> None:
    """Die here as a crash would, if the crash tests ask for it.

    The tests set ``DLQ_TEST_CRASH_AT`` to a step of a merge ("written",
    "published", "removing") to check what a crash there leaves.
    """
    if os.environ.get("DLQ_TEST_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
