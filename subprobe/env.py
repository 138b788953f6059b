"""Environment stamp written into every run directory."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_stamp(seed: int, device: str = "cpu") -> dict:
    """Versions, platform, threads and seed."""
    import torch

    packages = ["subprobe", "torch", "transformers", "tokenizers", "safetensors", "conllu", "seqeval", "numpy"]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "seed": seed,
        "packages": {p: _version(p) for p in packages},
        "argv": sys.argv,
    }
