"""The subnetwork probe: hard-concrete masks over the frozen encoder's Linear weights."""

from __future__ import annotations

import sys

import torch
from torch import nn

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.masking.constraint import DensityLagrangian, controlled_density
from subprobe.masking.layouts import Granularity
from subprobe.masking.shared import mask_groups, num_masks
from subprobe.masking.subnetwork import (
    Subnetwork,
    describe_fallbacks,
    granularity_fallbacks,
    install_masks,
    l0_penalty,
)
from subprobe.models.targets import discover
from subprobe.probes.base import BuiltProbe, EncoderFeatures, ProbeModel
from subprobe.probes.family import ProbeFamily


def build_subnetwork_probe(
    config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed: Subnetwork | None = None
) -> BuiltProbe:
    """Install masks on the encoder; train mask logits (``mask_lr``) and the head (``head_lr``).

    ``config.target_density``: the penalty is the (hard) density and a :class:`DensityLagrangian` holds it at
    the target (multipliers in a maximising group, ``multiplier_lr``). ``fixed``: these masks are installed
    frozen (hard, not trained, not penalised) and only the head trains.
    """
    if config.precision == "bf16":  # frozen weights stored in bf16; mask logits and head stay fp32
        encoder.to(torch.bfloat16)
    found = discover(encoder, getattr(encoder.config, "model_type", ""), config.target_modules, config.allow_partial)
    for note in found.notes:
        print(f"subprobe: {note}", file=sys.stderr)
    if fixed is not None:
        return _fixed_probe(config, encoder, head, fixed, found)
    granularity = Granularity.parse(config.granularity)
    masked = install_masks(encoder, found.targets, granularity, config.layout, encoder.config.hidden_size)
    fallbacks = granularity_fallbacks(masked)
    for line in describe_fallbacks(config.granularity, fallbacks):
        print(f"subprobe: {line}", file=sys.stderr)
    model = ProbeModel(EncoderFeatures(encoder, config.word_pooling), head)
    groups = [
        {"params": mask_groups(masked), "lr": config.mask_lr, "name": "masks"},  # a shared mask once
        {"params": list(head.parameters()), "lr": config.head_lr, "name": "head"},
    ]
    penalty = lambda: l0_penalty(masked, config.penalty)  # noqa: E731
    constraint, target = None, config.target_density
    if target is not None:
        constraint = DensityLagrangian(target).to(masked[0].log_alpha.device if masked else "cpu")
        model.add_module("constraint", constraint)  # checkpointed with the other trained parameters
        groups.append({"params": constraint.multipliers, "lr": config.multiplier_lr, "name": "multipliers",
                       "maximize": True})
        penalty = lambda: controlled_density(masked)  # noqa: E731
    n_masks = num_masks(masked)
    return BuiltProbe(
        model=model,
        param_groups=groups,
        penalty=penalty,
        masked=masked,
        probe_params=n_masks,
        bits_per_param=(1.0, 1.0),
        coverage=found.coverage_dict(),
        granularity_fallbacks=fallbacks,
        constraint=constraint,
        target_density=target,
    )


def _fixed_probe(config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed: Subnetwork, found) -> BuiltProbe:
    """Frozen ``fixed`` masks (hard in training and evaluation); only the head trains."""
    ours = {t.name: tuple(t.shape) for t in found.targets}
    theirs = {e.name: tuple(e.shape) for e in fixed.entries}
    if ours != theirs:
        differ = sorted(set(ours.items()) ^ set(theirs.items()))[:2]
        raise ConfigError(
            f"the source run's masks do not fit --model {config.model} (matrices differ: "
            f"{', '.join(str(d[0]) for d in differ)}); use the source run's model and --target-modules"
        )
    masked = fixed.apply(encoder, mode="hard")
    model = ProbeModel(EncoderFeatures(encoder, config.word_pooling), head)
    groups = [{"params": list(head.parameters()), "lr": config.head_lr, "name": "head"}]
    return BuiltProbe(
        model=model,
        param_groups=groups,
        penalty=None,
        masked=masked,
        probe_params=fixed.num_mask_params,
        bits_per_param=(1.0, 1.0),
        coverage=found.coverage_dict(),
    )


class SubnetworkFamily(ProbeFamily):
    """Subnetwork probing (Cao et al. 2021): a hard-concrete mask over the frozen weights, one bit per mask unit."""

    name = "subnetwork"
    title = "Subnetworks"
    settings = ("granularity", "layout", "penalty", "lambda_max", "target_density", "random_mask_like",
                "complement_of", "mask_seed", "target_modules", "allow_partial", "mask_lr", "multiplier_lr")
    masks = True
    exports = True

    def build(self, config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
        return build_subnetwork_probe(config, encoder, head, fixed_masks)

    def check_settings(self, config: ProbeConfig) -> None:
        Granularity.parse(config.granularity)  # the spelling; whether blocks fit the model is checked on it

    def pack_kind(self, config: ProbeConfig) -> str | None:
        """Learnt masks pack: one encoder pass, each run's masks on its rows (a frozen control mask trains alone)."""
        return "encoder" if config.mask_source == "learnt" else None

    def alone_reason(self, config: ProbeConfig) -> str:
        flag = "--random-mask-like" if config.random_mask_like else "--complement-of"
        return f"{flag} (a frozen control mask)"

    def unit_label(self, config: ProbeConfig) -> str:
        return str(config.granularity)

    def run_label(self, config: ProbeConfig) -> str:
        return f"{config.granularity}, λmax={float(config.lambda_max):g}"

    def run_dir_unit(self, config: ProbeConfig) -> str:
        unit = config.granularity.replace(",", "x")
        if config.target_density is not None:
            unit += f"-p{config.target_density:g}"
        if config.mask_source != "learnt":
            unit += f"-{config.mask_source}"
        return unit

    def store_units(self, config: ProbeConfig) -> list[str]:
        return [config.granularity.replace(",", "x"), *([f"lam{config.lambda_max:g}"] if config.lambda_max != 1.0
                                                       else [])]

    def table_row(self, config: ProbeConfig) -> str | None:
        """Neuron masks, by lambda_max (the paper's Tables 1 and 2; Figure 1's granularity sweep is not)."""
        return f"{self.name}@{float(config.lambda_max):g}" if str(config.granularity) == "neuron" else None

    def paper_row(self) -> str:
        return f"{self.name}@1"


FAMILY = SubnetworkFamily()
