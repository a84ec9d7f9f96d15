"""A log directory: where its segments live and how they are read and sealed.

Layout (all names below the log directory)::

    manifest.jsonl                 one line per segment or import published
    segments/<writer>-<n>.jsonl    live segments, appended by one writer each
    sealed/<writer>-<n>.parquet    sealed segments, never changed again
    merged/<first>+<token>.parquet sealed segments merged by `dlq compact`
    staging/                       imports being written, invisible to readers
    locks/                         advisory locks (one replay at a time)

A segment is known by its name ``<writer>-<n>``. When both a live and a
sealed file of the same name exist (a seal was interrupted between publishing
the Parquet file and removing the JSONL file), the sealed one is the segment
and the live one is ignored; so each event is readable exactly once at every
instant of a seal. Likewise a merged file names the segments it holds (in its
Parquet metadata), and readers skip those segments' own files, which the
merge removes after publishing it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from eventlog._errors import DamagedLogError, LogBusyError, LogNotFoundError
from eventlog._event import (
    ARROW_SCHEMA,
    GENESIS_HASH,
    Event,
    canonical_bytes,
    chain_hash,
    decode_line,
    event_values,
)
from eventlog._files import (
    create_locked,
    file_digest,
    fsync_dir,
    is_held_by_someone,
    publish,
    remove_unheld,
    try_flock,
)
from eventlog._manifest import MANIFEST, append_record, ensure_manifest, read_manifest

logger = logging.getLogger("eventlog")

SEGMENTS = "segments"
SEALED = "sealed"
MERGED = "merged"
STAGING = "staging"
LOCKS = "locks"
MARKER = "dlq-log.json"

_MARKER_TEXT = b'{"format": "dlq-event-log", "version": 1}\n'
_REQUIRED = ("event_id", "ts", "type", "writer", "seq", "hash")

# The Parquet metadata key of a merged file: the JSON list of the segments it
# holds, in order, as ``[name, rows]`` pairs.
MERGED_FROM = b"dlq.merged_from"

# The manifest field holding the SHA-256 of a published Parquet file's bytes.
DIGEST = "sha256"

# Threads hashing Parquet files before a read; hashlib lets go of the GIL.
_HASHING_THREADS = 4


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of the log as a reader should read it right now."""

    name: str
    path: Path
    sealed: bool


