"""One frozen matrix applied to the rows of several runs at once, each run's rows through its own mask (packed
training, :mod:`subprobe.training.packed`).

``x`` holds ``K`` runs' rows in turn, the same number each: ``x.reshape(K, n, in)``. Run ``k``'s output is
``F.linear(x_k, W * expand_mask(M_k), b)``, the function :func:`subprobe.masking.masked_linear.masked_linear` computes
for it alone; what a matrix does depends on how its runs' masks are structured (:func:`kind`):

* ``columns`` (one row group: the mask depends on the input column only -- ``neuron`` and ``paper-1`` .. ``paper-5``
  on d x d matrices, every FFN-out, the O and FFN-out columns of ``head``/``layer``): one GEMM on the shared weight
  over every run's scaled rows, ``(x_k * m_k)`` stacked;
* ``rows`` (one column group: the mask depends on the output row only -- the Q/K/V and FFN-in rows of
  ``head``/``layer``): one GEMM on the shared weight, then each run's output rows scaled by its row mask;
* ``row_groups`` (a few row groups, each with its column mask -- the strided FFN-in of ``neuron``): one GEMM per row
  group over every run's rows (runs with the same number of groups and layout);
* ``blocks`` (finer masks: per weight, small blocks): a batched product of the runs' masked weights (one ``bmm``
  instead of K products).

Runs of different kinds in one matrix (a pack of several granularities) are computed kind by kind and put back in
run order. Every path is plain autograd on the frozen weight: the backward forms the input and mask gradients only
(no weight gradient: the weight does not require one), as the run alone does; ``blocks`` forms each run's
weight-sized mask gradient, as the run alone's materialised path does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from subprobe.masking.layouts import expand_columns, expand_mask, mask_shape

KINDS = ("columns", "rows", "row_groups", "blocks")

#: a run's mask structure: (block, layout, path) of its MaskedLinear
Spec = tuple[tuple[int, int], str, str]


def kind(shape: tuple[int, int], spec: Spec) -> str:
    """How a mask of ``spec`` over a weight of ``shape`` is applied to many runs at once (see the module doc)."""
    block, _, path = spec
    groups, cols = mask_shape(tuple(shape), tuple(block))
    if groups == 1:
        return "columns"
    if cols == 1:
        return "rows"
    return "row_groups" if path == "row_groups" else "blocks"


def packed_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, masks: list[torch.Tensor], specs: list[Spec]
) -> torch.Tensor:
    """``cat([F.linear(x_k, weight * expand_mask(masks[k], *specs[k][:2]), bias) for each run k])`` where ``x_k``
    is the k-th of ``len(masks)`` equal parts of ``x``'s leading dimension."""
    runs = len(masks)
    in_f, out_f = x.shape[-1], weight.shape[0]
    xs = x.reshape(runs, -1, in_f)
    by_kind: dict[tuple, list[int]] = {}
    for k, spec in enumerate(specs):
        what = kind(weight.shape, spec)
        key = (what, *mask_shape(tuple(weight.shape), spec[0])[:1], spec[1]) if what == "row_groups" else (what,)
        by_kind.setdefault(key, []).append(k)
    parts, order = [], []
    for key, ks in by_kind.items():
        part = xs if len(ks) == runs else xs.index_select(0, torch.tensor(ks, device=x.device))
        parts.append(_APPLY[key[0]](part, weight, bias, [masks[k] for k in ks], [specs[k] for k in ks]))
        order.extend(ks)
    if len(parts) == 1:
        y = parts[0]
    else:  # kinds computed apart: back to run order
        inverse = torch.empty(runs, dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(runs)
        y = torch.cat(parts).index_select(0, inverse.to(x.device))
    return y.reshape(*x.shape[:-1], out_f)


def _columns(xs, weight, bias, masks, specs) -> torch.Tensor:
    """One row group: ``F.linear(x_k * m_k, W, b)`` for every run in one GEMM."""
    m = torch.stack([expand_columns(mask, block[1], layout) for mask, (block, layout, _) in zip(masks, specs)])
    return F.linear(xs * m.to(weight.dtype), weight, bias)  # m: (K, 1, in)


def _rows(xs, weight, bias, masks, specs) -> torch.Tensor:
    """One column group: ``F.linear(x_k, W) * r_k + b`` for every run in one GEMM, then per-run row scaling."""
    out_f = weight.shape[0]
    rows = torch.stack([_row_vector(mask[:, 0], block[0], layout, out_f) for mask, (block, layout, _) in
                        zip(masks, specs)])
    y = F.linear(xs, weight) * rows.unsqueeze(1).to(weight.dtype)
    return y if bias is None else y + bias


def _row_vector(mask: torch.Tensor, rows: int, layout: str, out_f: int) -> torch.Tensor:
    """The ``(out,)`` mask of every output row from one entry per group of ``rows`` rows."""
    return mask.repeat(out_f // mask.numel()) if layout == "strided" else mask.repeat_interleave(rows)


def _row_groups(xs, weight, bias, masks, specs) -> torch.Tensor:
    """A few row groups (the same number and layout in every run): one GEMM per group over every run's rows."""
    m = torch.stack([expand_columns(mask, block[1], layout) for mask, (block, layout, _) in zip(masks, specs)])
    m = m.to(weight.dtype)  # (K, R, in)
    groups, layout = m.shape[1], specs[0][1]
    out_f = weight.shape[0]
    rows = out_f // groups
    ys = []
    for g in range(groups):  # strided: rows q * R + g use group g (a strided view of W: no copy)
        w = weight[g::groups] if layout == "strided" else weight[g * rows : (g + 1) * rows]
        ys.append(F.linear(xs * m[:, g : g + 1], w))
    y = torch.stack(ys, dim=-1).flatten(-2) if layout == "strided" else torch.cat(ys, dim=-1)
    return y if bias is None else y + bias


def _blocks(xs, weight, bias, masks, specs) -> torch.Tensor:
    """Finer masks: each run's masked weight, all of them in one batched product."""
    w = torch.stack([weight * expand_mask(mask, block, layout).to(weight.dtype) for mask, (block, layout, _) in
                     zip(masks, specs)])
    y = torch.bmm(xs, w.transpose(1, 2))
    return y if bias is None else y + bias


_APPLY = {"columns": _columns, "rows": _rows, "row_groups": _row_groups, "blocks": _blocks}
