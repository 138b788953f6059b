"""Fine-tuning: the baseline that trains every encoder weight with the head."""

from __future__ import annotations

from torch import nn

from subprobe.config import ProbeConfig
from subprobe.probes.base import BuiltProbe, EncoderFeatures, ProbeModel
from subprobe.probes.family import ProbeFamily


def build_finetune_probe(config: ProbeConfig, encoder: nn.Module, head: nn.Module) -> BuiltProbe:
    """Fine-tuning: every encoder weight trains (``--finetune-lr``) with the head; fp32 weights."""
    for p in encoder.parameters():
        p.requires_grad_(True)
    # weights stay fp32 (Adam updates need it); bf16 runs the matmuls under autocast
    model = ProbeModel(EncoderFeatures(encoder, config.word_pooling, autocast_bf16=config.precision == "bf16"), head)
    groups = [
        {"params": list(encoder.parameters()), "lr": config.finetune_lr, "name": "encoder"},
        {"params": list(head.parameters()), "lr": config.head_lr, "name": "head"},
    ]
    n_params = sum(p.numel() for p in encoder.parameters())
    return BuiltProbe(model=model, param_groups=groups, probe_params=n_params, bits_per_param=(1.0, 32.0))


class FinetuneFamily(ProbeFamily):
    """Fine-tuning every encoder weight with the head (the paper's upper reference)."""

    name = "finetune"
    title = "Fine-tuning"
    settings = ("finetune_lr",)
    trains_encoder = True
    loads = False
    not_loadable = "a finetune run does not save its fine-tuned encoder weights"

    def build(self, config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
        return build_finetune_probe(config, encoder, head)


FAMILY = FinetuneFamily()
