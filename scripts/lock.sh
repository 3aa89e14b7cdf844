#!/usr/bin/env bash
# Regenerate, from the direct pins in pyproject.toml, for Python 3.11 on x86-64 Linux:
#   requirements.lock  every transitive pin of rlops[airflow,serving,dev], with hashes: what
#                      scripts/bootstrap.sh installs;
#   requirements.txt   the same pins for the runtime only (rlops[airflow,serving]), without hashes:
#                      what the Docker images install and grep.
# Run it after changing a pin in pyproject.toml; never edit either file by hand.
# uv runs from a throwaway venv: it is a tool of this script, not a dependency of the project.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.10
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"

# torch: the CPU wheel. A machine that has it on disk (pip's find-links, /opt/wheels) uses that
# file; any other asks PyTorch's CPU index, whose wheel is the same file.
if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
  torch_source=(--find-links /opt/wheels)
else
  torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi

compile=("$tools/bin/uv" pip compile pyproject.toml --python-version 3.11
         --python-platform x86_64-manylinux_2_28 "${torch_source[@]}" --no-header --quiet)
"${compile[@]}" --extra airflow --extra serving --extra dev --generate-hashes \
  --output-file requirements.lock.new
"${compile[@]}" --extra airflow --extra serving --no-annotate --constraint requirements.lock.new \
  --output-file requirements.txt.new
generated="Generated from pyproject.toml by 'bash scripts/lock.sh' (uv $UV_VERSION): do not edit."
{
  echo "# Every pin of rlops[airflow,serving,dev], with hashes, for Python 3.11 on x86-64 Linux."
  echo "# $generated"
  echo "# torch is the CPU wheel: https://download.pytorch.org/whl/cpu"
  cat requirements.lock.new
} > requirements.lock
{
  echo "# The runtime pins of rlops[airflow,serving] (a subset of requirements.lock, no hashes)."
  echo "# $generated"
  echo "# torch is the CPU wheel: https://download.pytorch.org/whl/cpu"
  cat requirements.txt.new
} > requirements.txt
rm requirements.lock.new requirements.txt.new
echo "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) pins;" \
  "requirements.txt: $(grep -c '^[a-z0-9]' requirements.txt)"
