"""Masks shared across matrices: ``--granularity head`` and ``--granularity layer``.

* ``head``: one mask per attention head -- its Q, K and V rows and its O columns -- and one per FFN
  neuron -- its FFN-in row(s) (every FFN-in matrix: gate and up alike) and its FFN-out column;
* ``layer``: one mask per block's attention (Q, K, V, O whole) and one per its FFN (all FFN matrices).

Each matrix is still a :class:`~subprobe.masking.masked_linear.MaskedLinear` with a contiguous block
(a head: ``d_head`` rows of Q/K/V, ``d_head`` columns of O; a neuron: one row of FFN-in, one column of
FFN-out; a layer: the whole matrix), whose ``log_alpha`` is a *view* of its group's
:class:`SharedMask`. Counting, densities, saving (one entry per matrix, its ``group`` recorded) and
baking therefore work per matrix as for any granularity, while training, the penalty and the bits
count every shared mask once. The training sample is drawn once per encoder forward (a pre-hook), so
all matrices of a group see the same sample.

With grouped-query attention (fewer K/V heads than query heads: Llama, Mistral, Qwen2, Gemma), ``head``
gives every query head a mask (its Q rows, its O columns) and every key/value head one of its own (its K and
V rows): a K/V head serves several query heads, so it cannot share one query head's mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from subprobe.errors import ConfigError
from subprobe.masking import hard_concrete as hc
from subprobe.masking.fused import mask_module
from subprobe.masking.masked_linear import MaskedLinear
from subprobe.models import streams as run_streams
from subprobe.models.targets import MaskTarget

ATTENTION_ROLES = ("q", "k", "v", "o")
FFN_ROLES = ("ffn_in", "ffn_out")


class SharedMask(nn.Module):
    """The mask logits of one group of units (a layer's heads or FFN neurons, or a whole layer part)."""

    def __init__(self, size: int, init_log_alpha: float = hc.INIT_LOG_ALPHA, device=None) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((size,), float(init_log_alpha), device=device))
        self.sample: torch.Tensor | None = None

    def resample(self, training: bool, generator: torch.Generator | None = None) -> None:
        """Draw this forward pass's sample (training with gradients; its noise from ``generator``, default torch's
        default generator) or forget the last one."""
        self.sample = hc.sample_mask(self.log_alpha, generator) if training and torch.is_grad_enabled() else None

    def sampled(self) -> torch.Tensor:
        if self.sample is None:  # outside an encoder forward: draw one and keep it for the group
            self.sample = hc.sample_mask(self.log_alpha)
        return self.sample


class SharedMaskedLinear(MaskedLinear):
    """A :class:`MaskedLinear` whose mask is a view of a :class:`SharedMask` (``group``: its name)."""

    def __init__(self, linear, block: tuple[int, int], shared: SharedMask, group: str, **kw) -> None:
        super().__init__(linear, block, "contiguous", **kw)
        self.mask_shape = tuple(self._parameters.pop("log_alpha").shape)
        if self.mask_shape[0] * self.mask_shape[1] != shared.log_alpha.numel():
            raise ValueError(f"{self.name}: a {self.mask_shape} mask cannot view a shared mask of "
                             f"{shared.log_alpha.numel()} units")
        self.shared = shared
        self.group = group

    @property
    def log_alpha(self) -> torch.Tensor:  # type: ignore[override]
        return self.shared.log_alpha.view(self.mask_shape)

    def current_mask(self, generator: torch.Generator | None = None) -> torch.Tensor | None:
        mode = self.mask_mode or ("sample" if self.training else "soft")
        if mode == "sample":  # drawn once per encoder forward (packed: before it, from the run's stream)
            return self.shared.sampled().view(self.mask_shape)
        return super().current_mask(generator)


