"""Append events to an event log from a process of its own.

The crash, concurrency and sealing tests run this script as a real writer::

    python tests/helpers/eventlog_writer.py LOG COUNT [options]

It appends COUNT ``item_enqueued`` events (item ids ``<prefix>-<i>``) through
one :class:`eventlog.LogWriter` and prints each event id on stdout, flushed,
only after the ``append`` that wrote it has returned: every printed id is an
acknowledged event. Options choose how it ends (close and seal, or exit
without closing as a crashed writer would) and how it writes.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys

from eventlog import Event, EventLog, LogWriter, WriterFailedError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log")
    parser.add_argument("count", type=int)
    parser.add_argument("--prefix", default="item")
    parser.add_argument("--segment-max-bytes", type=int, default=None)
    parser.add_argument(
        "--max-batch", type=int, default=1, help="append 1..N events per call"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-bytes", type=int, default=0)
    parser.add_argument(
        "--wait-for-go", action="store_true", help="start on a line from stdin"
    )
    parser.add_argument(
        "--abandon", action="store_true", help="exit without closing the writer"
    )
    parser.add_argument(
        "--file-size-limit",
        type=int,
        default=None,
        help="set RLIMIT_FSIZE; report the failed append instead of crashing",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    log = EventLog.open(args.log)
    options = {}
    if args.segment_max_bytes is not None:
        options["segment_max_bytes"] = args.segment_max_bytes
    writer = LogWriter(log, **options)
    rng = random.Random(args.seed)
    output = "x" * args.output_bytes or None

    if args.file_size_limit is not None:
        # Past the limit a write fails with EFBIG instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = args.file_size_limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if args.wait_for_go:
        sys.stdin.readline()

    done = 0
    while done < args.count:
        size = min(rng.randint(1, args.max_batch), args.count - done)
        events = [
            Event(
                type="item_enqueued",
                item_id=f"{args.prefix}-{done + i}",
                output=output,
            )
            for i in range(size)
        ]
        try:
            stamped = writer.append(events)
        except WriterFailedError as exc:
            cause = exc.__cause__
            errno = cause.errno if isinstance(cause, OSError) else None
            print(f"failed {errno}", flush=True)
            break
        print("\n".join(event.event_id for event in stamped), flush=True)
        done += size

    if args.abandon:
        os._exit(0)
    writer.close()


if __name__ == "__main__":
    main()
