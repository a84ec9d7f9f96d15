"""The replay engine: run pending items again, record every start and outcome.

A replay holds the log's ``replay`` lock for its whole life, so two replays
never run the same items. It first closes what a dead replay left open,
then streams the selected items from the derived state in bounded batches
and runs at most ``parallel`` of them at once, each as a real subprocess.
``attempt_started`` is durable before a process is spawned, and the outcome
is appended when it ends; an attempt cut short by an interruption is
recorded as ``attempt_interrupted``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import random
import secrets
import shlex
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import trio

import analytics
import eventlog
from reprocessor._attempt import Outcome, kill_commands_of_runs, run_attempt
from reprocessor._command import Command, CommandTemplate, MissingValueError
from reprocessor._options import ReplayOptions, Selection

logger = logging.getLogger("reprocessor")

# Items are taken from the derived state this many at a time.
SELECTION_BATCH = 1000

# Limitation: a run keeps at most this many distinct failures (type, status
# and message) to classify for its summary, because its memory must not grow
# with the number of items that fail; failures past it are counted under
# their recorded type (`exit_code`, `signal`), which `dlq stats` refines.
_CLASSIFIED_AT_MOST = 10_000

# An attempt's outcome waits at most this long for the next append to carry it.
_DEFERRED_FOR_AT_MOST_S = 0.2

_encode = msgspec.json.Encoder().encode


@dataclass
class ReplaySummary:
    """What a replay did. ``exit_code`` is what the CLI exits with."""

    run_id: str
    selected: int = 0
    succeeded: int = 0
    failed: int = 0
    quarantined: int = 0
    skipped: int = 0
    interrupted: int = 0
    recovered: int = 0
    canary_failed: bool = False
    was_interrupted: bool = False
    expected: int | None = None  # items selected in all, when counted up front
    duration_s: float = 0.0
    error_types: Counter[str] = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        """Finished items per second."""
        done = self.succeeded + self.failed + self.quarantined
        return done / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every selected item succeeded, 1 when not, 130 if interrupted."""
        if self.was_interrupted:
            return 130
        if self.failed or self.quarantined or self.canary_failed or self.skipped:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "selected": self.selected,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "recovered": self.recovered,
            "canary_failed": self.canary_failed,
            "duration_s": round(self.duration_s, 3),
            "throughput": round(self.throughput, 2),
            "error_types": dict(self.error_types.most_common()),
            "status": self.status,
        }

    @property
    def status(self) -> str:
        if self.was_interrupted:
            return "interrupted"
        if self.canary_failed:
            return "canary_failed"
        return "failed" if self.exit_code else "succeeded"


@dataclass
class _Item:
    item_id: str
    job_id: str | None
    correlation_id: str | None
    payload: str | None
    command: str | None
    attempts: int
    budget_used: int


Progress = Callable[[ReplaySummary], None]


def new_run_id() -> str:
    """A run id that sorts by start time."""
    return f"run-{time.time_ns() // 1000:013x}-{secrets.token_hex(3)}"


async def replay(
    log: eventlog.EventLog,
    options: ReplayOptions,
    selection: Selection,
    *,
    progress: Progress | None = None,
    count_total: bool = False,
    handle_signals: bool = True,
) -> ReplaySummary:
    """Replay the selected items of ``log``; return what happened.

    Raises:
        eventlog.LogBusyError: another replay holds the log.
        ReplayUsageError: an option or the command cannot work.
        analytics.QueryError: the selection's SQL is invalid.
    """
    options.check()
    template = (
        CommandTemplate.parse(options.command, shell=options.shell)
        if (options.command)
        else None
    )
    # Limitation: a run's memory grows slowly with the items it runs (about
    # 185 MiB after a few thousand `true`s, 260 MiB after 60,000, 300 MiB after
    # 100,000), because of memory held outside Python's heap, which stays flat:
    # in DuckDB or Arrow, not yet traced to its owner.
    # Limitation: when the log's disk fills during a run, the attempts it had
    # started stay `running` in the log until the next replay records them as
    # interrupted, because the events that would close them cannot be written.
    with log.exclusive("replay"), eventlog.LogWriter(log) as writer:
        run = _Run(log, writer, options, template, progress)
        conn = analytics.connect(log)
        try:
            if await run.recover(conn):
                # The items it closed are pending again: read the log anew.
                conn.close()
                conn = analytics.connect(log)
            await run.execute(
                conn, selection, handle_signals=handle_signals, count_total=count_total
            )
        except BaseExceptionGroup as group:
            raise _first_cause(group) from None
        finally:
            conn.close()
        return run.summary


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that broke a nursery, rather than the cancellations it caused."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = _first_cause(error)
        if not isinstance(error, trio.Cancelled):
            return error
    return group


