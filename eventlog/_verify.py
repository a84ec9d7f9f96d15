"""Verification: recompute every hash and check the log against its manifest.

:func:`verify_log` reads the log one file at a time (a Parquet file one
batch of rows at a time) and keeps, per writer, only where its chain has got
to, the gaps it has seen and its last few events; so memory grows with the
number of writers and problems, not with the number of events.

What each finding means:

- a hash that does not match the event's content: the event was edited;
- a seq that skips ahead, never filled later: events were removed;
- a seq filled later: events were reordered;
- a seq seen before: a duplicate event (the same event id twice) or an
  inserted one (another event with the same seq);
- a recorded segment or import with no file, or a file holding other seqs
  than recorded: a file, or events at its end, were removed;
- a Parquet file whose SHA-256 is not the one its manifest record holds:
  the file was changed after it was published;
- a file the manifest does not know: a file was added afterwards;
- a line or row that cannot be read: damage. A torn last line of a live
  segment is what a crash (or a write under way) leaves, and only a note.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eventlog._errors import EventLogError
from eventlog._event import (
    ARROW_SCHEMA,
    FIELD_NAMES,
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    decode_line,
    event_values,
    format_ts_us,
)
from eventlog._files import file_digest
from eventlog._log import (
    DIGEST,
    MERGED,
    EventLog,
    Segment,
    _parse_lines,
)
from eventlog._manifest import MANIFEST, read_manifest

# How many of each writer's last events are kept to tell a duplicate from an
# inserted event when a seq comes again.
_RECENT = 256
_BATCH_ROWS = 64 * 1024
_HASHED = FIELD_NAMES[:-1]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of :func:`verify_log`: where it is and what is wrong.

    Attributes:
        file: the file it is in (or, for a removed file, where it was).
        line: the 1-based line in a JSONL file, if it is at one.
        row: the 1-based row in a Parquet file, if it is at one.
        writer: the writer whose events it concerns, if known.
        seq: the event's seq in its writer's chain, if known.
        event_id: the event's id, if known.
        problem: what is wrong, in words.
    """

    file: str
    line: int | None = None
    row: int | None = None
    writer: str | None = None
    seq: int | None = None
    event_id: str | None = None
    problem: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        elif self.row is not None:
            where += f" row {self.row}"
        who = []
        if self.writer:
            who.append(f"writer {self.writer}")
        if self.seq is not None:
            who.append(f"seq {self.seq}")
        if self.event_id:
            who.append(f"event {self.event_id}")
        if who:
            return f"{where}: {', '.join(who)}: {self.problem}"
        return f"{where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_log` found.

    Attributes:
        problems: damage or tampering, in the order found.
        notes: what is worth knowing but is no damage (a crash's torn last
            line, a log too old to have a manifest).
        events: events checked.
        writers: writers whose chains were checked.
        files: files read.
    """

    problems: tuple[Problem, ...]
    notes: tuple[Problem, ...]
    events: int
    writers: int
    files: int

    @property
    def clean(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {
            "clean": self.clean,
            "events": self.events,
            "writers": self.writers,
            "files": self.files,
            "problems": [dataclasses.asdict(problem) for problem in self.problems],
            "notes": [dataclasses.asdict(note) for note in self.notes],
        }


# Limitation: someone who rewrites both the files and the manifest
# consistently (recomputing every later hash of a writer and its records) is
# not detected, because nothing outside the log anchors the chain; publishing
# each writer's last hash somewhere else (a signed receipt, another machine)
# would lift it.
# Limitation: events removed from the end of a live segment are not
# detected, because the manifest records a live segment when it is opened,
# not each append; recording the last hash at every append would cost a
# second fsync per commit.
def verify_log(log: EventLog) -> VerifyReport:
    """Check every event of ``log`` and every file against the manifest.

    Recomputes each event's hash from its stored values and checks that each
    writer's events number 1, 2, 3... with each hash chained to the one
    before; checks every file is readable; and checks that every segment and
    import the manifest recorded is there, holding what was recorded.

    Raises:
        EventLogError: the log changed under the check in a way it cannot
            follow (a compaction removed a file it was about to read).
    """
    return _Verifier(log).run()


@dataclass(slots=True)
class _Chain:
    """Where one writer's chain has got to."""

    seq: int = 0
    hash: str = GENESIS_HASH
    # Seqs skipped so far, as [first, last, where the skip was seen].
    gaps: list[tuple[int, int, Problem]] = field(default_factory=list)
    recent: collections.deque[tuple[int, str, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT)
    )
    # Set after unreadable data: take the next event as it comes.
    resync: bool = False


