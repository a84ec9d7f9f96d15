"""Append events from a process of its own, starting once a barrier file exists.

The reliability suite starts several of these and releases them together::

    python tests/reliability/helpers/barrier_writer.py LOG NAME COUNT BARRIER

Each opens its :class:`eventlog.LogWriter`, touches ``BARRIER.NAME.ready``,
waits for ``BARRIER`` to appear, then appends COUNT ``item_enqueued`` events
(item ids ``NAME-<i>``, payload ``{"writer": NAME, "i": i}``) in batches of
1 to 50, sized by a generator seeded with NAME, and closes the writer.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from eventlog import Event, EventLog, LogWriter


def main() -> None:
    log_path, name, count, barrier = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        Path(sys.argv[4]),
    )
    rng = random.Random(name)
    with LogWriter(EventLog.open(log_path)) as writer:
        Path(f"{barrier}.{name}.ready").touch()
        while not barrier.exists():
            time.sleep(0.001)
        done = 0
        while done < count:
            size = min(rng.randint(1, 50), count - done)
            writer.append(
                [
                    Event(
                        type="item_enqueued",
                        item_id=f"{name}-{i}",
                        payload=json.dumps({"writer": name, "i": i}),
                    )
                    for i in range(done, done + size)
                ]
            )
            done += size


if __name__ == "__main__":
    main()
