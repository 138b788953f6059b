"""Exact sparsity: a density constraint ``s = p`` on the masks, held by a Lagrangian (CoFi; Wang et al. 2020).

The **expected density** is the expected L0 of every mask unit weighted by the number of weights it governs,
over all masked weights,

    E = sum_u P(z_u != 0) * weights(u) / sum_u weights(u),   P(z != 0) = sigmoid(log_alpha - beta*log(-gamma/zeta)).

The constrained ``s`` (:func:`controlled_density`) has the value of the **hard** density (what
``metrics.json``'s ``density`` reports) and the gradient of ``E`` (a straight-through estimate): the multipliers
see the density the run will report, not its smooth proxy, which can differ from it by 0.05 to 0.1 (a
unit with ``log_alpha`` in (-1.6, 0) counts over one half in ``E`` but is dropped by the hard mask). The
objective adds

    l1 * (s - p) + l2 * (s - p)^2

where the multipliers ``l1, l2`` (start at 0) are trained by gradient **ascent** (their optimiser group
maximises) while the masks and the head descend: while ``s > p`` the gradient of ``l1`` is positive, so
``l1`` grows and pushes ``s`` down; ``l2`` grows with any violation (its gradient is ``(s - p)^2``).

The Lagrangian steers the density along the ramp; once the target has reached ``p`` (the hold phase, after
``--lambda-end``) the constraint is held exactly instead: after every optimiser step :func:`project_to_density`
rounds the hard mask to the kept count closest to ``p`` by flipping the units nearest the threshold (ranked by
mask logit, as CoFi's deterministic mask ranks them), and the Lagrangian term is off. The masks keep learning
which units rank highest and the head trains on a mask of the final density for the whole hold phase. The
density the Lagrangian reached at the end of the ramp and the units the first rounding flipped are recorded
(``metrics.json``: ``density_before_projection``, ``projected_units``), so the controller's own precision stays
visible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


def controlled_density(matrices: Iterable[Masked]) -> torch.Tensor:
    """The hard density in value, the expected density in gradient (see the module doc)."""
    matrices = list(matrices)
    expected = expected_density(matrices)
    return expected + (counting.density(matrices) - expected.detach())


@dataclass(frozen=True)
class Projection:
    """What :func:`project_to_density` did: the hard density before and after, and the units it flipped."""

    before: float
    after: float
    flipped_units: int

    def facts(self) -> dict:
        """``metrics.json``'s record of the rounding."""
        return {"density_before_projection": self.before, "projected_units": self.flipped_units}


#: A flipped unit's new |logit|: just on its new side of the hard threshold (log_alpha 0 is soft mask 0.5).
_FLIP_MARGIN = 1e-3


