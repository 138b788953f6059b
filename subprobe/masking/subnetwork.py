"""Install masks into a model, the L0 penalty, and the frozen :class:`Subnetwork` result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from subprobe.errors import ConfigError, SubprobeError
from subprobe.masking import hard_concrete as hc
from subprobe.masking.layouts import LAYOUTS, Granularity
from subprobe.masking.masked_linear import DEFAULT_MAX_ROW_GROUPS, MaskedLinear
from subprobe.models.targets import MaskTarget

PENALTIES = ("matrix-mean", "param-mean")


def install_masks(
    model: nn.Module,
    targets: list[MaskTarget],
    granularity: Granularity,
    layout: str,
    hidden_size: int,
    *,
    init_log_alpha: float = hc.INIT_LOG_ALPHA,
    max_row_groups: int = DEFAULT_MAX_ROW_GROUPS,
) -> list[MaskedLinear]:
    """Replace each target Linear of ``model`` by a :class:`MaskedLinear`; returns them in order."""
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r} is not known; use one of {', '.join(LAYOUTS)}")
    masked = []
    for target in targets:
        parent_name, _, child = target.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        module = MaskedLinear(
            linear,
            granularity.block(target.shape, hidden_size),
            layout,
            name=target.name,
            role=target.role,
            layer=target.layer,
            init_log_alpha=init_log_alpha,
            max_row_groups=max_row_groups,
        )
        setattr(parent, child, module)
        masked.append(module)
    return masked


def l0_penalty(masked: list[MaskedLinear], normalisation: str = "matrix-mean") -> torch.Tensor:
    """Expected L0: mean per matrix then over matrices (paper), or mean over all mask parameters."""
    if normalisation == "matrix-mean":
        return torch.stack([hc.expected_l0(m.log_alpha).mean() for m in masked]).mean()
    if normalisation == "param-mean":
        total = sum(m.log_alpha.numel() for m in masked)
        return torch.stack([hc.expected_l0(m.log_alpha).sum() for m in masked]).sum() / total
    raise ConfigError(f"--penalty {normalisation!r} is not known; use one of {', '.join(PENALTIES)}")


def set_mask_mode(model: nn.Module, mode: str | None) -> None:
    """Force every MaskedLinear of ``model`` to ``mode`` (None = sample in train, soft in eval)."""
    for module in model.modules():
        if isinstance(module, MaskedLinear):
            module.mask_mode = mode


@dataclass(frozen=True)
class MaskEntry:
    """The learnt mask logits of one matrix."""

    name: str
    role: str
    layer: int
    shape: tuple[int, int]
    block: tuple[int, int]
    log_alpha: torch.Tensor

    @property
    def weights_per_mask(self) -> int:
        return self.block[0] * self.block[1]


@dataclass(frozen=True)
class Subnetwork:
    """A found subnetwork: the mask logits of every masked matrix, frozen.

    ``hard`` masks keep a unit iff its deterministic value is >= 0.5; ``density`` is the fraction
    of masked weights that the hard mask keeps.
    """

    entries: tuple[MaskEntry, ...]
    layout: str
    granularity: str
    model: str = ""

    @staticmethod
    def from_modules(masked: list[MaskedLinear], granularity: str, model: str = "") -> Subnetwork:
        entries = tuple(
            MaskEntry(m.name, m.role, m.layer, tuple(m.weight.shape), m.block, m.log_alpha.detach().float().clone())
            for m in masked
        )
        layout = masked[0].layout if masked else "strided"
        return Subnetwork(entries, layout, granularity, model)

    @property
    def num_mask_params(self) -> int:
        return sum(e.log_alpha.numel() for e in self.entries)

    @property
    def num_masked_weights(self) -> int:
        return sum(e.shape[0] * e.shape[1] for e in self.entries)

    def hard_masks(self) -> dict[str, torch.Tensor]:
        return {e.name: hc.hard_mask(e.log_alpha) for e in self.entries}

    def soft_masks(self) -> dict[str, torch.Tensor]:
        return {e.name: hc.soft_mask(e.log_alpha) for e in self.entries}

    def kept_weights(self) -> int:
        """Number of masked weights kept by the hard mask."""
        return int(sum(int(hc.hard_mask(e.log_alpha).sum()) * e.weights_per_mask for e in self.entries))

    def density(self) -> float:
        """Fraction of masked weights kept by the hard mask."""
        return self.kept_weights() / max(1, self.num_masked_weights)

    def density_by(self, key: str) -> dict[str, float]:
        """Hard-mask density grouped by ``layer`` or ``role``."""
        kept: dict[str, int] = {}
        total: dict[str, int] = {}
        for e in self.entries:
            k = str(getattr(e, key))
            kept[k] = kept.get(k, 0) + int(hc.hard_mask(e.log_alpha).sum()) * e.weights_per_mask
            total[k] = total.get(k, 0) + e.shape[0] * e.shape[1]
        return {k: kept[k] / total[k] for k in total}

    def agreement(self, other: Subnetwork) -> float:
        """Fraction of mask units on which two subnetworks' hard masks agree."""
        same = total = 0
        theirs = other.hard_masks()
        for name, mask in self.hard_masks().items():
            if name not in theirs or theirs[name].shape != mask.shape:
                raise SubprobeError(f"subnetworks are not comparable: matrix {name} differs")
            same += int((mask == theirs[name]).sum())
            total += mask.numel()
        return same / max(1, total)

    def apply(self, model: nn.Module, mode: str = "hard") -> list[MaskedLinear]:
        """Install these masks into a fresh copy-compatible ``model``; returns the masked modules."""
        masked = []
        for e in self.entries:
            parent_name, _, child = e.name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            module = MaskedLinear(getattr(parent, child), e.block, self.layout, name=e.name, role=e.role, layer=e.layer)
            with torch.no_grad():
                module.log_alpha.copy_(e.log_alpha)
            module.log_alpha.requires_grad_(False)
            module.mask_mode = mode
            setattr(parent, child, module)
            masked.append(module)
        return masked

    def save(self, path: str | Path) -> None:
        """Write the mask logits and their layout to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        meta = {
            "layout": self.layout,
            "granularity": self.granularity,
            "model": self.model,
            "entries": json.dumps([[e.name, e.role, e.layer, list(e.shape), list(e.block)] for e in self.entries]),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file({e.name: e.log_alpha.contiguous() for e in self.entries}, str(tmp), metadata=meta)
        tmp.replace(path)

    @staticmethod
    def load(path: str | Path) -> Subnetwork:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            entries = tuple(
                MaskEntry(name, role, int(layer), tuple(shape), tuple(block), f.get_tensor(name))
                for name, role, layer, shape, block in json.loads(meta["entries"])
            )
        return Subnetwork(entries, meta["layout"], meta["granularity"], meta.get("model", ""))
