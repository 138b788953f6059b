"""Masks for projections that are not a plain ``nn.Linear`` of one role.

* GPT-2's ``Conv1D`` stores its weight ``in x out`` and computes ``x @ W + b``: it is masked as the
  linear layer ``F.linear(x, W^T, b)`` (the weight is transposed once, at installation).
* A fused matrix (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``, Phi-3 ``qkv_proj``/``gate_up_proj``,
  ModernBERT ``Wqkv``/``Wi``) gets one :class:`MaskedLinear` per role slice, each holding that role's
  rows, so densities, localisation and head counts are per role. :class:`MaskedSlices` runs the
  slices (one ``F.linear`` each, on the usual fast paths) and puts the outputs back in the module's
  row order.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from subprobe.masking import hard_concrete as hc
from subprobe.masking.masked_linear import DEFAULT_MAX_ROW_GROUPS, MaskedLinear
from subprobe.models.families import is_conv1d


class MaskedSlices(nn.Module):
    """A fused projection as role slices: ``y = cat(part(x) for part)[..., order]``."""

    def __init__(self, parts: list[MaskedLinear], order: torch.Tensor | None) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.register_buffer("order", order, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([part(x) for part in self.parts], dim=-1)
        return y if self.order is None else y.index_select(-1, self.order)


def out_in_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frozen weight as ``out x in`` and the bias of a Linear or Conv1D."""
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    return (weight.t().contiguous(), bias) if is_conv1d(module) else (weight, bias)


def row_index(rows: tuple[tuple[int, int], ...], device=None) -> torch.Tensor:
    return torch.cat([torch.arange(a, b, device=device) for a, b in rows])


def mask_module(
    module: nn.Module,
    parts: list[tuple[str, str, int, tuple[tuple[int, int], ...], tuple[int, int]]],
    layout: str,
    *,
    module_name: str,
    init_log_alpha: float = hc.INIT_LOG_ALPHA,
    max_row_groups: int = DEFAULT_MAX_ROW_GROUPS,
    make=MaskedLinear,
) -> tuple[nn.Module, list[MaskedLinear]]:
    """The masked replacement of ``module`` and its MaskedLinear matrices (in ``parts`` order).

    ``parts``: (name, role, layer, rows, block) per matrix; ``rows`` ``()`` means the whole module.
    A plain ``nn.Linear`` with one whole-matrix part becomes a :class:`MaskedLinear` as before. ``make``
    builds each matrix (``MaskedLinear`` or a subclass with its signature; see :mod:`.shared`).
    """
    kw = dict(init_log_alpha=init_log_alpha, max_row_groups=max_row_groups, module=module_name)
    if len(parts) == 1 and not parts[0][3]:
        name, role, layer, _, block = parts[0]
        source = module if type(module) is nn.Linear else SimpleNamespace(weight=out_in_weight(module)[0],
                                                                           bias=out_in_weight(module)[1])
        masked = make(source, block, layout, name=name, role=role, layer=layer, **kw)
        return masked, [masked]
    weight, bias = out_in_weight(module)
    matrices, indices = [], []
    for name, role, layer, rows, block in parts:
        index = row_index(rows) if rows else torch.arange(weight.shape[0])
        on = index.to(weight.device)
        piece = SimpleNamespace(weight=weight[on].contiguous(), bias=None if bias is None else bias[on].clone())
        matrices.append(make(piece, block, layout, name=name, role=role, layer=layer, rows=rows, **kw))
        indices.append(index)
    perm = torch.cat(indices)
    if perm.numel() != weight.shape[0] or not torch.equal(perm.sort().values, torch.arange(weight.shape[0])):
        raise ValueError(f"{module_name}: the masked slices must cover every row exactly once")
    order = None if torch.equal(perm, torch.arange(perm.numel())) else torch.argsort(perm).to(weight.device)
    return MaskedSlices(matrices, order), matrices
