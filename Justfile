# The one way to work on dlq: `just` lists the recipes.

default: test lint

# Run the whole test suite (what CI runs).
test *args:
    python -m pytest -q {{args}}

# The reliability suite's long form: 300 seeded trials per fault, and its tally.
soak *args:
    DLQ_RELIABILITY_REPORT=reliability-figures.json python -m pytest -q tests/reliability --soak {{args}}

# Lint, check formatting and types.
lint:
    ruff check .
    ruff format --check .
    mypy

# Reformat the code in place.
fmt:
    ruff format .
    ruff check --fix .

# Speed and memory figures, each beside its reference measured in the same run.
bench *args:
    python -m bench {{args}}

# Build a sample queue, replay it and show what went wrong.
demo *args:
    dlq demo {{args}}
