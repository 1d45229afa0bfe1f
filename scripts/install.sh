#!/usr/bin/env bash
# Install qunlearn into ./.venv from scratch: the CPU build of torch first (pip would otherwise pull
# a multi-GB CUDA build), then the project with the exact versions of constraints.txt.
# GPU users: install the torch build for your CUDA first, then run this script (torch stays).
# WITH_LATEX=1: also LaTeX from Debian's packages (scripts/install_latex.sh), for `snakemake paper`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet torch==2.13.0
fi
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test,docs,lint]"
"$VENV/bin/python" -m pip check
if [ "${WITH_LATEX:-0}" = 1 ]; then
  bash scripts/install_latex.sh
fi
echo "installed into $VENV: $("$VENV/bin/python" -c 'import torch, transformers, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "snakemake", snakemake.__version__)')"
