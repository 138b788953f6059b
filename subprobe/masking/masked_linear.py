"""The one masking primitive: a frozen ``nn.Linear`` whose weight is gated by a hard-concrete mask.

No weight-sized gradient is formed where the layout allows it:

* one row group (``R == 1``, e.g. neuron masks): the mask depends on the input column only;
* a few row groups (``R <= max_row_groups``, e.g. the strided FFN-in of neuron masks): each row
  group has its own column mask.

Both go through :class:`_ColumnMasked`. Its forward runs one ``F.linear`` on either the scaled
weight ``W * M`` or, when the batch has fewer tokens than the matrix has rows (``R == 1`` only),
the scaled input ``x * m`` -- whichever elementwise product is smaller. Its backward needs one
matmul ``grad_y @ W`` (one per row group, on strided views of ``W``: no copy), from which the
input gradient and the mask gradient follow by elementwise work -- never the weight-sized outer
product ``grad_y^T x``. Per-weight and small-block masks (``path == "materialise"``)
differentiate through ``F.linear(x, W * M)`` directly. Training samples masks with
:func:`subprobe.masking.hard_concrete.sample_mask` (one autograd node).

All paths compute the same function (tested against the materialised reference).

Packed training (:mod:`subprobe.training.packed`): a matrix of the pack's host encoder knows the same matrix of
every run of the pack (``pack_siblings``); inside :func:`subprobe.models.streams.use` it applies each run's mask,
drawn from that run's generator, to that run's rows (:func:`subprobe.masking.packed.packed_linear`; a pack of one,
or runs with different numbers of rows, through this module's own paths, run by run).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from subprobe.masking import hard_concrete as hc
from subprobe.masking.layouts import expand_columns, expand_mask, mask_shape
from subprobe.masking.packed import packed_linear
from subprobe.models import streams as run_streams

MASK_MODES = ("sample", "soft", "hard", "none")
#: Largest number of row groups for which the grouped activation path is used.
DEFAULT_MAX_ROW_GROUPS = 16


class MaskedLinear(nn.Module):
    """A frozen linear layer gated by a trainable hard-concrete mask over blocks of its weight.

    ``linear`` is anything with ``weight`` (out x in) and ``bias``: an ``nn.Linear``, or the
    transposed weight of a ``Conv1D`` / one role's rows of a fused matrix (see :mod:`.fused`).

    ``mask_mode``: ``None`` samples while training and uses the soft deterministic mask in eval (and for
    frozen logits, which have no gradient to estimate: e.g. the fixed masks of :mod:`.fixed`);
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
        module: str = "",
        rows: tuple[tuple[int, int], ...] = (),
    ) -> None:
        super().__init__()
        # the model's module this matrix belongs to, and its rows there (a role slice of a fused matrix)
        self.module_name, self.rows = module or name, tuple(rows)
        self.weight = nn.Parameter(linear.weight.detach(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.block = block
        self.layout = layout
        self.name, self.role, self.layer = name, role, layer
        rows_groups, col_groups = mask_shape(tuple(self.weight.shape), block)
        self.log_alpha = nn.Parameter(
            torch.full((rows_groups, col_groups), float(init_log_alpha), device=self.weight.device)
        )
        self.mask_mode: str | None = None
        #: packed training: the same matrix in each run of the pack (set on the host encoder's matrices only)
        self.pack_siblings: list[MaskedLinear] | None = None
        self.path = (
            "columns" if rows_groups == 1 else ("row_groups" if rows_groups <= max_row_groups else "materialise")
        )

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def current_mask(self, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The mask (R, C) for this forward pass, according to the mode (a sample's noise from ``generator``,
        default torch's default generator)."""
        mode = self.mask_mode or ("sample" if self.training and self.log_alpha.requires_grad else "soft")
        if mode == "sample":
            return hc.sample_mask(self.log_alpha, generator)
        if mode == "soft":
            return hc.soft_mask(self.log_alpha)
        if mode == "hard":
            return hc.hard_mask(self.log_alpha)
        if mode == "none":
            return None
        raise ValueError(f"unknown mask mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        streams = run_streams.current()
        if streams is not None and self.pack_siblings is not None:
            return self._packed(x, streams)
        mask = self.current_mask()
        if mask is None:
            return F.linear(x, self.weight, self.bias)
        return masked_linear(x, self.weight, self.bias, mask, self.block, self.layout, self.path)

    def _packed(self, x: torch.Tensor, streams: run_streams.Streams) -> torch.Tensor:
        """The rows of every run of ``streams`` through that run's matrix (this one's weight, shared by them all)."""
        runs = [self.pack_siblings[i] for i in streams.runs]
        masks = [m.current_mask(g) for m, g in zip(runs, streams.generators)]  # each from its run's stream
        sizes = streams.parts(x.shape[0])
        if len(runs) > 1 and len(set(sizes)) == 1 and all(mask is not None for mask in masks):
            return packed_linear(x, self.weight, self.bias, masks, [(m.block, m.layout, m.path) for m in runs])
        parts = [x] if len(runs) == 1 else x.split(list(sizes))
        outs = [F.linear(part, self.weight, self.bias) if mask is None else
                masked_linear(part, self.weight, self.bias, mask, m.block, m.layout, m.path)
                for part, m, mask in zip(parts, runs, masks)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}->{self.out_features}, block={self.block}, layout={self.layout}, "
            f"mask={tuple(self.log_alpha.shape)}, path={self.path}"
        )


class _ColumnMasked(torch.autograd.Function):
    """``F.linear(x, W * M)`` where ``M`` is ``R`` row groups x ``in`` column masks (``cmask``: (R, in))."""

    @staticmethod
    def forward(ctx, x, weight, bias, cmask, layout):
        groups, in_f = cmask.shape
        out_f = weight.shape[0]
        m = cmask.to(weight.dtype)
        ctx.save_for_backward(x, weight, m)
        ctx.layout = layout
        ctx.mask_dtype = cmask.dtype
        if groups == 1 and x.numel() < weight.numel():  # fewer tokens than output rows: scale x instead
            return F.linear(x * m, weight, bias)
        if groups == 1:
            w = weight * m
        elif layout == "strided":  # row r = q * R + g uses group g
            w = (weight.view(out_f // groups, groups, in_f) * m).view(out_f, in_f)
        else:  # row r = g * rows + q uses group g
            w = (weight.view(groups, out_f // groups, in_f) * m.unsqueeze(1)).view(out_f, in_f)
        return F.linear(x, w, None if bias is None else bias.to(w.dtype))

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, m = ctx.saved_tensors
        groups, in_f = m.shape
        out_f = weight.shape[0]
        need_x, _, _, need_m, _ = ctx.needs_input_grad
        grad_x = grad_m = None
        gy = grad_y.reshape(-1, out_f).to(weight.dtype)
        xs = x.reshape(-1, in_f)
        if groups == 1:
            g = gy @ weight  # (N, in): gradient w.r.t. the masked input x * m
            if need_m:
                grad_m = (g * xs).sum(0).unsqueeze(0)
            if need_x:
                grad_x = g.mul_(m).view(x.shape)
        else:  # per row group k: g_k = grad_y[:, rows of k] @ W[rows of k], consumed at once
            rows = out_f // groups
            grad_m = torch.empty(groups, in_f, dtype=x.dtype, device=x.device) if need_m else None
            gx = None
            for k in range(groups):
                if ctx.layout == "strided":  # rows q * R + k (a strided view of W: no copy)
                    g = gy[:, k::groups] @ weight[k::groups]
                else:
                    g = gy[:, k * rows : (k + 1) * rows] @ weight[k * rows : (k + 1) * rows]
                if need_m:
                    grad_m[k] = (g * xs).sum(0)
                if need_x:
                    gx = g.mul_(m[k]) if gx is None else gx.addcmul_(g, m[k])
            if need_x:
                grad_x = gx.view(x.shape)
        if grad_m is not None:  # the sums accumulate in fp32 inside; a bf16 -> fp32 reduction is far slower
            grad_m = grad_m.to(ctx.mask_dtype)
        grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.reshape(-1, out_f).sum(0)
        return grad_x, None, grad_b, grad_m, None


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
    if path in ("columns", "row_groups"):
        return _ColumnMasked.apply(x, weight, bias, expand_columns(mask, cols, layout), layout)
    return F.linear(x, weight * expand_mask(mask, block, layout).to(weight.dtype), bias)
