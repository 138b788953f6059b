"""Comparing two subnetworks at weight level: agreement and Jaccard (IoU) of the kept weights.

Each matrix's hard mask is expanded to its weights (its block and layout, see
:func:`subprobe.masking.counting.kept_weight_mask`), so runs with different granularities or layouts
of the same model compare. Both numbers are symmetric and 1.0 for identical subnetworks:

* agreement = weights kept by both or dropped by both / all masked weights;
* IoU (Jaccard) = weights kept by both / weights kept by either (1.0 when neither keeps any).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from subprobe.errors import SubprobeError
from subprobe.masking import counting
from subprobe.masking.entries import MaskEntry


@dataclass(frozen=True)
class Overlap:
    """Weight counts of two hard masks over the same weights."""

    both: int = 0
    only_a: int = 0
    only_b: int = 0
    total: int = 0

    def __add__(self, other: Overlap) -> Overlap:
        return Overlap(self.both + other.both, self.only_a + other.only_a, self.only_b + other.only_b,
                       self.total + other.total)

    @property
    def agreement(self) -> float:
        """Fraction of the weights on which both masks agree (kept by both or dropped by both)."""
        return (self.total - self.only_a - self.only_b) / self.total if self.total else 1.0

    @property
    def iou(self) -> float:
        """Weights kept by both / weights kept by either (1.0 when neither keeps any)."""
        union = self.both + self.only_a + self.only_b
        return self.both / union if union else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {"agreement": self.agreement, "iou": self.iou, "kept_both": self.both, "kept_only_a": self.only_a,
                "kept_only_b": self.only_b, "weights": self.total}


@dataclass(frozen=True)
class Comparison:
    """Overlap of two subnetworks overall, per layer and per matrix role (keys in first-seen order)."""

    overall: Overlap
    by_layer: dict[str, Overlap] = field(default_factory=dict)
    by_role: dict[str, Overlap] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "overall": self.overall.as_dict(),
            "by_layer": {k: v.as_dict() for k, v in self.by_layer.items()},
            "by_role": {k: v.as_dict() for k, v in self.by_role.items()},
        }

    def format(self) -> str:
        """A plain-text table: one row overall, then one per layer and one per role."""
        lines = [f"{'':<16} {'IoU':>7} {'agree':>7} {'kept A':>12} {'kept B':>12} {'weights':>12}"]

        def row(label: str, o: Overlap) -> str:
            return (f"{label:<16} {o.iou:>7.4f} {o.agreement:>7.4f} {o.both + o.only_a:>12,} "
                    f"{o.both + o.only_b:>12,} {o.total:>12,}")

        lines.append(row("overall", self.overall))
        lines += [row(f"layer {k}", v) for k, v in self.by_layer.items()]
        lines += [row(f"role {k}", v) for k, v in self.by_role.items()]
        return "\n".join(lines)


def entry_overlap(a: MaskEntry, layout_a: str, b: MaskEntry, layout_b: str) -> Overlap:
    """Weight-level overlap of two masks of the same matrix (shapes must match)."""
    ka = counting.kept_weight_mask(a.log_alpha, a.block, layout_a).bool()
    kb = counting.kept_weight_mask(b.log_alpha, b.block, layout_b).bool()
    both = int((ka & kb).sum(dtype=torch.int64))
    return Overlap(both, int(ka.sum(dtype=torch.int64)) - both, int(kb.sum(dtype=torch.int64)) - both, ka.numel())


def compare_masks(a: Sequence[MaskEntry], layout_a: str, model_a: str, b: Sequence[MaskEntry], layout_b: str,
                  model_b: str) -> Comparison:
    """Agreement and IoU of the kept weights of two subnetworks' masks (``Subnetwork.compare`` of two
    :class:`~subprobe.masking.subnetwork.Subnetwork` values); raises :class:`SubprobeError` (one line) when they mask
    different models, matrices or shapes."""
    if model_a and model_b and model_a != model_b:
        raise SubprobeError(f"subnetworks are not comparable: one masks {model_a}, the other {model_b}")
    theirs = {e.name: e for e in b}
    only = [e.name for e in a if e.name not in theirs] or sorted(set(theirs) - {e.name for e in a})
    if only:
        raise SubprobeError(
            f"subnetworks are not comparable: matrix {only[0]} is masked in one only (different models or targets)"
        )
    overall = Overlap()
    by_layer: dict[str, Overlap] = {}
    by_role: dict[str, Overlap] = {}
    for ea in a:
        eb = theirs[ea.name]
        if tuple(ea.shape) != tuple(eb.shape):
            raise SubprobeError(
                f"subnetworks are not comparable: matrix {ea.name} is {ea.shape[0]}x{ea.shape[1]} in one and "
                f"{eb.shape[0]}x{eb.shape[1]} in the other (different models)"
            )
        o = entry_overlap(ea, layout_a, eb, layout_b)
        overall = overall + o
        by_layer[str(ea.layer)] = by_layer.get(str(ea.layer), Overlap()) + o
        by_role[ea.role] = by_role.get(ea.role, Overlap()) + o
    return Comparison(overall, by_layer, by_role)
