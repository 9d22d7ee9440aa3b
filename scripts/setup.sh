#!/usr/bin/env bash
# Create .venv and install dragnext with its test tools, on a CPU-only machine.
# torch is pinned to the CPU build first: a bare "torch" requirement would pull a multi-GB CUDA build.
# GPU users: see README ("Installing on a GPU machine").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${DRAGNEXT_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[${DRAGNEXT_EXTRAS:-dev}]"
echo "dragnext installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
