"""MLP-1 of rank r on frozen features (Cao et al. 2021's baseline; ``--probe mlp --rank R``)."""

from __future__ import annotations

from torch import nn

from subprobe.config import ProbeConfig
from subprobe.probes.base import BuiltProbe
from subprobe.probes.family import ProbeFamily
from subprobe.probes.frozen import (
    MLP1,
    build_frozen_probe,
    cached_alone_reason,
    cached_pack_kind,
    check_rank,
    parse_rank,
)


class MlpFamily(ProbeFamily):
    """MLP-1 between the frozen features and the head; complexity: its parameters at 1 or 32 bits each."""

    name = "mlp"
    title = "MLP-1"
    settings = ("rank", "cache_features")
    adapter = True

    def pack_kind(self, config: ProbeConfig) -> str | None:
        return cached_pack_kind(config)

    def alone_reason(self, config: ProbeConfig) -> str:
        return cached_alone_reason(config)

    def build(self, config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
        width = encoder.config.hidden_size
        return build_frozen_probe(config, encoder, head, MLP1(width, parse_rank(config.rank, width)))

    def check_settings(self, config: ProbeConfig) -> None:
        check_rank(config.rank)

    def unit_label(self, config: ProbeConfig) -> str:
        return f"r={config.rank}"

    def run_dir_unit(self, config: ProbeConfig) -> str:
        return f"r{config.rank}"

    def store_units(self, config: ProbeConfig) -> list[str]:
        return [f"r{config.rank}"]

    def table_row(self, config: ProbeConfig) -> str | None:
        """Full rank only (the paper's Tables 1 and 2)."""
        return self.name if str(config.rank) == "d" else None


FAMILY = MlpFamily()
