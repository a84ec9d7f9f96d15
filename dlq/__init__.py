"""The `dlq` command line, built with typer on top of the other packages."""

from dlq import (
    _audit,  # noqa: F401  (registers its commands)
    _export,  # noqa: F401  (registers its commands)
    _manage,  # noqa: F401  (registers its commands)
    _verify,  # noqa: F401  (registers its commands)
)
from dlq._app import app

__all__ = ["app"]
