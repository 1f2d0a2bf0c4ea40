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
# torch-mist (MIT; tests/test_crosscheck_torch_mist.py checks MI-alpha against its AlphaTUBA): its
# metadata pins numpy < 2, which the estimator modules do not need; its imports (pyro-ppl) come
# with the dev extra above. --no-deps keeps numpy and torch as they are.
python -m pip install --quiet --no-deps "torch-mist==0.2.17"

# WordNet 3.0 for EDA's synonym operations (study/augment/wordnet.py reads Debian's /usr/share/wordnet
# through nltk). Without it EDA runs without synonym replacement, and its version says so.
wordnet_msg="EDA will run without synonym replacement (its augmentation version records the operations)."
if [ -f /usr/share/wordnet/data.noun ]; then
  :
elif command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends wordnet-base; }; then
      echo "setup.sh: apt-get could not install wordnet-base. $wordnet_msg" >&2
    fi
  else
    echo "setup.sh: wordnet-base is missing and apt-get needs root (or passwordless sudo). $wordnet_msg" >&2
  fi
else
  echo "setup.sh: wordnet-base is missing and apt-get is not available. Where the internet is" \
       "reachable, 'python -m nltk.downloader wordnet' installs NLTK's copy instead. $wordnet_msg" >&2
fi