def project_to_density(matrices: Iterable[Masked], target: float) -> Projection:
    """Round the hard masks of ``matrices`` to the kept-weight fraction closest to ``target``.

    Units are ranked by mask logit over all matrices; the cut keeps the highest-ranked units whose weights
    add up closest to ``target`` of all masked weights (between two equally close cuts, the one with fewer
    flips). Only units on the wrong side of the cut change: a kept unit below it gets logit ``-1e-3``
    (dropped), a dropped unit above it ``+1e-3`` (kept), so their soft masks move to about 0.5, where they
    were nearly. Shared (tied) logits are one unit each.

    The hard mask already keeps the highest-ranked units, so only the units nearest the threshold on one side
    are candidates: no full sort (a per-weight mask of all-MiniLM-L6-v2 has 10.6M units; sorting them took
    2.4 s, more than a training step), one ``topk`` over the units within a band of the threshold; nothing
    when the count is already the closest. Measured on that per-weight mask (2 threads): 0.2 s per call with
    nothing to flip, 0.8 s with 2M flips; neuron masks (27,648 units): 1.4 and 2.7 ms.
    """
    matrices = list(matrices)
    groups: dict[int, list[Masked]] = {}  # matrices viewing one set of logits (a shared mask) count together
    for m in matrices:
        groups.setdefault(m.log_alpha.data_ptr(), []).append(m)
    firsts = [members[0] for members in groups.values()]
    logits = torch.cat([m.log_alpha.detach().reshape(-1).float() for m in firsts])
    sizes = torch.cat([  # weights one unit governs, summed over the matrices sharing it
        torch.full((m[0].log_alpha.numel(),), float(sum(counting.weights_per_unit(x.block) for x in m)))
        for m in groups.values()
    ]).to(logits.device)
    total = sum(counting.masked_weights(m.log_alpha, m.block) for m in matrices)
    kept = hc.hard_mask(logits) > 0
    kept_weights = float(sizes[kept].sum())
    gap = kept_weights - target * total  # > 0: too dense, drop kept units; < 0: add dropped ones
    smallest = float(sizes.min())
    side = kept if gap > 0 else ~kept
    most = int(abs(gap) // smallest) + 2  # no more flips can bring it closer
    flip, moved_weights = torch.zeros_like(kept), 0.0
    # within half the smallest unit of the target no flip brings it closer: the usual case in the hold phase
    candidates = _nearest_threshold(-logits if gap > 0 else logits, side, most) if abs(gap) > smallest / 2 else ()
    if len(candidates):
        moved = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes[candidates], 0)])
        count = int(torch.argmin((abs(gap) - moved).abs()))  # flip the first ``count`` candidates
        flip[candidates[:count]] = True
        moved_weights = float(moved[count])
    flipped, offset = 0, 0
    with torch.no_grad():
        for m in firsts:
            n = m.log_alpha.numel()
            mine = flip[offset : offset + n].view_as(m.log_alpha)
            offset += n
            flipped += int(mine.sum())
            m.log_alpha.masked_fill_(mine, -_FLIP_MARGIN if gap > 0 else _FLIP_MARGIN)
    after = kept_weights - moved_weights if gap > 0 else kept_weights + moved_weights
    return Projection(kept_weights / total, after / total, flipped)


def _nearest_threshold(height: torch.Tensor, side: torch.Tensor, most: int) -> torch.Tensor:
    """Indices of the (at most) ``most`` units of ``side`` with the highest ``height`` (all below or at 0 on
    that side: a unit's distance to the threshold, negated), highest first. Units within a band below 0 are
    gathered first, the band widened until it holds enough, so the ``topk`` runs over a few units, not all."""
    band = 0.01
    while True:
        pool = (side & (height >= -band)).nonzero().squeeze(1)
        if pool.numel() >= most or band == float("inf"):
            break
        band = band * 16 if band < 1e3 else float("inf")
    top = torch.topk(height[pool], min(most, pool.numel())).indices
    return pool[top]


class DensityLagrangian(nn.Module):
    """The multipliers ``l1, l2`` and the term ``l1 * (s - t) + l2 * (s - t)^2`` (see the module doc).

    The target ``t`` moves from the density at the first call (:attr:`start_density`, kept as a buffer
    so a resumed run continues the same ramp) to ``p`` as ``ramp`` goes from 0 to 1. Train :attr:`multipliers`
    in an optimiser group with ``maximize=True`` (gradient ascent).
    """

    def __init__(self, target: float) -> None:
        super().__init__()
        self.p = float(target)
        self.l1 = nn.Parameter(torch.zeros(()))
        self.l2 = nn.Parameter(torch.zeros(()))
        self.register_buffer("start_density", torch.full((), float("nan")))
        #: what the first :meth:`hold` found and did: the density reached by the ramp, the units it flipped
        self.register_buffer("ramp_end_density", torch.full((), float("nan")))
        self.register_buffer("ramp_end_flips", torch.full((), -1, dtype=torch.int64))

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

    def hold(self, matrices: Iterable[Masked]) -> Projection:
        """Round the hard masks to the target (:func:`project_to_density`); the first call is recorded."""
        done = project_to_density(matrices, self.p)
        if bool(self.ramp_end_density.isnan()):
            self.ramp_end_density.fill_(done.before)
            self.ramp_end_flips.fill_(done.flipped_units)
        return done

    def record(self, matrices: Iterable[Masked]) -> Projection | None:
        """The run's rounding for ``metrics.json``: the density at the first hold, the units it flipped, now."""
        if bool(self.ramp_end_density.isnan()):
            return None
        return Projection(float(self.ramp_end_density), counting.density(matrices), int(self.ramp_end_flips))
