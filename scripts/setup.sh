#!/usr/bin/env bash
# Create .venv and install dragnext with its test tools, on a CPU-only machine.
#   bash scripts/setup.sh                 # the package, the bundled model and the test tools (extra "dev")
#   bash scripts/setup.sh --with-browser  # also the web UI (extra "ui") and Debian's Chromium for its browser test
# torch is pinned to the CPU build first: a bare "torch" requirement would pull a multi-GB CUDA build.
# GPU users: see README ("Installing on a GPU machine"). DRAGNEXT_EXTRAS overrides the extras (comma-separated).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${DRAGNEXT_EXTRAS:-dev}"
if [ "${1:-}" = "--with-browser" ]; then
    EXTRAS="${DRAGNEXT_EXTRAS:-dev,ui}"
    if ! command -v chromium >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    fi
fi
EXTRAS="${EXTRAS// /}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${DRAGNEXT_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
echo "dragnext installed in .venv with extras [${EXTRAS}] ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
