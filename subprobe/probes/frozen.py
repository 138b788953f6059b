"""Probes on a frozen encoder's features (computed once with ``--cache-features``): what the MLP-1 and linear
families (:mod:`subprobe.probes.mlp`, :mod:`subprobe.probes.linear`) share."""

from __future__ import annotations

import torch
from torch import nn

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.probes.base import BuiltProbe, EncoderFeatures, ProbeModel
from subprobe.probes.cached import CachedFeatures

#: The paper's MLP-1 ranks; ``d`` stands for the model width.
PAPER_RANKS = ("1", "2", "5", "10", "25", "50", "125", "250", "d")


class MLP1(nn.Module):
    """MLP-1(x) = ReLU(LayerNorm(U V^T x)) with U, V in R^{d x r} (Cao et al. 2021)."""

    def __init__(self, d: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(d, rank)
        self.up = nn.Linear(rank, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.up(self.down(x))))


def check_rank(rank: str | int) -> None:
    """A rank is a positive whole number or ``d`` (the model width); anything else is one ConfigError line."""
    text = str(rank).strip()
    if text != "d" and not (text.isdigit() and int(text) >= 1):
        raise ConfigError(f"--rank {text!r} is not a rank; give a positive whole number (1, 2, 5, ...) or d for "
                          "the model width (full rank)")


def parse_rank(rank: str | int, d: int) -> int:
    """A rank given as a number or ``d`` (the model width)."""
    check_rank(rank)
    return d if str(rank).strip() == "d" else int(str(rank).strip())


def cached_pack_kind(config: ProbeConfig) -> str | None:
    """Probes on cached features pack (one feature lookup for all of them); recomputed features run alone."""
    return "cached" if config.cache_features else None


def cached_alone_reason(config: ProbeConfig) -> str:
    """Why a probe on frozen features does not pack: its features are recomputed at every step."""
    return f"--probe {config.probe} without --cache-features (features recomputed at every step)"


def build_frozen_probe(
    config: ProbeConfig, encoder: nn.Module, head: nn.Module, adapter: nn.Module | None = None
) -> BuiltProbe:
    """The head (and ``adapter`` between the features and the head, if any) on frozen features; complexity counts
    the adapter's parameters, or the head's when there is none (the head is then the probe)."""
    if config.precision == "bf16":
        encoder.to(torch.bfloat16)
    features: nn.Module = EncoderFeatures(encoder, config.word_pooling)
    if config.cache_features:
        features = CachedFeatures(features)
    model = ProbeModel(features, head, adapter, train_bf16=config.precision == "bf16")
    trainable = list(head.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    groups = [{"params": trainable, "lr": config.head_lr, "name": "probe"}]
    counted = adapter if adapter is not None else head
    n_params = sum(p.numel() for p in counted.parameters())
    return BuiltProbe(model=model, param_groups=groups, probe_params=n_params, bits_per_param=(1.0, 32.0))
