#!/usr/bin/env bash
# The main job: set up, run the smoke grid, render its report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# Real GLUE copies ship beside the repo in ../shared/data; elsewhere set STUDY_DATA_DIR or let
# the loader use the hub.
if [ -z "${STUDY_DATA_DIR:-}" ] && [ -d ../shared/data/glue ]; then
  export STUDY_DATA_DIR="$(cd ../shared/data && pwd)"
fi
study run --grid smoke "$@"
study report --grid smoke
