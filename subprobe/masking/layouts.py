"""Mask granularities and layouts: which mask entry governs which weight of a matrix.

A granularity is a block size ``(rows, cols)``: one mask entry per ``rows x cols`` weights, so a
matrix of shape ``(out, in)`` has a mask of shape ``(out // rows, in // cols)``.

* ``strided`` (the paper's code): weight ``[r, c]`` uses mask ``[r mod R, c mod C]`` where
  ``(R, C)`` is the mask shape, i.e. the mask is tiled over the matrix.
* ``contiguous``: weight ``[r, c]`` uses mask ``[r // rows, c // cols]`` (true tiles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from subprobe.errors import ConfigError

LAYOUTS = ("strided", "contiguous")

#: The paper's nine settings for bert-base (hidden size 768), coarse to fine.
PAPER_GRANULARITIES_768: tuple[tuple[int, int], ...] = (
    (768, 768),
    (768, 192),
    (768, 24),
    (768, 6),
    (768, 1),
    (192, 1),
    (24, 1),
    (6, 1),
    (1, 1),
)

NAMED_UNITS = ("weight", "neuron", "matrix")
#: Units whose one mask several matrices share (see :mod:`subprobe.masking.shared`): per attention head and FFN
#: neuron, or per block's attention and FFN.
SHARED_UNITS = ("head", "layer")


def paper_granularity(k: int, hidden_size: int) -> tuple[int, int]:
    """The paper's k-th (1..9) setting, scaled from width 768 to ``hidden_size``."""
    rows, cols = PAPER_GRANULARITIES_768[k - 1]
    scaled = []
    for size in (rows, cols):
        if size == 1:
            scaled.append(1)
        elif size * hidden_size % 768:
            raise ConfigError(
                f"--granularity paper-{k}: the paper's ({rows},{cols}) does not scale to hidden size {hidden_size}; "
                "give an explicit --granularity ROWS,COLS"
            )
        else:
            scaled.append(size * hidden_size // 768)
    return scaled[0], scaled[1]


def paper_granularities(hidden_size: int) -> list[tuple[int, int]]:
    """The paper's nine (rows, cols) settings scaled from width 768 to ``hidden_size``."""
    return [paper_granularity(k, hidden_size) for k in range(1, 10)]


@dataclass(frozen=True)
class Granularity:
    """A parsed ``--granularity`` value; resolved per matrix by :meth:`block`.

    ``spec`` is one of ``weight`` (1,1), ``neuron`` (d,1) -- the paper's neuron setting, one mask
    per input dimension of each d-row group --, ``matrix`` (one mask per whole matrix),
    ``paper-K`` (K = 1..9, the paper's K-th setting scaled to the model width) or ``ROWS,COLS``.
    """

    spec: str

    @staticmethod
    def parse(spec: str) -> Granularity:
        spec = spec.strip().lower()
        named = spec in NAMED_UNITS or spec in SHARED_UNITS
        if named or re.fullmatch(r"paper-[1-9]", spec) or re.fullmatch(r"\d+,\d+", spec):
            if re.fullmatch(r"\d+,\d+", spec) and 0 in tuple(int(x) for x in spec.split(",")):
                raise ConfigError(f"--granularity {spec}: block sizes must be positive")
            return Granularity(spec)
        raise ConfigError(
            f"--granularity {spec!r} is not known; use weight, neuron, matrix, head, layer, paper-1 .. paper-9 "
            "or ROWS,COLS (e.g. 384,1)"
        )

    @property
    def shared(self) -> bool:
        """Several matrices share each mask (``head``, ``layer``): see :mod:`subprobe.masking.shared`."""
        return self.spec in SHARED_UNITS

    def block(self, shape: tuple[int, int], hidden_size: int) -> tuple[int, int]:
        """Block size (rows, cols) for a matrix of ``shape`` = (out, in) (not for shared units: their block
        depends on the matrix's role, see :func:`subprobe.masking.shared.shared_plan`)."""
        if self.shared:
            raise ValueError(f"--granularity {self.spec}: the block depends on the role; use masking.shared")
        out_f, in_f = shape
        if self.spec == "weight":
            rows, cols = 1, 1
        elif self.spec == "neuron":  # a matrix narrower than d (grouped-query K/V) is one row group
            rows, cols = (out_f if out_f < hidden_size and hidden_size % out_f == 0 else hidden_size), 1
        elif self.spec == "matrix":
            rows, cols = out_f, in_f
        elif self.spec.startswith("paper-"):
            rows, cols = paper_granularity(int(self.spec[6:]), hidden_size)
        else:
            rows, cols = (int(x) for x in self.spec.split(","))
        if out_f % rows or in_f % cols:
            raise ConfigError(
                f"--granularity {self.spec}: block ({rows},{cols}) does not divide a {out_f}x{in_f} "
                "matrix; choose block sizes that divide every masked matrix"
            )
        return rows, cols


def mask_shape(shape: tuple[int, int], block: tuple[int, int]) -> tuple[int, int]:
    """Shape of the mask of a matrix of ``shape`` with block size ``block``."""
    return shape[0] // block[0], shape[1] // block[1]


def expand_mask(mask: torch.Tensor, block: tuple[int, int], layout: str) -> torch.Tensor:
    """Expand a ``(R, C)`` mask to the full weight shape ``(R*rows, C*cols)``."""
    rows, cols = block
    if layout == "strided":
        return mask.repeat(rows, cols)
    if layout == "contiguous":
        return mask.repeat_interleave(rows, dim=0).repeat_interleave(cols, dim=1)
    raise ConfigError(f"--layout {layout!r} is not known; use one of {', '.join(LAYOUTS)}")


def expand_columns(mask_row: torch.Tensor, cols: int, layout: str) -> torch.Tensor:
    """Expand the last dimension of a ``(..., C)`` mask to ``(..., C*cols)`` (column groups only)."""
    if cols == 1:
        return mask_row
    if layout == "strided":
        return mask_row.repeat(*([1] * (mask_row.dim() - 1)), cols)
    return mask_row.repeat_interleave(cols, dim=-1)
