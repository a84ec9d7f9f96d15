"""Entry point of the `dlq` console script and of `python -m dlq`."""

from dlq._app import app


def main() -> None:
    """Run the command line."""
    app()


if __name__ == "__main__":
    main()
