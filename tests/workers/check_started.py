"""Succeed only if this attempt's ``attempt_started`` is already in the log.

    python check_started.py LOG_DIR

Looks through the log's live segments (JSON Lines) for the event that
starts this attempt: same item, run and attempt number as the ``DLQ_*``
variables say. Fails with ``LookupError`` when it is not there.
"""

import json
import os
import sys
from pathlib import Path


def main() -> None:
    wanted = (
        os.environ["DLQ_ITEM_ID"],
        os.environ["DLQ_RUN_ID"],
        int(os.environ["DLQ_ATTEMPT"]),
    )
    for segment in Path(sys.argv[1], "segments").glob("*.jsonl"):
        for line in segment.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line another attempt is still writing
            found = (event["item_id"], event["run_id"], event["attempt"])
            if event["type"] == "attempt_started" and found == wanted:
                return
    raise LookupError(f"no attempt_started for {wanted} in the log")


if __name__ == "__main__":
    main()
