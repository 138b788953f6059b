"""Fixed (not learnt) masks that control for a learnt one: ``random-like`` and ``complement``.

Both keep the source :class:`~subprobe.masking.subnetwork.Subnetwork`'s matrices, blocks (granularity)
and layout and are stored as mask logits of :data:`FIXED_LOGIT` (kept) or ``-FIXED_LOGIT`` (dropped),
for which the soft, hard and every sampled mask are exactly 1 or 0 (``|logit| > log 11`` makes the
deterministic mask clamp; 20 is far enough that noise at :data:`~subprobe.masking.hard_concrete.NOISE_EPS`
cannot move a sample off 0 or 1).

* :func:`random_like`: in every matrix, exactly as many units kept as the source's hard mask keeps
  there, chosen uniformly at random (seeded): same density overall, per layer and per role; a mask
  shared by several matrices (``--granularity head | layer``) is drawn once for its group.
* :func:`complement`: exactly the units the source's hard mask drops (density ``1 - d`` per matrix).
"""

from __future__ import annotations

import dataclasses

import torch

from subprobe.masking import hard_concrete as hc
from subprobe.masking.subnetwork import Subnetwork

#: Mask logit of a fixed kept unit (its negative: a dropped one).
FIXED_LOGIT = 20.0
#: ``mask_source`` values of ``metrics.json``.
MASK_SOURCES = ("learnt", "random-like", "complement")


def _from_hard(source: Subnetwork, keeps: list[torch.Tensor]) -> Subnetwork:
    entries = tuple(
        dataclasses.replace(e, log_alpha=torch.where(keep.bool(), FIXED_LOGIT, -FIXED_LOGIT).float())
        for e, keep in zip(source.entries, keeps)
    )
    return dataclasses.replace(source, entries=entries)


def random_like(source: Subnetwork, seed: int) -> Subnetwork:
    """A random hard mask keeping, in every matrix, as many units as ``source``'s hard mask (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    keeps, drawn = [], {}  # a shared mask (--granularity head | layer): one draw for its whole group
    for e in source.entries:
        group = getattr(e, "group", "")
        if not group or group not in drawn:
            n = e.log_alpha.numel()
            keep = torch.zeros(n)
            keep[torch.randperm(n, generator=generator)[: int(hc.hard_mask(e.log_alpha).sum())]] = 1.0
            if group:
                drawn[group] = keep
        keeps.append((drawn[group] if group else keep).view(e.log_alpha.shape))
    return _from_hard(source, keeps)


def complement(source: Subnetwork) -> Subnetwork:
    """The hard mask that keeps exactly the units ``source``'s hard mask drops."""
    return _from_hard(source, [1.0 - hc.hard_mask(e.log_alpha) for e in source.entries])


def fixed_mask(kind: str, source: Subnetwork, seed: int) -> Subnetwork:
    """``random-like`` (:func:`random_like` with ``seed``) or ``complement`` of ``source``."""
    if kind == "random-like":
        return random_like(source, seed)
    if kind == "complement":
        return complement(source)
    raise ValueError(f"unknown fixed mask {kind!r}; use one of {', '.join(MASK_SOURCES[1:])}")