class EventLog:
    """An event log stored in one directory.

    Opening a log does not read it; every read lists the directory afresh, so
    one ``EventLog`` sees what other processes append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # What each merged file holds: read once, since it never changes.
        self._merged_inputs: dict[str, list[tuple[str, int]]] = {}
        # From the manifest, whose records never change once written: each
        # published file's digest (None if recorded without one) and the line
        # recording it, and the hash each live segment's chain starts from.
        self._digests: dict[str, tuple[str | None, int]] = {}
        self._prevs: dict[str, str] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> EventLog:
        """Open the log at ``path``, creating an empty one if ``create``.

        Raises:
            LogNotFoundError: there is no log there and ``create`` is false.
        """
        log = cls(path)
        if not (log.path / MARKER).exists():
            if not create:
                raise LogNotFoundError(
                    f"no dead-letter queue at {log.path}: add items with "
                    "`dlq add` or `dlq import`, or point --log (or DLQ_LOG) at one"
                )
            log._create()
        return log

    def _create(self) -> None:
        for sub in (SEGMENTS, SEALED, MERGED, STAGING, LOCKS):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        # Before the marker: a log that is visible has a complete manifest.
        ensure_manifest(self.path, self.path / STAGING, complete=True)
        tmp = self.path / STAGING / f".{MARKER}.{os.getpid()}"
        tmp.write_bytes(_MARKER_TEXT)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        publish(tmp, self.path / MARKER)
        fsync_dir(self.path.parent if self.path.parent != self.path else self.path)

    # -- where things are ------------------------------------------------

    def segment_path(self, name: str, *, sealed: bool) -> Path:
        """Where the live or sealed file of segment ``name`` is stored."""
        if sealed:
            return self.path / SEALED / f"{name}.parquet"
        return self.path / SEGMENTS / f"{name}.jsonl"

    def staging_path(self, name: str) -> Path:
        """A private file for writing aside before publishing."""
        return self.path / STAGING / name

    def merged_path(self, name: str) -> Path:
        """Where the merged file ``name`` is stored."""
        return self.path / MERGED / f"{name}.parquet"

    def record(self, record: dict[str, object]) -> None:
        """Append one record to the log's manifest, durably.

        Raises:
            OSError: the disk refused the write.
        """
        append_record(self.path, self.path / STAGING, record)

    def segments(self) -> list[Segment]:
        """The segments to read, each event in exactly one, in name order.

        A sealed file is read in preference to a live one of the same name,
        and a merged file in preference to the files of the segments it
        holds; a merged file sorts where the first segment it holds would.
        """
        # Each file is published before the one it replaces is removed, so
        # listing the replaced kind first means that a file replaced between
        # two listings is in one of them (listing in the other order could
        # miss it in both): live, then sealed, then merged.
        live = _names(self.path / SEGMENTS, ".jsonl")
        sealed = _names(self.path / SEALED, ".parquet")
        merged = _names(self.path / MERGED, ".parquet")
        covered = {name for file in merged for name, _ in self.merged_inputs(file)}
        found = [Segment(name, self.merged_path(name), True) for name in merged]
        found += [
            Segment(name, self.segment_path(name, sealed=True), True)
            for name in sealed - covered
        ]
        found += [
            Segment(name, self.segment_path(name, sealed=False), False)
            for name in live - sealed - covered
        ]
        return sorted(found, key=lambda s: s.name)

    def check_files(self) -> None:
        """Refuse a log missing a file that its manifest says holds events.

        A cheap check for readers to make before they read: the manifest's
        records against a listing of the files, with no file opened. A file
        whose publication was recorded but not yet made (an import under way)
        is not missing, and a miss is looked for again before it is believed,
        since a file can move from one directory to another between two
        listings. The other damage readers refuse is found as they read:
        a Parquet file whose bytes are not those recorded
        (:meth:`check_digests`), a live segment whose hash chain breaks
        (:func:`read_live_segment`).

        Raises:
            DamagedLogError: a recorded segment or import has no file.
        """
        # Limitation: readers do not refuse events cut from the end of a live
        # segment at a line boundary, because the manifest records a live
        # segment's start and not its end (and a cut mid-line reads as a
        # crash's torn write), nor the last line of a live segment edited
        # with its hash recomputed, since no line chains from it yet; nor a
        # Parquet file rewritten together with the digest in its manifest
        # record, because nothing outside the log vouches for the manifest
        # (`verify_log` still finds an event whose hash was left as it was).
        if self._missing_files():
            missing = self._missing_files()
            if missing:
                path, problem = missing[0]
                raise DamagedLogError(str(path), None, problem)

    def _missing_files(self) -> list[tuple[Path, str]]:
        manifest = self.path / MANIFEST
        if not manifest.exists():
            # A log written before manifests existed; `dlq verify` notes it.
            return []
        opened: dict[str, int] = {}
        published: dict[str, tuple[int, int, str]] = {}
        withdrawn: set[str] = set()
        for entry in read_manifest(manifest):
            record = entry.record or {}
            kind, name = record.get("record"), record.get("name")
            if not isinstance(name, str):
                continue
            self._remember(record, entry.number)
            if kind == "segment":
                opened.setdefault(name, entry.number)
            elif kind in ("sealed", "import"):
                count = record.get("count")
                published.setdefault(
                    name, (entry.number, count if isinstance(count, int) else 1, kind)
                )
            elif kind == "withdrawn":
                withdrawn.add(name)
        # Listed after the manifest was read, so every file recorded in it was
        # in place before the listing began.
        present: set[str] = set()
        for segment in self.segments():
            present.add(segment.name)
            if segment.path.parent.name == MERGED:
                present.update(name for name, _ in self.merged_inputs(segment.name))
        missing: list[tuple[Path, str]] = []
        for name in sorted(opened.keys() | published.keys()):
            if name in present or name in withdrawn:
                continue
            if name in published:
                line, count, kind = published[name]
                if count == 0:
                    continue  # an empty segment: no events to miss
                if kind == "import":
                    if self.staging_path(f"{name}.parquet").exists():
                        continue  # recorded, not yet published
                    what = "imported file"
                else:
                    what = "sealed segment"
                path = self.segment_path(name, sealed=True)
            else:
                line, what = opened[name], "live segment"
                path = self.segment_path(name, sealed=False)
            missing.append(
                (
                    path,
                    f"deleted: the {what} {name}, recorded in the manifest (line "
                    f"{line}), is missing; `dlq verify` lists every problem",
                )
            )
        return missing

    def _remember(self, record: dict[str, object], line: int) -> None:
        """Keep what a manifest record says that readers check files against."""
        kind, name = record.get("record"), record.get("name")
        if not isinstance(name, str):
            return
        if kind == "segment":
            prev = record.get("prev")
            if isinstance(prev, str):
                self._prevs.setdefault(name, prev)
        elif kind in ("sealed", "import", "merged"):
            digest = record.get(DIGEST)
            self._digests.setdefault(
                name, (digest if isinstance(digest, str) else None, line)
            )

    def _read_records(self) -> None:
        manifest = self.path / MANIFEST
        if not manifest.exists():
            return
        for entry in read_manifest(manifest):
            if entry.record is not None:
                self._remember(entry.record, entry.number)

    def check_digests(self, segments: Iterable[Segment]) -> None:
        """Refuse a sealed, imported or merged file whose bytes were changed.

        Each Parquet file among ``segments`` is hashed and its SHA-256 compared
        with the one its manifest record holds; a file recorded without one
        (published before digests were recorded) or not recorded at all is
        not checked. A file removed since it was listed is skipped: reading it
        fails anyway.

        Raises:
            DamagedLogError: a file's digest is not the one recorded.
        """
        sealed = [segment for segment in segments if segment.sealed]
        if any(segment.name not in self._digests for segment in sealed):
            self._read_records()  # published since the manifest was last read
        checked = [
            (segment, *self._digests[segment.name])
            for segment in sealed
            if self._digests.get(segment.name, (None, 0))[0] is not None
        ]
        if not checked:
            return

        def digest(segment: Segment) -> str | None:
            try:
                return file_digest(segment.path)
            except FileNotFoundError:
                return None

        if len(checked) == 1:
            found = [digest(checked[0][0])]
        else:
            with ThreadPoolExecutor(min(_HASHING_THREADS, len(checked))) as pool:
                found = list(pool.map(digest, [segment for segment, _, _ in checked]))
        for (segment, recorded, line), actual in zip(checked, found, strict=True):
            if actual is not None and actual != recorded:
                raise DamagedLogError(
                    str(segment.path),
                    None,
                    "edited: its bytes are not those recorded in the manifest "
                    f"(line {line}) when it was published; `dlq verify` lists "
                    "every problem",
                )

    def live_prev(self, name: str) -> str | None:
        """The hash live segment ``name``'s first event chains from, as its
        manifest record gives it; None if it has no record."""
        if name not in self._prevs:
            self._read_records()
        return self._prevs.get(name)

    def merged_inputs(self, name: str) -> list[tuple[str, int]]:
        """The segments merged file ``name`` holds, in order, with their rows.

        A file whose metadata cannot be read holds none: reading it raises
        :class:`DamagedLogError` anyway.
        """
        if name not in self._merged_inputs:
            try:
                metadata = pq.read_metadata(self.merged_path(name)).metadata or {}
                inputs = msgspec.json.decode(
                    metadata.get(MERGED_FROM, b"[]"), type=list[tuple[str, int]]
                )
            except FileNotFoundError:
                return []  # removed since it was listed: a later merge holds it
            except (pa.ArrowException, OSError, msgspec.DecodeError):
                inputs = []
            self._merged_inputs[name] = inputs
        return self._merged_inputs[name]

    # -- reading ---------------------------------------------------------

    def read_segment(
        self, segment: Segment, columns: list[str] | None = None
    ) -> pa.Table:
        """Read one segment as an Arrow table with the event schema.

        A sealed file is checked against the digest its manifest record holds,
        and a live one's hash chain from the hash its record gives.

        Raises:
            DamagedLogError: the file is not a valid segment, or was edited.
            FileNotFoundError: the segment was sealed or removed meanwhile.
        """
        if segment.sealed:
            self.check_digests([segment])
            try:
                return pq.read_table(segment.path, columns=columns, schema=ARROW_SCHEMA)
            except FileNotFoundError:
                raise
            except (pa.ArrowException, OSError) as exc:
                raise DamagedLogError(str(segment.path), None, str(exc)) from exc
        table = read_live_segment(segment.path, prev=self.live_prev(segment.name))
        return table.select(columns) if columns is not None else table

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Every segment's events, one Arrow table per segment, in name order.

        A segment sealed while this runs is read from its sealed file.
        """
        for segment in self.segments():
            try:
                yield self.read_segment(segment, columns)
            except FileNotFoundError:
                if segment.sealed:
                    raise
                sealed = Segment(
                    segment.name, self.segment_path(segment.name, sealed=True), True
                )
                yield self.read_segment(sealed, columns)

    def failure_ids(self) -> set[str]:
        """Every ``failure_id`` recorded in the log."""
        seen: set[str] = set()
        for table in self.iter_tables(["failure_id"]):
            column = table.column("failure_id").drop_null()
            seen.update(column.to_pylist())
        return seen

    # -- sealing ---------------------------------------------------------

    def seal(self, name: str) -> bool:
        """Seal live segment ``name`` into Parquet; False if nothing to seal.

        The steps, each safe to be interrupted: write the Parquet file aside
        and fsync it; rename it into ``sealed/`` (from here readers use it);
        remove the JSONL file. A crash before the rename leaves the live
        segment as it was; a crash after it leaves a JSONL file that readers
        ignore and the next seal removes.
        """
        live = self.segment_path(name, sealed=False)
        final = self.segment_path(name, sealed=True)
        if final.exists():
            _remove(live)
            return False
        try:
            # Its chain checked, so that an edited event is not sealed into a
            # file whose digest would then vouch for it.
            table = read_live_segment(live, prev=self.live_prev(name))
        except FileNotFoundError:
            return False  # not live, or another process sealed it meanwhile
        # Locked while it exists, so that another process's seal_abandoned
        # does not take it for a leftover; named uniquely, since two threads
        # may seal the same segment at once.
        tmp = self.staging_path(f".{name}.parquet.{secrets.token_hex(6)}")
        fd = create_locked(tmp)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.fsync(fd)
            # Recorded before it is published, so that every sealed file is
            # in the manifest; a crash in between leaves the live file, which
            # holds the same events.
            self.record(published_record("sealed", name, table, file_digest(tmp)))
            publish(tmp, final)
        finally:
            _remove(tmp)
            os.close(fd)
        _remove(live)
        logger.debug("sealed segment %s (%d events)", name, table.num_rows)
        return True

    def seal_abandoned(self) -> int:
        """Seal every live segment whose writer is gone; return how many.

        A writer holds a lock on its live segment for as long as it runs, so
        a segment that nobody holds belongs to a writer that closed or died.
        """
        count = 0
        for segment in self.segments():
            if segment.sealed:
                _remove(self.segment_path(segment.name, sealed=False))
                continue
            if is_held_by_someone(segment.path):
                continue
            if self.seal(segment.name):
                count += 1
        self._clean_leftovers()
        return count

    def _clean_leftovers(self) -> None:
        """Remove what interrupted imports, seals and segment creations left."""
        for path in (self.path / STAGING).iterdir():
            if _IMPORT_NAME.fullmatch(path.name):
                self._withdraw_import(path)
            else:
                remove_unheld(path)
        for path in (self.path / SEGMENTS).glob(".*.jsonl"):
            remove_unheld(path)

    def _withdraw_import(self, path: Path) -> None:
        """Remove an import its process left unpublished, and say so in the
        manifest (which may have recorded it before the process died)."""
        name = path.name.removesuffix(".parquet")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            if not try_flock(fd):
                return  # the import is still under way
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return
                if not self.segment_path(name, sealed=True).exists():
                    # Withdrawn before removed: a crash between the two leaves
                    # a leftover that the next clean-up removes again.
                    self.record({"record": "withdrawn", "name": name})
                os.unlink(path)
        finally:
            os.close(fd)

    # -- locks -----------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the log-wide lock ``name`` for the duration of the block.

        Raises:
            LogBusyError: another process holds it.
        """
        path = self.path / LOCKS / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not try_flock(fd):
                raise self._busy(name, fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    def check_free(self, name: str) -> None:
        """Refuse at once if another process holds the log-wide lock ``name``.

        Unlike :meth:`exclusive`, it creates and writes no file, so a command
        can refuse before its checks, and take the lock only to write.

        Raises:
            LogBusyError: another process holds it.
        """
        path = self.path / LOCKS / f"{name}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # never taken
        try:
            if not try_flock(fd):
                raise self._busy(name, fd)
        finally:
            os.close(fd)  # which also lets go of the lock if it was taken

    def _busy(self, name: str, fd: int) -> LogBusyError:
        return LogBusyError(
            f"another `{name}` is already running on {self.path}{_read_holder(fd)}; "
            "wait for it to finish"
        )


def read_live_segment(path: Path, *, prev: str | None = None) -> pa.Table:
    """Read a JSONL segment's complete lines as an Arrow table.

    Bytes after the last newline are a torn write (a crash or a write still
    under way) and are not events. Any other line that is not a valid event
    is an error naming the file and the line, and so is a line whose hash
    does not chain from the line before it. The first line chains from
    ``prev`` (what the segment's manifest record gives); without it, from
    the genesis hash if it is its writer's first event, else it is taken as
    it is.

    Raises:
        DamagedLogError: a complete line is not a valid event, or its hash
            does not chain.
    """
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if not complete:
        return ARROW_SCHEMA.empty_table()
    try:
        table = _parse_lines(complete)
        if (
            all(table.column(c).null_count == 0 for c in _REQUIRED)
            and not pc.any(pc.equal(table.column("event_id"), "")).as_py()
        ):
            _check_chain(path, complete, prev)
            return table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    except pa.ArrowInvalid:
        pass
    _raise_first_damage(path, complete)
    raise DamagedLogError(str(path), None, "not a valid segment")


def _check_chain(path: Path, complete: bytes, prev: str | None) -> None:
    """Refuse the first line whose hash is not its content chained to the
    hash before it: an event edited, or lines removed, moved or added."""

    def events() -> Iterator[Event]:
        # One at a time, so that a segment's events are never all held as
        # objects at once (sealing already holds its table).
        for number, line in enumerate(complete.splitlines(), start=1):
            try:
                yield decode_line(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise DamagedLogError(str(path), number, str(exc)) from None

    check_chain(str(path), events(), prev)


def check_chain(
    where: str, events: Iterable[Event], prev: str | None, first_line: int = 1
) -> str | None:
    """Check that consecutive lines of a live segment chain; return the last hash.

    ``prev`` is the hash the first event should chain from, or None if it is
    not known (then the first is taken as it is, unless it is its writer's
    first event, which chains from the genesis hash).

    Raises:
        DamagedLogError: an event's hash is not its content chained to
            ``prev`` or to the event before it, naming ``where`` and its line.
    """
    for number, event in enumerate(events, start=first_line):
        if prev is None and event.seq == 1:
            prev = GENESIS_HASH
        if prev is not None and (
            chain_hash(prev, canonical_bytes(event_values(event))) != event.hash
        ):
            raise DamagedLogError(
                where,
                number,
                "edited: the event does not match its hash chained from the one "
                "before it (a line was changed, removed or moved); `dlq verify` "
                "lists every problem",
            )
        prev = event.hash
    return prev


def _parse_lines(data: bytes) -> pa.Table:
    """Parse complete JSONL lines into a table; raises ``pa.ArrowInvalid``."""
    return pa_json.read_json(
        io.BytesIO(data),
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pa_json.ParseOptions(
            explicit_schema=ARROW_SCHEMA,
            unexpected_field_behavior="error",
            newlines_in_values=False,
        ),
    )


def _raise_first_damage(path: Path, complete: bytes) -> None:
    """Find the first line that is not a valid event and raise naming it."""
    for number, line in enumerate(complete.splitlines(), start=1):
        try:
            event = decode_line(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DamagedLogError(str(path), number, str(exc)) from None
        if not (event.event_id and event.ts and event.writer and event.hash):
            raise DamagedLogError(str(path), number, "event lacks its id or hash")
        # What the event decoder lets through but Arrow refuses: an unknown
        # field, an integer out of its column's range, a malformed time.
        try:
            _parse_lines(line + b"\n")
        except pa.ArrowInvalid as exc:
            raise DamagedLogError(str(path), number, str(exc)) from None


# The name an import writes its file under in ``staging/``.
_IMPORT_NAME = re.compile(r"[0-9a-f]{12}-[0-9]{6}\.parquet")


def published_record(
    kind: str, name: str, table: pa.Table, digest: str
) -> dict[str, object]:
    """The manifest record of a segment sealed (or imported) as ``table``, in a
    file whose bytes have the SHA-256 ``digest``."""
    count = table.num_rows
    seqs, hashes = table.column("seq"), table.column("hash")
    return {
        "record": kind,
        "name": name,
        "writer": name.rsplit("-", 1)[0],
        "count": count,
        "first": seqs[0].as_py() if count else None,
        "last": seqs[count - 1].as_py() if count else None,
        "hash": hashes[count - 1].as_py() if count else None,
        DIGEST: digest,
    }


def _names(directory: Path, suffix: str) -> set[str]:
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return set()
    return {
        entry[: -len(suffix)]
        for entry in entries
        if entry.endswith(suffix) and not entry.startswith(".")
    }


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid else ""
