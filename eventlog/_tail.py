"""Following the log: every event once, as it is appended, in each writer's order.

A follower polls the log directory. It remembers, per writer, the highest
``seq`` it has given, so an event is given once however it is found: in a
live segment, in the sealed Parquet file that replaced that segment meanwhile,
or in a Parquet file an import published whole. Since a writer's events reach
the files in ``seq`` order and its segments are listed in order, an event
with a higher ``seq`` than the writer's last one given is new, and none of a
writer's events can be found after a later one of it.

File offsets only save work: a live segment is read from where the last poll
stopped, up to its last complete line (a line without its newline is still
being written, and is not an event yet), and a sealed segment already read is
not read again.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from eventlog._errors import DamagedLogError
from eventlog._event import Event, decode_line, event_from_row
from eventlog._log import EventLog, Segment, check_chain

logger = logging.getLogger("eventlog")

# How often a follower looks for new events when it found none, in seconds.
POLL_INTERVAL_S = 0.2


@dataclass
class _Cursor:
    """What a follower has given so far."""

    log: EventLog
    # The highest seq given (or skipped as older than the tail) per writer.
    given: dict[str, int] = field(default_factory=dict)
    # Bytes of each live segment read up to its last complete line.
    offsets: dict[str, int] = field(default_factory=dict)
    # Sealed segments read to their end; they never change.
    done: set[str] = field(default_factory=set)
    # The hash of the last line read of each live segment, which the next
    # line read must chain from.
    chained: dict[str, str | None] = field(default_factory=dict)

    def poll(self) -> list[Event]:
        """The events that appeared since the last poll, in ``event_id`` order."""
        found: list[Event] = []
        listed = self.log.segments()
        live = {segment.name for segment in listed if not segment.sealed}
        for name in list(self.offsets):
            if name not in live:
                del self.offsets[name]  # sealed (its twin is read) or removed
                self.chained.pop(name, None)
        for segment in listed:
            if segment.sealed and segment.name in self.done:
                continue
            found += self._new(self._read(segment))
        # Event ids sort by time, then writer, then seq: per-writer order holds.
        found.sort(key=lambda event: event.event_id)
        return found

    # Limitation: finding the last events reads every segment once, in
    # about the time `dlq list` takes, because events are not indexed by
    # time across segments; reading the segments newest first and stopping
    # once ``last`` are found would lift it.
    def catch_up(self, last: int) -> list[Event]:
        """Take every event there now as seen; return the newest ``last``.

        A sealed segment is looked at as Arrow columns, so an import of
        millions of items never becomes millions of Python objects.
        """
        newest: list[Event] = []
        for segment in self.log.segments():
            if not segment.sealed:
                try:
                    events = self._read_live(segment)
                except FileNotFoundError:
                    segment = self._twin(segment)
                else:
                    newest = _newest(last, newest + self._new(events))
                    continue
            table = self.log.read_segment(segment)
            self.done.add(segment.name)
            if table.num_rows == 0:
                continue
            highest = table.group_by("writer").aggregate([("seq", "max")])
            for writer, seq in zip(
                highest.column("writer").to_pylist(),
                highest.column("seq_max").to_pylist(),
                strict=True,
            ):
                self.given[writer] = max(seq, self.given.get(writer, 0))
            if last:
                tail = table.sort_by([("event_id", "descending")]).slice(0, last)
                newest = _newest(
                    last, newest + [event_from_row(row) for row in tail.to_pylist()]
                )
        return newest

    def _twin(self, segment: Segment) -> Segment:
        """The sealed file of a live segment that was sealed since it was listed."""
        return Segment(
            segment.name, self.log.segment_path(segment.name, sealed=True), True
        )

    def _read(self, segment: Segment) -> list[Event]:
        if not segment.sealed:
            try:
                return self._read_live(segment)
            except FileNotFoundError:
                # Sealed since it was listed: its events are in its twin now.
                segment = self._twin(segment)
        table = self.log.read_segment(segment)
        self.done.add(segment.name)
        return [event_from_row(row) for row in table.to_pylist()]

    # Limitation: an event is given as soon as its line is complete in the
    # file, which may be a moment before its writer's fsync returns; if that
    # write then fails (a full disk), the writer trims it away and the event
    # was given without ever being acknowledged, because a reader cannot see
    # an fsync; the writer recording how far it is durable would lift it.
    def _read_live(self, segment: Segment) -> list[Event]:
        offset = self.offsets.get(segment.name, 0)
        with open(segment.path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < offset:
                # A failed write was trimmed away: read it all again; the
                # seqs already given keep their events from coming twice.
                offset = 0
            fh.seek(offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        events = []
        where = f"{segment.path} (after byte {offset})"
        for number, line in enumerate(complete.splitlines(), start=1):
            try:
                events.append(decode_line(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise DamagedLogError(where, number, str(exc)) from None
        if offset == 0:
            prev = self.log.live_prev(segment.name)
        else:
            prev = self.chained.get(segment.name)
        self.chained[segment.name] = check_chain(where, events, prev)
        self.offsets[segment.name] = offset + len(complete)
        return events

    def _new(self, events: list[Event]) -> list[Event]:
        """The events whose writer has not given them yet; remember them."""
        fresh = []
        for event in events:
            if event.seq > self.given.get(event.writer, 0):
                self.given[event.writer] = event.seq
                fresh.append(event)
        return fresh


def _newest(count: int, events: list[Event]) -> list[Event]:
    """The ``count`` events with the greatest ids, in id order."""
    return sorted(
        heapq.nlargest(count, events, key=lambda e: e.event_id),
        key=lambda e: e.event_id,
    )


def follow_events(
    log: EventLog,
    *,
    last: int = 10,
    follow: bool = True,
    interval: float = POLL_INTERVAL_S,
) -> Iterator[Event]:
    """The log's last ``last`` events, then, if ``follow``, each new event.

    Events come in ``event_id`` order at first, then in the order they are
    found, which keeps each writer's order (``seq``); every event exactly
    once, even while writers seal their segments and imports publish files.
    Only complete lines of live segments count: an event still being written
    comes at the next poll. With ``follow`` the generator never ends by
    itself; it sleeps ``interval`` seconds between polls that find nothing.

    Args:
        log: the log to read.
        last: how many of the events already there to give first (0 for none).
        follow: keep giving new events as they appear.
        interval: seconds between polls.

    Raises:
        DamagedLogError: a segment holds a line that is not an event.
    """
    if last < 0:
        raise ValueError(f"last must be 0 or more, not {last}")
    cursor = _Cursor(log)
    yield from cursor.catch_up(last)
    while follow:
        events = cursor.poll()
        if not events:
            time.sleep(interval)
            continue
        logger.debug("tail found %d new events", len(events))
        yield from events
