"""The `dlq` command line, built with typer on top of the other packages."""

from dlq import _manage  # noqa: F401  (registers its commands)
from dlq._app import app

__all__ = ["app"]
