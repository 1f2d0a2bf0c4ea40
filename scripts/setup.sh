#!/usr/bin/env bash
# Create .venv (if missing) and install the project into it. Idempotent; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Pin torch first: the CPU build 2.13.0 is what this project is tested with, and an unpinned
# torch would pull several GB of CUDA packages. pyproject.toml keeps torch < 2.14 as well.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
