"""Exact sparsity: a density constraint ``s = p`` on the masks, held by a Lagrangian (CoFi; Wang et al. 2020).

``s`` is the **expected density**: the expected L0 of every mask unit weighted by the number of weights
it governs, over all masked weights,

    s = sum_u P(z_u != 0) * weights(u) / sum_u weights(u),   P(z != 0) = sigmoid(log_alpha - beta*log(-gamma/zeta)),

so ``s`` is the expected fraction of masked weights kept (what ``metrics.json``'s ``density`` measures
with the hard mask). The objective adds

    l1 * (s - p) + l2 * (s - p)^2

where the multipliers ``l1, l2`` (start at 0) are trained by gradient **ascent** (their optimiser group
maximises) while the masks and the head descend: while ``s > p`` the gradient of ``l1`` is positive, so
``l1`` grows and pushes ``s`` down; ``l2`` grows with any violation (its gradient is ``(s - p)^2``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from subprobe.masking import counting
from subprobe.masking import hard_concrete as hc
from subprobe.masking.counting import Masked


def expected_density(matrices: Iterable[Masked]) -> torch.Tensor:
    """Weight-weighted expected L0 of ``matrices``: the expected fraction of their weights kept (differentiable)."""
    matrices = list(matrices)
    kept = torch.stack([hc.expected_l0(m.log_alpha).sum() * counting.weights_per_unit(m.block) for m in matrices])
    total = sum(counting.masked_weights(m.log_alpha, m.block) for m in matrices)
    return kept.sum() / total


class DensityLagrangian(nn.Module):
    """The multipliers ``l1, l2`` and the term ``l1 * (s - t) + l2 * (s - t)^2`` (see the module doc).

    The target ``t`` moves from the expected density at the first call (:attr:`start_density`, kept as a buffer
    so a resumed run continues the same ramp) to ``p`` as ``ramp`` goes from 0 to 1. Train :attr:`multipliers`
    in an optimiser group with ``maximize=True`` (gradient ascent).
    """

    def __init__(self, target: float) -> None:
        super().__init__()
        self.p = float(target)
        self.l1 = nn.Parameter(torch.zeros(()))
        self.l2 = nn.Parameter(torch.zeros(()))
        self.register_buffer("start_density", torch.full((), float("nan")))

    @property
    def multipliers(self) -> list[nn.Parameter]:
        return [self.l1, self.l2]

    def target(self, density: torch.Tensor, ramp: float) -> torch.Tensor:
        """The target at ramp position ``ramp`` (0 .. 1); the first call records ``density`` as the start."""
        with torch.no_grad():  # no host sync: set once, where it is still NaN
            self.start_density.copy_(torch.where(self.start_density.isnan(), density.detach(), self.start_density))
        return self.start_density + (self.p - self.start_density) * ramp

    def forward(self, density: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        gap = density - target
        return self.l1 * gap + self.l2 * gap * gap
