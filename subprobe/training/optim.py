"""The optimiser of every run: Adam, with torch's fused (one kernel) implementation where it applies."""

from __future__ import annotations

import torch

#: Adam's settings in every run (the paper's)
BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_kind(params: list[torch.Tensor]) -> str:
    """``"fused"`` when torch's fused Adam supports every parameter (floating point, one supported device
    type), else ``"foreach"`` (several tensors per kernel) or ``"single"`` (none to train)."""
    if not params:
        return "single"
    kinds = {p.device.type for p in params}
    supported = set(getattr(torch.utils._foreach_utils, "_get_fused_kernels_supported_devices", lambda: [])())
    if len(kinds) == 1 and kinds <= supported and all(p.is_floating_point() for p in params):
        return "fused"
    return "foreach"


def make_adam(param_groups: list[dict]) -> torch.optim.Adam:
    """Adam over ``param_groups`` (betas 0.9/0.999, eps 1e-8), fused when :func:`adam_kind` says so.

    The fused and foreach kernels compute the same update as the per-tensor loop (to rounding; tested).
    If torch refuses the fused form anyway, the foreach one is used.
    """
    params = [p for g in param_groups for p in g["params"]]
    kind = adam_kind(params)
    if kind == "fused":
        try:
            return torch.optim.Adam(param_groups, betas=BETAS, eps=EPS, fused=True)
        except (RuntimeError, ValueError, TypeError):
            kind = "foreach"
    return torch.optim.Adam(param_groups, betas=BETAS, eps=EPS, foreach=kind == "foreach")
