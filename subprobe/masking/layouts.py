"""Mask granularities and layouts: which mask entry governs which weight of a matrix.

A granularity is a block size ``(rows, cols)``: one mask entry per ``rows x cols`` weights, so a
matrix of shape ``(out, in)`` has a mask of shape ``(out // rows, in // cols)``.

* ``strided`` (the paper's code): weight ``[r, c]`` uses mask ``[r mod R, c mod C]`` where
  ``(R, C)`` is the mask shape, i.e. the mask is tiled over the matrix.
* ``contiguous``: weight ``[r, c]`` uses mask ``[r // rows, c // cols]`` (true tiles).
"""

from __future__ import annotations

import math
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
            near = tuple(max(1, round(s * hidden_size / 768)) if s > 1 else 1 for s in (rows, cols))
            raise ConfigError(
                f"--granularity paper-{k}: the paper's ({rows},{cols}) does not scale to hidden size {hidden_size} "
                f"({size} x {hidden_size} / 768 is not a whole number); give an explicit block instead, e.g. "
                f"--granularity {near[0]},{near[1]}"
            )
        else:
            scaled.append(size * hidden_size // 768)
    return scaled[0], scaled[1]


def paper_granularities(hidden_size: int) -> list[tuple[int, int]]:
    """The paper's nine (rows, cols) settings scaled from width 768 to ``hidden_size``."""
    return [paper_granularity(k, hidden_size) for k in range(1, 10)]


@dataclass(frozen=True)
class BlockChoice:
    """The block a matrix of ``shape`` gets: the one the granularity asks for, and the one used.

    They differ only for a named granularity whose block does not divide the matrix (an FFN width that is not a
    multiple of the model width, a grouped-query K/V narrower than d, ...): the rows that do not divide become
    one whole-column group (``rows = out``: the mask varies along the columns only) and the columns that do not
    divide one whole-row group (``cols = in``). The number of mask parameters is that of the block used.
    """

    shape: tuple[int, int]
    asked: tuple[int, int]
    block: tuple[int, int]

    @property
    def fallback(self) -> str | None:
        """``None``, or the unit used instead of the asked block: ``whole-column``, ``whole-row``, ``whole-matrix``."""
        rows = self.block[0] != self.asked[0]
        cols = self.block[1] != self.asked[1]
        if rows and cols:
            return "whole-matrix"
        return "whole-column" if rows else "whole-row" if cols else None

    def describe(self) -> str:
        """One line for ``--dry-run`` and stderr: what was asked, why it does not fit, what is used."""
        (out_f, in_f), (r, c), (br, bc) = self.shape, self.asked, self.block
        why = []
        if br != r:
            why.append(f"its {out_f} rows are not a multiple of {r}")
        if bc != c:
            why.append(f"its {in_f} columns are not a multiple of {c}")
        return f"block ({r},{c}) on {out_f}x{in_f}: {' and '.join(why)}; {self.fallback} units ({br},{bc}) instead"


@dataclass(frozen=True)
class Granularity:
    """A parsed ``--granularity`` value; resolved per matrix by :meth:`choose` (or :meth:`block`).

    ``spec`` is one of ``weight`` (1,1), ``neuron`` (d,1) -- the paper's neuron setting, one mask
    per input dimension of each d-row group --, ``matrix`` (one mask per whole matrix),
    ``paper-K`` (K = 1..9, the paper's K-th setting scaled to the model width) or ``ROWS,COLS``.
    A named granularity fits every matrix (see :class:`BlockChoice`); an explicit ``ROWS,COLS`` must divide
    every masked matrix.
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

    @property
    def explicit(self) -> bool:
        """An explicit ``ROWS,COLS`` block (no fallback: it must divide every matrix)."""
        return bool(re.fullmatch(r"\d+,\d+", self.spec))

    def asked(self, shape: tuple[int, int], hidden_size: int) -> tuple[int, int]:
        """The block this granularity asks for on a matrix of ``shape`` = (out, in), before any fallback."""
        if self.shared:
            raise ValueError(f"--granularity {self.spec}: the block depends on the role; use masking.shared")
        out_f, in_f = shape
        if self.spec == "weight":
            return 1, 1
        if self.spec == "neuron":
            return hidden_size, 1
        if self.spec == "matrix":
            return out_f, in_f
        if self.spec.startswith("paper-"):
            return paper_granularity(int(self.spec[6:]), hidden_size)
        rows, cols = (int(x) for x in self.spec.split(","))
        return rows, cols

    def choose(self, shape: tuple[int, int], hidden_size: int, name: str = "", hint: str = "") -> BlockChoice:
        """The block of a matrix of ``shape`` (see :class:`BlockChoice`); an explicit block that does not divide it
        is a ConfigError naming the matrix (``hint``: a block that would)."""
        out_f, in_f = shape
        rows, cols = self.asked(shape, hidden_size)
        if self.explicit and (out_f % rows or in_f % cols):
            what = f"{name} ({out_f}x{in_f})" if name else f"a {out_f}x{in_f} matrix"
            raise ConfigError(
                f"--granularity {self.spec}: block ({rows},{cols}) does not divide {what}; choose block sizes that "
                f"divide every masked matrix{hint} or a named unit such as neuron"
            )
        block = (rows if out_f % rows == 0 else out_f, cols if in_f % cols == 0 else in_f)
        return BlockChoice((out_f, in_f), (rows, cols), block)

    def block(self, shape: tuple[int, int], hidden_size: int) -> tuple[int, int]:
        """Block size (rows, cols) used for a matrix of ``shape`` = (out, in) (not for shared units: their block
        depends on the matrix's role, see :func:`subprobe.masking.shared.shared_plan`)."""
        return self.choose(shape, hidden_size).block

    def plan(self, matrices: list[tuple[str, tuple[int, int]]], hidden_size: int) -> list[BlockChoice]:
        """The block of every ``(name, shape)``; an explicit block that does not divide some matrix is refused with
        a block that divides them all (the largest not above the asked one)."""
        hint = ""
        if self.explicit and matrices:
            rows, cols = self.asked((1, 1), hidden_size)
            fits = (_largest_divisor(math.gcd(*(s[0] for _, s in matrices)), rows),
                    _largest_divisor(math.gcd(*(s[1] for _, s in matrices)), cols))
            hint = f" (e.g. --granularity {fits[0]},{fits[1]})"
        return [self.choose(shape, hidden_size, name, hint) for name, shape in matrices]


def _largest_divisor(n: int, most: int) -> int:
    """The largest divisor of ``n`` that is at most ``most``."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def fallback_summary(choices: list[tuple[str, BlockChoice]]) -> list[dict]:
    """``metrics.json``'s ``granularity_fallbacks``: one entry per (role, shape, asked, used) with its matrices."""
    rows: dict[tuple, int] = {}
    for role, choice in choices:
        if choice.fallback:
            key = (role, choice.shape, choice.asked, choice.block, choice.fallback)
            rows[key] = rows.get(key, 0) + 1
    return [
        {"role": role, "shape": list(shape), "asked": list(asked), "block": list(block), "unit": unit, "matrices": n}
        for (role, shape, asked, block, unit), n in rows.items()
    ]


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
