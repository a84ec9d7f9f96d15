"""The `dlq` command line, built with typer on top of the other packages."""

import os
import sys

# Arrow's default allocator (mimalloc) keeps what one thread freed for that
# thread, and a replay parses and seals its segments from whichever worker
# thread commits, so its memory grew by tens of MiB with each segment sealed;
# jemalloc gives that memory back. Arrow reads the variable when its library
# loads, so this comes before any module of the CLI imports pyarrow (choosing
# the pool later, with set_memory_pool, saved less). The variable is removed
# again at once, so that the commands a replay runs never see it, and a user
# who set it keeps their choice. Only on Linux, whose pyarrow wheels are
# built with jemalloc: elsewhere Arrow would warn about it on every command.
_SET_POOL = (
    sys.platform.startswith("linux") and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
)
if _SET_POOL:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
import pyarrow  # noqa: E402, F401  (loads Arrow with that pool)

if _SET_POOL:
    del os.environ["ARROW_DEFAULT_MEMORY_POOL"]

from dlq import (  # noqa: E402
    _audit,  # noqa: F401  (registers its commands)
    _export,  # noqa: F401  (registers its commands)
    _manage,  # noqa: F401  (registers its commands)
    _verify,  # noqa: F401  (registers its commands)
)
from dlq._app import app  # noqa: E402

__all__ = ["app"]
