"""Comparing two subnetworks at weight level: agreement and Jaccard (IoU) of the kept weights.

Each matrix's hard mask is expanded to its weights (its block and layout, see
:func:`subprobe.masking.counting.kept_weight_mask`), so runs with different granularities or layouts
of the same model compare. Both numbers are symmetric and 1.0 for identical subnetworks:

* agreement = weights kept by both or dropped by both / all masked weights;
* IoU (Jaccard) = weights kept by both / weights kept by either (1.0 when neither keeps any).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from subprobe.errors import SubprobeError
from subprobe.masking import counting


class MaskEntry(Protocol):
    """What comparing needs of one matrix's saved mask (a :class:`~subprobe.masking.subnetwork.MaskEntry`)."""

    name: str
    role: str
    layer: int
    shape: tuple[int, int]
    block: tuple[int, int]
    log_alpha: torch.Tensor


class Subnetwork(Protocol):
    """What comparing needs of a :class:`~subprobe.masking.subnetwork.Subnetwork` (no import: it imports us)."""

    entries: Sequence[MaskEntry]
    layout: str
    model: str


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


def compare(a: Subnetwork, b: Subnetwork) -> Comparison:
    """Agreement and IoU of the kept weights of ``a`` and ``b``; raises :class:`SubprobeError` (one
    line) when they mask different models, matrices or shapes."""
    if a.model and b.model and a.model != b.model:
        raise SubprobeError(f"subnetworks are not comparable: one masks {a.model}, the other {b.model}")
    theirs = {e.name: e for e in b.entries}
    only = [e.name for e in a.entries if e.name not in theirs] or sorted(set(theirs) - {e.name for e in a.entries})
    if only:
        raise SubprobeError(
            f"subnetworks are not comparable: matrix {only[0]} is masked in one only (different models or targets)"
        )
    overall = Overlap()
    by_layer: dict[str, Overlap] = {}
    by_role: dict[str, Overlap] = {}
    for ea in a.entries:
        eb = theirs[ea.name]
        if tuple(ea.shape) != tuple(eb.shape):
            raise SubprobeError(
                f"subnetworks are not comparable: matrix {ea.name} is {ea.shape[0]}x{ea.shape[1]} in one and "
                f"{eb.shape[0]}x{eb.shape[1]} in the other (different models)"
            )
        o = entry_overlap(ea, a.layout, eb, b.layout)
        overall = overall + o
        by_layer[str(ea.layer)] = by_layer.get(str(ea.layer), Overlap()) + o
        by_role[ea.role] = by_role.get(ea.role, Overlap()) + o
    return Comparison(overall, by_layer, by_role)


def mean_pairwise_iou(subnetworks: Iterable[Subnetwork]) -> float | None:
    """Mean IoU over all unordered pairs (None for fewer than two subnetworks)."""
    subs = list(subnetworks)
    values = [compare(x, y).overall.iou for i, x in enumerate(subs) for y in subs[i + 1:]]
    return sum(values) / len(values) if values else None
