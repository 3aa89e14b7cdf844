#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, format check, the docs build, then pytest (unit, DAG
# integrity, integration against real services the fixtures start). Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/system-deps.sh   # PostgreSQL server, chromium + chromium-driver, OSMesa (MuJoCo videos)

echo "==> ruff check / ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> mkdocs build --strict (the documentation site; a broken link fails)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

echo "==> pytest"
# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
# Three workers on the CI box's two cores: much of the suite waits on services (heartbeats, a
# killed scheduler's successor, a paused S3), and a third worker fills those waits; the tests of one
# stack share a worker, so each stack starts once (tests/conftest.py: STACK_FIXTURES).
.venv/bin/python -m pytest -n 3 --dist loadgroup "$@"
