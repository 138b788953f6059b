"""The subnetwork probe: hard-concrete masks over the frozen encoder's Linear weights."""

from __future__ import annotations

import sys

import torch
from torch import nn

from subprobe.masking.layouts import Granularity
from subprobe.masking.subnetwork import install_masks, l0_penalty
from subprobe.models.targets import discover
from subprobe.probes.base import BuiltProbe, EncoderFeatures, ProbeModel


def build_subnetwork_probe(config, encoder: nn.Module, head: nn.Module) -> BuiltProbe:
    """Install masks on the encoder; train mask logits (``mask_lr``) and the head (``head_lr``)."""
    if config.precision == "bf16":  # frozen weights stored in bf16; mask logits and head stay fp32
        encoder.to(torch.bfloat16)
    found = discover(
        encoder,
        getattr(encoder.config, "model_type", ""),
        getattr(config, "target_modules", None),
        getattr(config, "allow_partial", False),
    )
    for note in found.notes:
        print(f"subprobe: {note}", file=sys.stderr)
    granularity = Granularity.parse(config.granularity)
    masked = install_masks(encoder, found.targets, granularity, config.layout, encoder.config.hidden_size)
    model = ProbeModel(EncoderFeatures(encoder, config.word_pooling), head)
    groups = [
        {"params": [m.log_alpha for m in masked], "lr": config.mask_lr, "name": "masks"},
        {"params": list(head.parameters()), "lr": config.head_lr, "name": "head"},
    ]
    n_masks = sum(m.log_alpha.numel() for m in masked)
    return BuiltProbe(
        model=model,
        param_groups=groups,
        penalty=lambda: l0_penalty(masked, config.penalty),
        masked=masked,
        probe_params=n_masks,
        bits_per_param=(1.0, 1.0),
        coverage=found.coverage_dict(),
    )
