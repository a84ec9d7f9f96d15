"""The command `dlq demo` replays its sample queue with.

It stands for a batch job's worker after a fix was deployed: most items now
go through, and two bugs are still there. It reads the item's payload from
stdin, as every replayed command may, and takes its id as an argument. Only
the standard library is used, so that it starts quickly.
"""

import json
import sys


def main() -> int:
    item_id = sys.argv[1]
    payload = json.load(sys.stdin)
    n = payload["n"]
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
    print(f"processed {item_id} from {payload['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