class _Run:
    def __init__(
        self,
        log: eventlog.EventLog,
        writer: eventlog.LogWriter,
        options: ReplayOptions,
        template: CommandTemplate | None,
        progress: Progress | None,
    ) -> None:
        self.log = log
        self.writer = writer
        self.options = options
        self.template = template
        self.progress = progress
        self.summary = ReplaySummary(run_id=new_run_id())
        self.rng = random.Random()
        self.slots = trio.Semaphore(options.parallel)
        self.rate = _RateLimiter(options.rate)
        self.stopping = False
        self.force = False
        self.process_groups: set[int] = set()
        # Copied once: reading os.environ decodes every variable again, a
        # tenth of a millisecond per attempt with a typical environment.
        self.base_env = dict(os.environ)
        self.deferred: list[eventlog.Event] = []
        # Failed attempts by (error type, exit code, signal, error), to count
        # by error type at the end; past the bound, by recorded type only.
        self.failures: Counter[tuple[str | None, int | None, int | None, str | None]]
        self.failures = Counter()
        self.unclassified: Counter[str] = Counter()

    # Limitation: each attempt waits for its start to be fsynced before its
    # command is spawned, a fraction of a millisecond to a few on a busy
    # disk, so very short commands run well below xargs' rate, because the
    # start must be durable first; writing the next start of each slot while
    # its current attempt runs would take the fsync off that path.
    async def append(self, *events: eventlog.Event) -> None:
        """Append the deferred events and then ``events``; return once durable."""
        batch, self.deferred = [*self.deferred, *events], []
        if batch:
            # Submitted here, in the order the tasks append; only the wait for
            # the fsync goes to a thread, where concurrent waits share one.
            ticket = self.writer.submit(batch)
            await trio.to_thread.run_sync(self.writer.wait_durable, ticket)

    def defer(self, event: eventlog.Event) -> None:
        """Have ``event`` committed with the next append, or soon after.

        An attempt's outcome need not be durable before anything else
        happens (only its start must precede the spawn), so outcomes ride
        along with the next start: one fsync per attempt instead of two. If
        the replay dies before they are committed, the next one records
        those attempts as interrupted, as for any attempt without an outcome.
        """
        self.deferred.append(event)

    async def _commit_deferred_now_and_then(self) -> None:
        while True:
            await trio.sleep(_DEFERRED_FOR_AT_MOST_S)
            if self.deferred:
                await self.append()

    # -- recovery --------------------------------------------------------

    async def recover(self, conn: duckdb.DuckDBPyConnection) -> bool:
        """Close the attempts and runs that a dead replay left open.

        Returns whether it recorded anything.
        """
        open_attempts = analytics.open_attempts(conn)
        open_runs = analytics.open_runs(conn)
        events = [
            eventlog.Event(
                type="attempt_interrupted",
                item_id=row["item_id"],
                job_id=row["job_id"],
                correlation_id=row["correlation_id"],
                run_id=row["run_id"],
                attempt=row["attempt"],
                error_type="interrupted",
                error="the replay running it ended without recording an outcome",
            )
            for row in open_attempts
        ]
        events += [
            eventlog.Event(
                type="run_finished",
                run_id=run_id,
                reason="the replay ended without finishing (crash or kill)",
                data=_encode({"status": "crashed"}).decode(),
            )
            for run_id in open_runs
        ]
        if open_runs:
            # A dead replay's commands run on in their own sessions: stop
            # them before their items run again, or one item could run twice
            # at once.
            await trio.to_thread.run_sync(kill_commands_of_runs, set(open_runs))
        if events:
            await self.append(*events)
            logger.warning(
                "closed %d attempts and %d runs left open by a replay that died",
                len(open_attempts),
                len(open_runs),
            )
        self.summary.recovered = len(open_attempts)
        return bool(events)

    # -- the run ---------------------------------------------------------

    async def execute(
        self,
        conn: duckdb.DuckDBPyConnection,
        selection: Selection,
        *,
        handle_signals: bool,
        count_total: bool,
    ) -> None:
        self.force = selection.force
        started = time.monotonic()
        chosen: dict[str, Any] = {
            "item_ids": selection.item_ids,
            "job_id": selection.job_id,
            "where": selection.where,
            "signature": selection.signature,
            "limit": selection.limit,
            "include_quarantined": selection.force,
        }
        logger.debug(
            "run %s selects %s items%s",
            self.summary.run_id,
            "pending and quarantined" if selection.force else "pending",
            _conditions_text(chosen),
        )
        if count_total:
            # Only a display of progress needs the total in advance.
            self.summary.expected, _ = analytics.count_pending(conn, **chosen, sample=0)
            logger.debug(
                "run %s: %d items match", self.summary.run_id, self.summary.expected
            )
        batches = analytics.iter_pending(conn, **chosen, batch_size=SELECTION_BATCH)
        # The first batch runs the selection's SQL: a bad --where must fail
        # before a run is recorded, or the log would show a run that passed.
        first = await trio.to_thread.run_sync(next, batches, None)
        batches = itertools.chain([first] if first is not None else [], batches)
        await self.append(self._run_started(selection))
        try:
            async with trio.open_nursery() as outer:
                # A signal cancels only the work: the watcher must live on to
                # hear a second Ctrl-C while running attempts are stopped.
                work = trio.CancelScope()
                if handle_signals:
                    outer.start_soon(self._watch_signals, work)
                outer.start_soon(self._commit_deferred_now_and_then)
                with work:
                    await self._run_items(batches)
                outer.cancel_scope.cancel()
        finally:
            self.summary.duration_s = time.monotonic() - started
            with trio.CancelScope(shield=True):
                self.summary.error_types = await trio.to_thread.run_sync(
                    self._classified_failures
                )
                await self.append(self._run_finished())
            summary = self.summary
            logger.info(
                "run %s %s: %d selected, %d succeeded, %d failed, %d quarantined, "
                "%d skipped, %d interrupted in %.1f s",
                summary.run_id,
                summary.status,
                summary.selected,
                summary.succeeded,
                summary.failed,
                summary.quarantined,
                summary.skipped,
                summary.interrupted,
                summary.duration_s,
            )

    def _count_failure(self, outcome: Outcome) -> None:
        """Keep a failed attempt for the summary's count of error types."""
        key = (outcome.error_type, outcome.exit_code, outcome.signal, outcome.error)
        if key in self.failures or len(self.failures) < _CLASSIFIED_AT_MOST:
            self.failures[key] += 1
        elif outcome.error_type:
            self.unclassified[outcome.error_type] += 1

    def _classified_failures(self) -> Counter[str]:
        """This run's failures by error type, as `dlq stats` would count them.

        The recorded types (``exit_code``, ``signal``, ...) are refined by the
        message, as the views refine them; if that cannot be done, the
        recorded types are counted as they are.
        """
        failures = list(self.failures)
        counts = Counter(self.unclassified)
        try:
            kinds = analytics.classify_errors(failures)
        except analytics.AnalyticsError as exc:
            logger.warning("error types counted as recorded: %s", exc)
            kinds = [error_type or "unknown" for error_type, *_ in failures]
        for kind, failure in zip(kinds, failures, strict=True):
            counts[kind] += self.failures[failure]
        return counts

    async def _run_items(self, batches: Iterator[list[dict[str, Any]]]) -> None:
        canary = self.options.canary
        async with trio.open_nursery() as workers:
            self.workers = workers.cancel_scope
            while not self.stopping:
                batch = await trio.to_thread.run_sync(next, batches, None)
                if batch is None:
                    break
                for row in batch:
                    if canary is not None and self.summary.selected == canary:
                        await self._wait_idle()
                        if not self._canary_passed():
                            self.summary.canary_failed = True
                            return
                        canary = None
                    await self.slots.acquire()
                    self.summary.selected += 1
                    workers.start_soon(self._process_and_release, _item(row))
        if canary is not None and self.summary.selected and not self._canary_passed():
            self.summary.canary_failed = True

    async def _wait_idle(self) -> None:
        """Wait until no attempt is running."""
        for _ in range(self.options.parallel):
            await self.slots.acquire()
        for _ in range(self.options.parallel):
            self.slots.release()

    def _canary_passed(self) -> bool:
        done = self.summary.succeeded + self.summary.failed + self.summary.quarantined
        return done == 0 or self.summary.succeeded / done >= self.options.min_success

    async def _process_and_release(self, item: _Item) -> None:
        try:
            await self._process(item)
        finally:
            self.slots.release()
            if self.progress is not None:
                self.progress(self.summary)

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.stopping:
                    # A second interrupt: stop at once. The next replay
                    # records the attempts this one leaves open.
                    for group in list(self.process_groups):
                        with contextlib.suppress(OSError):
                            os.killpg(group, signal.SIGKILL)
                    os._exit(130)
                logger.warning(
                    "%s: stopping; running attempts are being terminated",
                    signal.Signals(signum).name,
                )
                self.stopping = True
                self.summary.was_interrupted = True
                scope.cancel()

    # -- one item --------------------------------------------------------

    async def _process(self, item: _Item) -> None:
        """Try ``item`` up to ``--attempts`` times, within its lifetime budget.

        An item whose budget (``--max-attempts``) is spent is quarantined
        without running, unless the selection forces quarantined items: then
        it gets this run's tries, and is quarantined again if all fail.
        """
        options = self.options
        if item.budget_used >= options.max_attempts and not self.force:
            await self._quarantine(item)
            return
        for try_number in range(1, options.attempts + 1):
            await self.rate.wait()
            outcome = await self._attempt(item)
            if outcome is None:
                return
            if outcome.succeeded:
                self.summary.succeeded += 1
                return
            self._count_failure(outcome)
            last_try = try_number == options.attempts
            if item.budget_used >= options.max_attempts and (
                last_try or not self.force
            ):
                await self._quarantine(item)
                return
            if not last_try:
                delay = options.backoff_delay(try_number, self.rng)
                # DEBUG, not WARNING: a retry is what --attempts asked for,
                # and a line per retry would bury the progress and summary.
                logger.debug(
                    "retrying %s in %.1f s (try %d of %d): attempt %d failed with %s",
                    item.item_id,
                    delay,
                    try_number + 1,
                    options.attempts,
                    item.attempts,
                    _failure_text(outcome),
                )
                await trio.sleep(delay)
        logger.debug(
            "%s failed its last try of this run (%d of --max-attempts %d used)",
            item.item_id,
            item.budget_used,
            options.max_attempts,
        )
        self.summary.failed += 1

    async def _attempt(self, item: _Item) -> Outcome | None:
        """Run one try of ``item``; None when it could not be run (skipped)."""
        attempt = item.attempts + 1
        early: Outcome | None = None
        try:
            command = self._command(item, attempt)
        except MissingValueError as exc:
            command = Command([])
            early = Outcome(False, None, None, 0, "validation", str(exc), None)
        if command is None:
            self.summary.skipped += 1
            logger.warning("skipped %s: it has no recorded command", item.item_id)
            return None

        event = functools.partial(self._attempt_event, item, attempt)
        await self.append(event("attempt_started", command=str(command)))
        try:
            outcome = early or await self._spawn(item, command, attempt)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.append(
                    event(
                        "attempt_interrupted",
                        error_type="interrupted",
                        error="the replay was interrupted",
                    )
                )
            self.summary.interrupted += 1
            raise

        item.attempts += 1
        item.budget_used += 1
        self.defer(
            event(
                "attempt_succeeded" if outcome.succeeded else "attempt_failed",
                exit_code=outcome.exit_code,
                signal=outcome.signal,
                duration_ms=outcome.duration_ms,
                error_type=outcome.error_type,
                error=outcome.error,
                output=outcome.output,
            )
        )
        return outcome

    def _attempt_event(
        self, item: _Item, attempt: int, type: str, **fields: Any
    ) -> eventlog.Event:
        return eventlog.Event(
            type=type,
            item_id=item.item_id,
            job_id=item.job_id,
            correlation_id=item.correlation_id,
            run_id=self.summary.run_id,
            attempt=attempt,
            **fields,
        )

    def _command(self, item: _Item, attempt: int) -> Command | None:
        """What to run for this try; None if there is nothing to run.

        Raises:
            MissingValueError: the payload lacks a value the command names.
        """
        if self.template is None:
            if not item.command:
                return None
            return Command(["/bin/sh", "-c", item.command], shown=item.command)
        values = {
            "item_id": item.item_id,
            "job_id": item.job_id or "",
            "attempt": attempt,
            "payload": item.payload,
        }
        return self.template.render(values)

    async def _spawn(self, item: _Item, command: Command, attempt: int) -> Outcome:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "spawning %s attempt %d: %s", item.item_id, attempt, _show(command.argv)
            )
        env = self.base_env.copy()
        env.update(command.env)
        env.update(
            DLQ_ITEM_ID=item.item_id,
            DLQ_JOB_ID=item.job_id or "",
            DLQ_CORRELATION_ID=item.correlation_id or "",
            DLQ_ATTEMPT=str(attempt),
            DLQ_RUN_ID=self.summary.run_id,
        )
        return await run_attempt(
            command.argv,
            stdin=(item.payload or "null").encode("utf-8"),
            env=env,
            timeout=self.options.timeout,
            grace=self.options.grace,
            process_groups=self.process_groups,
        )

    async def _quarantine(self, item: _Item) -> None:
        logger.debug(
            "quarantining %s: %d attempts used of --max-attempts %d",
            item.item_id,
            item.budget_used,
            self.options.max_attempts,
        )
        await self.append(
            eventlog.Event(
                type="item_quarantined",
                item_id=item.item_id,
                job_id=item.job_id,
                correlation_id=item.correlation_id,
                run_id=self.summary.run_id,
                reason=f"reached {self.options.max_attempts} attempts "
                "(--max-attempts); requeue it after fixing the cause",
            )
        )
        self.summary.quarantined += 1

    # -- run events ------------------------------------------------------

    def _run_started(self, selection: Selection) -> eventlog.Event:
        return eventlog.Event(
            type="run_started",
            run_id=self.summary.run_id,
            command=_show(self.options.command) if self.options.command else None,
            data=_encode(
                {"options": self.options.as_record(), "selection": _asdict(selection)}
            ).decode(),
        )

    def _run_finished(self) -> eventlog.Event:
        return eventlog.Event(
            type="run_finished",
            run_id=self.summary.run_id,
            duration_ms=round(self.summary.duration_s * 1000),
            data=_encode(self.summary.as_dict()).decode(),
        )


