"""The command `dlq demo` replays its sample queue with.

It stands for a batch job's worker after a fix was deployed. It reads the
item's payload from stdin, as every replayed command may, takes its id as an
argument and the attempt number from ``DLQ_ATTEMPT``. By its rules:

- most items now go through;
- an item whose number leaves 1 when divided by 5 meets a flaky network on
  its first attempt and goes through on the next;
- every third thumbnail is a corrupt image and every fourth invoice has a
  negative total: two bugs still there, failing every time;
- a document of more than 10,000 pages takes minutes, longer than the demo's
  timeout.

Only the standard library is used, so that it starts quickly.
"""

import json
import os
import sys
import time


def main() -> int:
    item_id = sys.argv[1]
    payload = json.load(sys.stdin)
    n = payload["n"]
    if payload.get("pages", 0) > 10_000:
        time.sleep(600)
    if item_id.startswith("thumbnails") and n % 3 == 0:
        # A corrupt input image: the exception a person would quote is the
        # traceback's last line.
        print(
            "Traceback (most recent call last):\n"
            '  File "resize.py", line 42, in <module>\n'
            "    main()\n"
            f"PIL.UnidentifiedImageError: cannot identify image file "
            f"'/data/in/{n}.jpg'",
            file=sys.stderr,
        )
        return 1
    if item_id.startswith("invoices") and n % 4 == 0:
        print(
            f"ValueError: invoice {n} has a negative total (-{n}.50 EUR)",
            file=sys.stderr,
        )
        return 2
    if n % 5 == 1 and os.environ.get("DLQ_ATTEMPT") == "1":
        print(
            "requests.exceptions.ConnectionError: HTTPSConnectionPool("
            "host='cdn.example.com', port=443): Read timed out.",
            file=sys.stderr,
        )
        return 7
    print(f"processed {item_id} from {payload['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
