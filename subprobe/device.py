"""Where a run computes: ``--device auto|cpu|cuda|cuda:N|mps``, its precision and its seeding.

``auto`` picks CUDA when torch sees a GPU, else the CPU (MPS only when asked for: its bf16 and
some kernels are incomplete). The model, the masks, the head, every batch and cached features
live on the chosen device; autocast uses its type. The quick profile's bf16 stays bf16 where the hardware
multiplies bf16 natively (AVX512-BF16/AMX CPUs, NVIDIA Ampere and newer) and becomes fp32 elsewhere (said on
stderr): emulated bf16 is slower than fp32.
"""

from __future__ import annotations

import random
import re

import numpy as np
import torch

from subprobe.errors import ConfigError

DEVICE_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_spec(spec: str) -> None:
    """Reject a malformed ``--device`` value (availability is checked by :func:`resolve_device`)."""
    if not isinstance(spec, str) or not DEVICE_SPEC.fullmatch(spec.strip().lower()):
        raise ConfigError(f"--device {spec!r} is not known; use auto, cpu, cuda, cuda:N (N = GPU index) or mps")


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device for ``spec``; a device that is not there is one ConfigError line."""
    check_device_spec(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("--device mps: Apple's MPS backend is not available here; use --device cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"--device {spec}: CUDA is not available ({why}); use --device cpu or --device auto")
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {spec}: there are {torch.cuda.device_count()} CUDA GPU(s), numbered from 0; "
            "give an existing index"
        )
    return device


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CPU with AVX512-BF16 or AMX-BF16, an NVIDIA GPU of
    compute capability 8.0 or newer (Ampere on). Elsewhere bf16 is emulated (a V100's or T4's, an AVX2 CPU's) and
    slower than fp32."""
    if device.type == "cpu":
        capabilities = getattr(torch.cpu, "get_capabilities", dict)()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return False


def bf16_runs(device: torch.device) -> bool:
    """Whether bf16 runs on ``device`` at all, natively or emulated (MPS: treated as not)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=True))
    return False


def effective_precision(precision: str, device: torch.device, explicit: bool) -> tuple[str, str | None]:
    """(precision to use, note for stderr or None).

    bf16 from a profile stays bf16 only where it is native (:func:`bf16_native`) and becomes fp32 elsewhere; bf16
    asked for explicitly runs where it runs at all (emulated: with a note that it is slower than fp32) and is a
    ConfigError where it does not."""
    if precision != "bf16" or bf16_native(device):
        return precision, None
    if explicit:
        if bf16_runs(device):
            return "bf16", f"{device_name(device)} has no native bf16: --precision bf16 is emulated, slower than fp32"
        raise ConfigError(f"--precision bf16 is not supported on {device}; use --precision fp32")
    return "fp32", f"{device_name(device)} has no native bf16: the profile's precision becomes fp32"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (``torch.manual_seed`` seeds every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """``cpu (AMD EPYC)``, or ``cuda:0 (NVIDIA H100 ...)`` for the environment stamp and notes."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        name = getattr(torch.cpu, "get_capabilities", dict)().get("cpu_name")
        return f"cpu ({name})" if name else "cpu"
    return str(device)


#: Row counts of bf16 matmuls whose size changes with every batch (distinct heads, packed words) are rounded up
#: to a multiple of this: on the CPU, oneDNN compiles a bf16 matmul kernel for every new shape it meets
#: (1-30 ms each, measured), which costs more than multiplying a few zero rows.
ROW_QUANTUM = 64


def quantised_rows(n: int, quantum: int = ROW_QUANTUM) -> int:
    """``n`` rounded up to a multiple of ``quantum``."""
    return -(-n // quantum) * quantum
