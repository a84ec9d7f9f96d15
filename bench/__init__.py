"""The benchmarks `just bench` runs: ``python -m bench`` (see ``__main__``)."""
