"""The `dlq` command line, built with typer on top of the other packages."""

from dlq._app import app

__all__ = ["app"]