@dataclass(slots=True)
class _Seen:
    """What one segment's file (or its part of a merged file) held."""

    file: str
    writer: str
    count: int = 0
    first: int | None = None
    last: int | None = None
    hash: str | None = None
    foreign: bool = False
    # Part of it could not be read (reported as such): its counts prove nothing.
    unreadable: bool = False


@dataclass(slots=True)
class _Records:
    """What the manifest says about one segment or import."""

    opened: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    withdrawn: bool = False
    line: int = 0
    # The SHA-256 its published file was recorded with, and where.
    digest: str | None = None
    digest_line: int = 0


class _Verifier:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []
        self.chains: dict[str, _Chain] = {}
        self.seen: dict[str, _Seen] = {}
        self.events = 0
        self.files = 0
        self.records: dict[str, _Records] = {}
        # Parquet files whose digest differs from the recorded one, reported
        # only if nothing more precise is found in them.
        self.changed_files: list[Problem] = []

    def run(self) -> VerifyReport:
        # The manifest is read before the files are listed, so every segment
        # it records was published before the listing.
        manifest = self._read_manifest()
        if manifest is not None:
            self.records = manifest[0]
        merged_files: list[str] = []
        for segment in self.log.segments():
            self.files += 1
            if segment.path.parent.name == MERGED:
                merged_files.append(segment.name)
            if segment.sealed:
                self._check_parquet(segment)
            else:
                self._check_live(segment)
        missing = self._check_manifest(manifest, merged_files)
        self._report_gaps(missing)
        named = {problem.file for problem in self.problems}
        self.problems += [p for p in self.changed_files if p.file not in named]
        return VerifyReport(
            problems=tuple(self.problems),
            notes=tuple(self.notes),
            events=self.events,
            writers=len(self.chains),
            files=self.files,
        )

    # -- files -----------------------------------------------------------

    def _check_live(self, segment: Segment) -> None:
        path = segment.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # Sealed since it was listed: its events are in its sealed twin.
            sealed = self.log.segment_path(segment.name, sealed=True)
            self._check_parquet(Segment(segment.name, sealed, True))
            return
        file = str(path)
        writer = segment.name.rsplit("-", 1)[0]
        seen = self.seen.setdefault(segment.name, _Seen(file, writer))
        complete = data[: data.rfind(b"\n") + 1]
        lines = complete.split(b"\n")[:-1]
        damaged = False
        for number, line in enumerate(lines, start=1):
            try:
                event = decode_line(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._damage(Problem(file, line=number, problem=f"unreadable: {exc}"))
                self._resync(writer)
                damaged = True
                continue
            if not (event.event_id and event.ts and event.writer and event.hash):
                self._damage(
                    Problem(file, line=number, problem="the event lacks its id or hash")
                )
                self._resync(writer)
                damaged = True
                continue
            self._check_event(
                Problem(file, line=number),
                seen,
                event.writer,
                event.seq,
                event.event_id,
                event.ts,
                event.hash,
                canonical_bytes(event_values(event)),
            )
        if not damaged:
            self._check_readers_accept(file, complete, lines)
        if len(complete) < len(data):
            self.notes.append(
                Problem(
                    file,
                    line=len(lines) + 1,
                    problem=f"torn last line ({len(data) - len(complete)} bytes "
                    "without a newline, as a crash or a write under way leaves "
                    "them); readers ignore it",
                )
            )

    def _check_readers_accept(
        self, file: str, complete: bytes, lines: list[bytes]
    ) -> None:
        """Report lines the event decoder took but Arrow readers refuse."""
        if not complete:
            return
        try:
            table = _parse_lines(complete)
            if all(table.column(c).null_count == 0 for c in ("event_id", "ts")) and (
                not pc.any(pc.equal(table.column("event_id"), "")).as_py()
            ):
                return
        except pa.ArrowInvalid:
            pass
        for number, line in enumerate(lines, start=1):
            try:
                _parse_lines(line + b"\n")
            except pa.ArrowInvalid as exc:
                self._damage(
                    Problem(file, line=number, problem=f"readers refuse it: {exc}")
                )

    def _check_parquet(self, segment: Segment) -> None:
        file = str(segment.path)
        merged = segment.path.parent.name == MERGED
        parts = self.log.merged_inputs(segment.name) if merged else [(segment.name, -1)]
        try:
            digest = file_digest(segment.path)
            # Without pre_buffer=False (the default is True in recent pyarrow)
            # iter_batches keeps the bytes of every row group it has read until
            # the file is closed, so memory would grow with the file's size.
            parquet = pq.ParquetFile(segment.path, pre_buffer=False)
        except FileNotFoundError:
            # Limitation: a verification running beside a compaction fails
            # (asks to be run again) when a file it listed was merged away,
            # because following the merge could read events twice; holding a
            # shared lock that compaction waits for would lift it.
            raise EventLogError(
                f"{file} was removed while the log was being verified (a "
                "compaction ran); run the verification again"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            self._damage(Problem(file, problem=f"unreadable: {exc}"))
            self._unreadable(file, parts)
            return
        if not parquet.schema_arrow.equals(ARROW_SCHEMA, check_metadata=False):
            self._damage(Problem(file, problem="its columns are not the event schema"))
            return
        if merged and sum(rows for _, rows in parts) != parquet.metadata.num_rows:
            self._damage(
                Problem(file, problem="holds another number of rows than it records")
            )
        owners = self._row_owners(file, parts, parquet.metadata.num_rows)
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
                self._check_batch(file, batch, row, owners)
                row += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            self._damage(Problem(file, row=row + 1, problem=f"unreadable: {exc}"))
            self._unreadable(file, parts)
            return
        known = self.records.get(segment.name)
        if known is not None and known.digest is not None and known.digest != digest:
            self.changed_files.append(
                Problem(
                    file,
                    problem="edited: its SHA-256 is not the one recorded when it "
                    f"was published ({self.log.path / MANIFEST}:{known.digest_line})",
                )
            )

    def _unreadable(self, file: str, parts: list[tuple[str, int]]) -> None:
        """Take the next events of these segments' writers as they come, and
        check these segments no further against the manifest."""
        for name, _ in parts:
            writer = name.rsplit("-", 1)[0]
            self._resync(writer)
            self.seen.setdefault(name, _Seen(file, writer)).unreadable = True

    def _row_owners(
        self, file: str, parts: list[tuple[str, int]], total: int
    ) -> Iterator[_Seen]:
        """The segment each row of a file belongs to, row by row."""
        for name, rows in parts:
            seen = self.seen.setdefault(name, _Seen(file, name.rsplit("-", 1)[0]))
            for _ in range(total if rows < 0 else rows):
                yield seen
        # Rows past what a merged file records belong to no segment.
        stray = _Seen(file, "")
        while True:
            yield stray

    def _check_batch(
        self, file: str, batch: pa.RecordBatch, first_row: int, owners: Iterator[_Seen]
    ) -> None:
        columns = [batch.column(name).to_pylist() for name in _HASHED]
        micros = batch.column("ts").cast(pa.int64()).to_pylist()
        ts_index = _HASHED.index("ts")
        columns[ts_index] = [format_ts_us(m) if m is not None else None for m in micros]
        hashes = batch.column("hash").to_pylist()
        writer_index, seq_index, id_index = (
            _HASHED.index("writer"),
            _HASHED.index("seq"),
            _HASHED.index("event_id"),
        )
        for offset, values in enumerate(zip(*columns, strict=True)):
            where = Problem(file, row=first_row + offset + 1)
            writer, seq, event_id = (
                values[writer_index],
                values[seq_index],
                values[id_index],
            )
            stored = hashes[offset]
            if not (writer and event_id and stored and seq is not None):
                self._damage(
                    Problem(
                        file, row=where.row, problem="the event lacks its id or hash"
                    )
                )
                continue
            self._check_event(
                where,
                next(owners),
                writer,
                seq,
                event_id,
                values[ts_index],
                stored,
                canonical_bytes(values),
            )

    # -- events ----------------------------------------------------------

    def _check_event(
        self,
        where: Problem,
        seen: _Seen,
        writer: str,
        seq: int,
        event_id: str,
        ts: str | None,
        stored: str,
        canonical: bytes,
    ) -> None:
        self.events += 1
        here = Problem(where.file, where.line, where.row, writer, seq, event_id)

        def report(problem: str) -> None:
            self._damage(
                Problem(here.file, here.line, here.row, writer, seq, event_id, problem)
            )

        if writer != seen.writer and not seen.foreign:
            seen.foreign = True
            report(f"belongs to another writer than its segment's ({seen.writer})")
        seen.count += 1
        if seen.first is None:
            seen.first = seq
        seen.last, seen.hash = seq, stored
        if not _id_matches(event_id, writer, seq, ts):
            report("its event id does not match its time, writer and seq (edited)")

        chain = self.chains.setdefault(writer, _Chain())
        location = _location(here)
        if chain.resync:
            chain.resync = False
            chain.seq, chain.hash = seq, stored
        elif seq == chain.seq + 1:
            if chain_hash(chain.hash, canonical) != stored:
                report("edited: its content does not match its hash")
            chain.seq, chain.hash = seq, stored
        elif seq > chain.seq + 1:
            # Removed, unless the skipped seqs come later (reordered).
            chain.gaps.append((chain.seq + 1, seq - 1, here))
            chain.seq, chain.hash = seq, stored
        elif self._fill_gap(chain, seq):
            report(f"reordered: it comes after seq {chain.seq} of its writer")
        else:
            report(_repeat(chain, seq, event_id, stored))
        chain.recent.append((seq, event_id, stored, location))

    @staticmethod
    def _fill_gap(chain: _Chain, seq: int) -> bool:
        for index, (low, high, where) in enumerate(chain.gaps):
            if low <= seq <= high:
                rest = [(low, seq - 1, where), (seq + 1, high, where)]
                chain.gaps[index : index + 1] = [g for g in rest if g[0] <= g[1]]
                return True
        return False

    def _resync(self, writer: str) -> None:
        self.chains.setdefault(writer, _Chain()).resync = True

    def _damage(self, problem: Problem) -> None:
        self.problems.append(problem)

    def _report_gaps(self, missing: dict[str, list[tuple[int, float]]]) -> None:
        """Report the seqs skipped and never filled: removed events."""
        for writer, chain in self.chains.items():
            for low, high, where in chain.gaps:
                if any(a <= low and high <= b for a, b in missing.get(writer, [])):
                    continue  # a removed file, reported as such
                seqs = f"seq {low}" if low == high else f"seqs {low} to {high}"
                self._damage(
                    Problem(
                        where.file,
                        where.line,
                        where.row,
                        writer,
                        where.seq,
                        where.event_id,
                        f"removed: {seqs} of its writer, before this event, "
                        "are missing",
                    )
                )

    # -- the manifest ----------------------------------------------------

    def _read_manifest(self) -> tuple[dict[str, _Records], bool] | None:
        path = self.log.path / MANIFEST
        # Limitation: a deleted manifest reads as a log written before
        # manifests existed, and only a note says so, because nothing in the
        # log tells the two apart (the next write even starts a new, partial
        # manifest); a flag in the log's marker file would.
        if not path.exists():
            self.notes.append(
                Problem(
                    str(path),
                    problem="this log has no manifest (it was written before "
                    "manifests existed): the removal of whole files cannot be "
                    "checked",
                )
            )
            return None
        records: dict[str, _Records] = {}
        complete = False
        for entry in read_manifest(path):
            if entry.problem == "torn":
                self.notes.append(
                    Problem(
                        str(path),
                        line=entry.number,
                        problem="torn last line, as a crash leaves it; ignored",
                    )
                )
                continue
            if entry.record is None:
                self._damage(
                    Problem(str(path), line=entry.number, problem=str(entry.problem))
                )
                continue
            record = entry.record
            kind, name = record.get("record"), record.get("name")
            if kind == "manifest":
                complete = bool(record.get("complete"))
                continue
            if not isinstance(name, str):
                continue
            known = records.setdefault(name, _Records(line=entry.number))
            digest = record.get(DIGEST)
            if (
                kind in ("sealed", "import", "merged")
                and isinstance(digest, str)
                and known.digest is None
            ):
                known.digest, known.digest_line = digest, entry.number
            if kind == "segment":
                known.opened = known.opened or record
            elif kind in ("sealed", "import"):
                known.final = known.final or record
            elif kind == "withdrawn":
                known.withdrawn = True
        # Limitation: on a log written before manifests existed, files older
        # than the manifest are checked by their hash chains alone, so a
        # writer's newest segments deleted among them go unseen, because
        # nothing recorded how many there were.
        if not complete:
            self.notes.append(
                Problem(
                    str(path),
                    problem="the manifest was added to this log after it was "
                    "first written: files older than it are not checked for "
                    "removal or addition",
                )
            )
        return records, complete

    def _check_manifest(
        self,
        manifest: tuple[dict[str, _Records], bool] | None,
        merged_files: list[str],
    ) -> dict[str, list[tuple[int, float]]]:
        """Check the files against the manifest; return the seq ranges of the
        recorded segments that are missing, per writer."""
        missing: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
        if manifest is None:
            return missing
        records, complete = manifest
        manifest_path = str(self.log.path / MANIFEST)
        for name, known in records.items():
            final = known.final
            if known.opened is None and final is None:
                continue  # a merge's record: its file is checked below
            seen = self.seen.get(name)
            if seen is None:
                self._report_missing(name, known, missing)
                continue
            if seen.unreadable:
                continue
            if final is not None:
                held = (seen.count, seen.first, seen.last, seen.hash)
                recorded = (
                    final["count"],
                    final["first"],
                    final["last"],
                    final["hash"],
                )
                if held != recorded:
                    where = f"{manifest_path}:{known.line}"
                    if held[:3] == recorded[:3]:
                        # Only the last hash differs: the span alone would
                        # read as no difference at all.
                        problem = (
                            f"segment {name} ends with an event whose hash is not "
                            f"the one the manifest recorded ({where}): the event "
                            "or the manifest was edited"
                        )
                    else:
                        problem = (
                            f"segment {name} holds {_span(*held[:3])}, but the "
                            f"manifest recorded {_span(*recorded[:3])} ({where}): "
                            "events removed or added"
                        )
                    self._damage(
                        Problem(seen.file, writer=seen.writer, problem=problem)
                    )
            elif (
                known.opened is not None
                and seen.count
                and seen.first != known.opened["first"]
            ):
                self._damage(
                    Problem(
                        seen.file,
                        writer=seen.writer,
                        problem=f"segment {name} starts at seq {seen.first}, but "
                        f"it was recorded to start at {known.opened['first']}",
                    )
                )
        self._check_unrecorded(records, complete, merged_files, manifest_path)
        return missing

    def _report_missing(
        self,
        name: str,
        known: _Records,
        missing: dict[str, list[tuple[int, float]]],
    ) -> None:
        final, opened = known.final, known.opened
        record = final or opened
        assert record is not None
        writer = str(record.get("writer", name.rsplit("-", 1)[0]))
        if final is not None and final["record"] == "import":
            if known.withdrawn:
                return
            staged = self.log.staging_path(f"{name}.parquet")
            if staged.exists():
                self.notes.append(
                    Problem(
                        str(staged),
                        writer=writer,
                        problem=f"import {name} was interrupted before it was "
                        "published; `dlq compact` clears it away",
                    )
                )
                return
        if final is not None and final["count"] == 0:
            return  # an empty segment leaves no events to miss
        sealed = final is not None
        path = self.log.segment_path(name, sealed=sealed)
        if final is not None:
            what = "imported file" if final["record"] == "import" else "sealed segment"
            span = _span(final["count"], final["first"], final["last"])
            missing[writer].append((final["first"], final["last"]))
        else:
            what, span = "live segment", f"events from seq {record['first']} on"
            missing[writer].append((record["first"], float("inf")))
        self._damage(
            Problem(
                str(path),
                writer=writer,
                problem=f"deleted: the {what} {name} ({span}), recorded in the "
                f"manifest (line {known.line}), is missing",
            )
        )

    def _check_unrecorded(
        self,
        records: dict[str, _Records],
        complete: bool,
        merged_files: list[str],
        manifest_path: str,
    ) -> None:
        unknown = [name for name in self.seen if name not in records]
        unknown += [name for name in merged_files if name not in records]
        if not unknown:
            return
        # Published after the manifest was read (a writer running beside the
        # check): read it again before calling a file unrecorded.
        again = self._read_manifest_names()
        for name in unknown:
            if name in again:
                continue
            seen = self.seen.get(name)
            if seen is not None and seen.count == 0:
                self.notes.append(
                    Problem(
                        seen.file,
                        problem="an empty segment not in the manifest, as a crash "
                        "between creating and recording it leaves",
                    )
                )
            elif complete:
                file = seen.file if seen else str(self.log.merged_path(name))
                self._damage(
                    Problem(
                        file,
                        writer=seen.writer if seen else None,
                        problem=f"added: {name} is not recorded in the manifest "
                        f"({manifest_path})",
                    )
                )

    def _read_manifest_names(self) -> set[str]:
        names: set[str] = set()
        for entry in read_manifest(self.log.path / MANIFEST):
            if entry.record is not None and isinstance(entry.record.get("name"), str):
                names.add(entry.record["name"])
        return names


def _id_matches(event_id: str, writer: str, seq: int, ts: str | None) -> bool:
    """Whether an event id is the one its writer gives an event of this time
    and seq (so that distinct seqs mean distinct ids)."""
    if not event_id.endswith(f"-{writer}-{seq:08x}"):
        return False
    try:
        return format_ts_us(int(event_id[:13], 16)) == ts
    except (ValueError, OverflowError, OSError):
        return False


def _repeat(chain: _Chain, seq: int, event_id: str, stored: str) -> str:
    """What it means that ``seq`` comes again: a duplicate or an insertion."""
    for old_seq, old_id, old_hash, where in chain.recent:
        if old_seq != seq:
            continue
        if old_id == event_id and old_hash == stored:
            return f"duplicate event id: the same event as at {where}"
        return f"inserted: seq {seq} of its writer is already event {old_id} at {where}"
    return (
        f"duplicate event id or inserted: seq {seq} of its writer came before, "
        "further back"
    )


def _location(problem: Problem) -> str:
    name = Path(problem.file).name
    if problem.line is not None:
        return f"{name}:{problem.line}"
    if problem.row is not None:
        return f"{name} row {problem.row}"
    return name


def _span(count: int, first: int | None, last: int | None) -> str:
    if not count:
        return "no events"
    return f"{count} events, seqs {first} to {last}"
