"""The linear probe: the task head alone on frozen features (``--probe linear``)."""

from __future__ import annotations

from torch import nn

from subprobe.config import ProbeConfig
from subprobe.probes.base import BuiltProbe
from subprobe.probes.family import ProbeFamily
from subprobe.probes.frozen import build_frozen_probe, cached_alone_reason, cached_pack_kind


class LinearFamily(ProbeFamily):
    """The head on frozen features: the head is the probe, so its parameters are counted."""

    name = "linear"
    title = "Linear"
    settings = ("cache_features",)
    in_paper_tables = False
    bits_note = "the linear probe is the task head: its parameters are counted"

    def pack_kind(self, config: ProbeConfig) -> str | None:
        return cached_pack_kind(config)

    def alone_reason(self, config: ProbeConfig) -> str:
        return cached_alone_reason(config)

    def build(self, config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
        return build_frozen_probe(config, encoder, head)


FAMILY = LinearFamily()
