"""The one masking primitive: a frozen ``nn.Linear`` whose weight is gated by a hard-concrete mask.

The mask is applied to the activations whenever the layout allows it, so neither ``W * M`` nor a
weight-sized gradient is ever formed:

* one row group (``R == 1``): the mask depends on the input column only, ``F.linear(x * m, W)``;
* a few row groups (``R <= max_row_groups``): rows are split into ``R`` groups, each with its own
  column mask, computed as one batched matmul;
* otherwise (per-weight and small blocks) the masked weight is materialised.

All three paths compute the same function (tested against the materialised reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from subprobe.masking import hard_concrete as hc
from subprobe.masking.layouts import expand_columns, expand_mask, mask_shape

MASK_MODES = ("sample", "soft", "hard", "none")
#: Largest number of row groups for which the grouped activation path is used.
DEFAULT_MAX_ROW_GROUPS = 16


class MaskedLinear(nn.Module):
    """A frozen linear layer gated by a trainable hard-concrete mask over blocks of its weight.

    ``mask_mode``: ``None`` samples while training and uses the soft deterministic mask in eval;
    ``"sample" | "soft" | "hard" | "none"`` force one behaviour (``none`` = unmasked).
    """

    def __init__(
        self,
        linear: nn.Linear,
        block: tuple[int, int],
        layout: str,
        *,
        name: str = "",
        role: str = "",
        layer: int = -1,
        init_log_alpha: float = hc.INIT_LOG_ALPHA,
        max_row_groups: int = DEFAULT_MAX_ROW_GROUPS,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.block = block
        self.layout = layout
        self.name, self.role, self.layer = name, role, layer
        rows_groups, col_groups = mask_shape(tuple(self.weight.shape), block)
        self.log_alpha = nn.Parameter(torch.full((rows_groups, col_groups), float(init_log_alpha)))
        self.mask_mode: str | None = None
        self.path = (
            "columns" if rows_groups == 1 else ("row_groups" if rows_groups <= max_row_groups else "materialise")
        )

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def current_mask(self) -> torch.Tensor | None:
        """The mask (R, C) for this forward pass, according to the mode."""
        mode = self.mask_mode or ("sample" if self.training else "soft")
        if mode == "sample":
            return hc.sample_mask(self.log_alpha)
        if mode == "soft":
            return hc.soft_mask(self.log_alpha)
        if mode == "hard":
            return hc.hard_mask(self.log_alpha)
        if mode == "none":
            return None
        raise ValueError(f"unknown mask mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.current_mask()
        if mask is None:
            return F.linear(x, self.weight, self.bias)
        return masked_linear(x, self.weight, self.bias, mask, self.block, self.layout, self.path)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}->{self.out_features}, block={self.block}, layout={self.layout}, "
            f"mask={tuple(self.log_alpha.shape)}, path={self.path}"
        )


def masked_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    block: tuple[int, int],
    layout: str,
    path: str = "materialise",
) -> torch.Tensor:
    """``F.linear(x, weight * expand_mask(mask))`` computed along ``path``."""
    rows, cols = block
    if path == "columns":
        column_mask = expand_columns(mask[0], cols, layout).to(x.dtype)
        return F.linear(x * column_mask, weight, bias)
    if path == "row_groups":
        groups = mask.shape[0]
        out_f, in_f = weight.shape
        column_masks = expand_columns(mask, cols, layout).to(x.dtype)  # (R, in)
        lead = x.shape[:-1]
        flat = x.reshape(-1, in_f)
        xm = flat.unsqueeze(0) * column_masks.unsqueeze(1)  # (R, N, in)
        if layout == "strided":  # row r = q * R + g uses group g
            w = weight.view(rows, groups, in_f).transpose(0, 1)  # (R, rows, in)
        else:  # row r = g * rows + q uses group g
            w = weight.view(groups, rows, in_f)
        y = torch.bmm(xm, w.transpose(1, 2).to(xm.dtype))  # (R, N, rows)
        y = y.permute(1, 2, 0) if layout == "strided" else y.permute(1, 0, 2)
        y = y.reshape(*lead, out_f)
        return y if bias is None else y + bias.to(y.dtype)
    return F.linear(x, weight * expand_mask(mask, block, layout).to(weight.dtype), bias)
