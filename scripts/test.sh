#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, format check, then pytest (unit, DAG integrity,
# integration against real services the fixtures start). Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/system-deps.sh   # PostgreSQL server, chromium + chromium-driver, OSMesa (MuJoCo videos)

echo "==> ruff check / ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> pytest"
# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
.venv/bin/python -m pytest "$@"
