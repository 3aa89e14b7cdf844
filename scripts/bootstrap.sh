#!/usr/bin/env bash
# Create (or reuse) the project virtualenv in .venv from requirements.lock, and rlops itself.
# Re-running is cheap: pip only runs again when the lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.rlops-requirements.sha256
wanted=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing requirements.lock into .venv (first run: a few minutes)"
  # Every package at the lock's pin and hash, then rlops and the example env package themselves
  # (editable, nothing more to resolve). torch is the CPU wheel: pip takes it from its
  # find-links where it lies on disk, from PyTorch's CPU index otherwise.
  torch_pin=$(grep -m1 '^torch==' requirements.lock | cut -d' ' -f1)
  torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
  if .venv/bin/python -m pip install --dry-run --no-index --no-deps --quiet "$torch_pin" \
       >/dev/null 2>&1; then
    torch_index=()
  fi
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install --require-hashes -r requirements.lock \
              "${torch_index[@]}" \
         && .venv/bin/python -m pip install --no-deps -e . -e examples/rlops-example-envs; } \
       > "$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" | tail -40
    echo "pip install failed; full log: $log" >&2
    exit 1
  fi
  .venv/bin/python -m pip check
  echo "$wanted" > "$stamp"
fi