class _RateLimiter:
    """At most ``rate`` starts per second, evenly spaced."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_start: float | None = None
        self.lock = trio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = trio.current_time()
            if self.next_start is not None and self.next_start > now:
                await trio.sleep_until(self.next_start)
                now = self.next_start
            self.next_start = now + self.interval


def _item(row: dict[str, Any]) -> _Item:
    return _Item(
        item_id=row["item_id"],
        job_id=row["job_id"],
        correlation_id=row["correlation_id"],
        payload=row["payload"],
        command=row["command"],
        attempts=row["attempts"] or 0,
        budget_used=row["budget_used"] or 0,
    )


def _show(argv: tuple[str, ...] | list[str]) -> str:
    return shlex.join(argv)


def _asdict(selection: Selection) -> dict[str, Any]:
    return {
        "item_ids": list(selection.item_ids),
        "job_id": selection.job_id,
        "where": selection.where,
        "signature": selection.signature,
        "limit": selection.limit,
        "force": selection.force,
    }


def _conditions_text(chosen: dict[str, Any]) -> str:
    """A selection's conditions as a log line shows them."""
    shown = [
        f"{name}={value!r}"
        for name, value in chosen.items()
        if value not in (None, (), False) and name != "include_quarantined"
    ]
    return " where " + ", ".join(shown) if shown else ""


def _failure_text(outcome: Outcome) -> str:
    if outcome.signal is not None:
        return f"signal {outcome.signal}"
    if outcome.exit_code is not None:
        return f"exit code {outcome.exit_code}"
    return outcome.error_type or "an error"
