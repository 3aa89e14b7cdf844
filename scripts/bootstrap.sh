#!/usr/bin/env bash
# Create (or reuse) the project virtualenv in .venv with the pinned requirements and rlops itself.
# Re-running is cheap: pip only runs again when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.rlops-requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing pinned requirements into .venv (first run: a few minutes)"
  # torch==2.13.0 resolves to the local CPU wheel; see README "Installing".
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -r requirements-dev.txt -e .; } > "$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" | tail -40
    echo "pip install failed; full log: $log" >&2
    exit 1
  fi
  .venv/bin/python -m pip check
  echo "$wanted" > "$stamp"
fi
