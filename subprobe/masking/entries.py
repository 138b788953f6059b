"""One matrix's saved mask: :class:`MaskEntry`, the record a :class:`~subprobe.masking.subnetwork.Subnetwork`
holds per masked matrix (and what :mod:`subprobe.masking.compare` and :mod:`subprobe.masking.counting` read)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from subprobe.masking import counting


@dataclass(frozen=True)
class MaskEntry:
    """The learnt mask logits of one matrix."""

    name: str
    role: str
    layer: int
    shape: tuple[int, int]
    block: tuple[int, int]
    log_alpha: torch.Tensor
    #: the model's module (default: ``name``) and this matrix's rows in it (``()``: all; see masking.fused)
    module: str = ""
    rows: tuple[tuple[int, int], ...] = ()
    #: the shared mask this matrix's logits view (``--granularity head | layer``: ``layer.L.attention``,
    #: ``layer.L.kv`` (grouped-query K/V heads) or ``layer.L.ffn``); ``""``: its own mask
    group: str = ""

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", self.name)

    @property
    def weights_per_mask(self) -> int:
        return counting.weights_per_unit(self.block)
