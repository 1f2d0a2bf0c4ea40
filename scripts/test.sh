#!/usr/bin/env bash
# Set up and run the test suite (unit, golden, notebook and end-to-end tests on real data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
# The layers (README "Layout"; contracts in pyproject.toml): a module imports only its own layer
# or below, analysis/ only study.core, and no import cycles.
lint-imports
python -m pytest "$@"
