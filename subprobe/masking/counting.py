"""Counting weights under a hard mask: the one place that turns mask units into weights.

A mask unit governs a block of ``rows x cols`` weights (see :mod:`subprobe.masking.layouts`; every
block size divides its matrix, so each unit governs exactly that many weights whatever the layout).
A matrix of ``out x in`` weights -- a whole ``nn.Linear``, the transposed weight of a ``Conv1D`` or
one role's rows of a fused matrix -- with hard mask ``H`` keeps ``sum(H) * rows * cols`` weights.

Used by the trainer's density check, :class:`~subprobe.masking.subnetwork.Subnetwork` and the
localisation report, for live :class:`~subprobe.masking.masked_linear.MaskedLinear` modules and
saved :class:`~subprobe.masking.entries.MaskEntry` values alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch

from subprobe.masking import hard_concrete as hc
from subprobe.masking.layouts import expand_mask


class Masked(Protocol):
    """What counting needs of a masked matrix: its mask logits and its block size."""

    log_alpha: torch.Tensor
    block: tuple[int, int]


def weights_per_unit(block: tuple[int, int]) -> int:
    """Number of weights one mask unit governs: ``rows * cols``."""
    return block[0] * block[1]


def kept_weight_mask(log_alpha: torch.Tensor, block: tuple[int, int], layout: str) -> torch.Tensor:
    """The hard mask at weight level (``out x in``, 1 = kept), expanded by ``layout``."""
    return expand_mask(hc.hard_mask(log_alpha.detach()), block, layout)


def kept_units(log_alpha: torch.Tensor) -> int:
    """Number of mask units the hard mask keeps."""
    return int(hc.hard_mask(log_alpha.detach()).sum(dtype=torch.int64))


def kept_weights(log_alpha: torch.Tensor, block: tuple[int, int]) -> int:
    """Number of weights the hard mask of one matrix keeps: kept units x weights per unit."""
    return kept_units(log_alpha) * weights_per_unit(block)


def masked_weights(log_alpha: torch.Tensor, block: tuple[int, int]) -> int:
    """Number of weights one matrix's mask governs: mask units x weights per unit (= out x in)."""
    return log_alpha.numel() * weights_per_unit(block)


def count(matrices: Iterable[Masked]) -> tuple[int, int]:
    """``(kept, masked)`` weights summed over ``matrices``."""
    kept = total = 0
    for m in matrices:
        kept += kept_weights(m.log_alpha, m.block)
        total += masked_weights(m.log_alpha, m.block)
    return kept, total


def density(matrices: Iterable[Masked]) -> float:
    """Fraction of masked weights the hard masks keep (0.0 when nothing is masked)."""
    kept, total = count(matrices)
    return kept / max(1, total)


def count_by(matrices: Iterable[Masked], key: Callable[[Masked], object]) -> dict[object, tuple[int, int]]:
    """``(kept, masked)`` weights per ``key(matrix)``, in first-seen order."""
    out: dict[object, tuple[int, int]] = {}
    for m in matrices:
        k = key(m)
        kept, total = out.get(k, (0, 0))
        out[k] = (kept + kept_weights(m.log_alpha, m.block), total + masked_weights(m.log_alpha, m.block))
    return out
