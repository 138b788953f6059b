"""Probe names -> builders."""

from __future__ import annotations

from torch import nn

from subprobe.errors import ConfigError
from subprobe.probes.base import BuiltProbe

PROBE_NAMES = ("subnetwork", "mlp", "linear", "finetune")


def build_probe(config, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
    """Build the probe named by ``config.probe``; ``fixed_masks`` (a Subnetwork): a subnetwork probe with these
    masks frozen (--random-mask-like, --complement-of) instead of learnt ones."""
    if config.probe == "subnetwork":
        from subprobe.probes.subnetwork_probe import build_subnetwork_probe

        return build_subnetwork_probe(config, encoder, head, fixed_masks)
    if config.probe in ("mlp", "linear"):
        from subprobe.probes.frozen import build_frozen_probe

        return build_frozen_probe(config, encoder, head)
    if config.probe == "finetune":
        from subprobe.probes.finetune import build_finetune_probe

        return build_finetune_probe(config, encoder, head)
    raise ConfigError(f"--probe {config.probe!r} is not known; use one of {', '.join(PROBE_NAMES)}")