def shared_plan(
    targets: list[MaskTarget], unit: str, num_heads: int | None
) -> list[tuple[MaskTarget, tuple[int, int], str, int]]:
    """Per target: its block, its group's name and the group's size.

    Groups: ``layer.L.attention`` (with ``head``: one unit per query head, gating its Q rows and O columns, and
    its K and V rows when every query head has its own), ``layer.L.kv`` (``head`` with grouped-query attention:
    one unit per key/value head, gating its K and V rows), ``layer.L.ffn`` (one unit per FFN neuron; ``layer``:
    one unit for the whole part).
    """
    if unit == "head" and not num_heads:
        raise ConfigError("--granularity head: the model's config has no num_attention_heads; use neuron or layer")
    head_dim = _head_dims(targets, num_heads) if unit == "head" else {}
    plan = []
    sizes: dict[str, int] = {}
    for t in targets:
        out_f, in_f = t.shape
        part = "attention" if t.role in ATTENTION_ROLES else "ffn" if t.role in FFN_ROLES else None
        if part is None or t.layer < 0:
            raise ConfigError(
                f"--granularity {unit}: {t.name} (role {t.role}) is neither attention nor FFN of a block; "
                "mask it at another granularity or leave it out with --target-modules"
            )
        group = f"layer.{t.layer}.{part}"
        if unit == "layer":
            block, size = (out_f, in_f), 1
        elif t.role in ("q", "k", "v"):
            hd = head_dim[t.layer]
            if out_f % hd:
                raise ConfigError(f"--granularity head: {t.name} has {out_f} rows, not whole heads of {hd} rows "
                                  f"(the query's {num_heads} heads); use --granularity neuron or layer")
            size = out_f // hd
            if t.role != "q" and size != num_heads:  # grouped-query attention: K/V heads are units of their own
                group = f"layer.{t.layer}.kv"
            block = (hd, in_f)
        elif t.role == "o":
            if in_f % num_heads:
                raise ConfigError(f"--granularity head: {t.name} has {in_f} columns, not divisible into "
                                  f"{num_heads} heads")
            block, size = (out_f, in_f // num_heads), num_heads
        elif t.role == "ffn_in":
            block, size = (1, in_f), out_f
        else:
            block, size = (out_f, 1), in_f
        if sizes.setdefault(group, size) != size:
            raise ConfigError(
                f"--granularity {unit}: {t.name} has {size} units but the rest of {group} has {sizes[group]} "
                "(matrices of different widths); use --granularity neuron or layer"
            )
        plan.append((t, block, group, size))
    return plan


def _head_dims(targets: list[MaskTarget], num_heads: int) -> dict[int, int]:
    """Rows per attention head in every layer, from its (first) query matrix."""
    dims: dict[int, int] = {}
    for t in targets:
        if t.role == "q" and t.layer not in dims:
            if t.shape[0] % num_heads:
                raise ConfigError(f"--granularity head: {t.name} has {t.shape[0]} rows, not divisible into "
                                  f"{num_heads} heads")
            dims[t.layer] = t.shape[0] // num_heads
    for t in targets:
        if t.role in ("k", "v") and t.layer not in dims:
            raise ConfigError(f"--granularity head: layer {t.layer} has {t.role.upper()} but no query matrix to "
                              "tell the head size; use --granularity neuron or layer")
    return dims


def install_shared_masks(
    model: nn.Module, targets: list[MaskTarget], unit: str, *, init_log_alpha: float = hc.INIT_LOG_ALPHA,
) -> list[MaskedLinear]:
    """Replace each target by a :class:`SharedMaskedLinear` of its group; returns them in order.

    The groups' :class:`SharedMask` modules are children of their matrices (one object under several
    names); a forward pre-hook on ``model`` draws every group's training sample once per pass (not inside
    :func:`subprobe.models.streams.use`: packed training draws each run's samples from its own stream before the
    pack's forward, :func:`shared_masks`).
    """
    num_heads = getattr(getattr(model, "config", None), "num_attention_heads", None)
    plan = shared_plan(targets, unit, num_heads)
    device = next((p.device for p in model.parameters()), None)
    masks: dict[str, SharedMask] = {}
    for _, _, group, size in plan:
        if group not in masks:
            masks[group] = SharedMask(size, init_log_alpha, device=device)

    def make(piece, block, layout, **kw):
        group = by_name[kw["name"]]
        return SharedMaskedLinear(piece, block, masks[group], group, **kw)

    by_name = {t.name: group for t, _, group, _ in plan}
    by_module: dict[str, list[tuple]] = {}
    for t, block, _, _ in plan:
        by_module.setdefault(t.module, []).append((t.name, t.role, t.layer, t.rows, block))
    made: dict[str, MaskedLinear] = {}
    for module_name, parts in by_module.items():
        parent_name, _, child = module_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement, matrices = mask_module(
            getattr(parent, child), parts, "contiguous", module_name=module_name, make=make
        )
        setattr(parent, child, replacement)
        made.update({m.name: m for m in matrices})
    groups = list(masks.values())

    def draw(module: nn.Module, args) -> None:  # returns None: the inputs pass unchanged
        if run_streams.current() is not None:  # packed: drawn already, each run from its stream
            return
        for g in groups:
            g.resample(module.training)

    model.register_forward_pre_hook(draw)
    return [made[t.name] for t in targets]


def mask_groups(masked: Iterable[MaskedLinear]) -> list[torch.Tensor]:
    """The trainable mask logits, each shared mask once (leaf parameters, in first-seen order)."""
    seen: dict[int, torch.Tensor] = {}
    for m in masked:
        p = m.shared.log_alpha if isinstance(m, SharedMaskedLinear) else m.log_alpha
        seen.setdefault(id(p), p)
    return list(seen.values())


def shared_masks(masked: Iterable[MaskedLinear]) -> list[SharedMask]:
    """The shared masks of ``masked`` in the order the encoder's pre-hook draws them (empty for masks of one
    matrix each)."""
    seen: dict[int, SharedMask] = {}
    for m in masked:
        if isinstance(m, SharedMaskedLinear):
            seen.setdefault(id(m.shared), m.shared)
    return list(seen.values())


def num_masks(masked: Iterable[MaskedLinear]) -> int:
    """Number of mask units (bits), each shared mask counted once."""
    return sum(p.numel() for p in mask_groups(masked))
