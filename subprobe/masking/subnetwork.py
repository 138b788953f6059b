"""Install masks into a model, the L0 penalty, and the frozen :class:`Subnetwork` result (its per-matrix
records, :class:`~subprobe.masking.entries.MaskEntry`, are importable from here too)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from subprobe.errors import ConfigError, SubprobeError
from subprobe.masking import counting
from subprobe.masking import hard_concrete as hc
from subprobe.masking.compare import Comparison, compare_masks
from subprobe.masking.constraint import expected_density
from subprobe.masking.entries import MaskEntry
from subprobe.masking.fused import mask_module
from subprobe.masking.layouts import LAYOUTS, Granularity, fallback_summary
from subprobe.masking.masked_linear import DEFAULT_MAX_ROW_GROUPS, MaskedLinear
from subprobe.masking.shared import install_shared_masks, mask_groups
from subprobe.models.targets import MaskTarget

PENALTIES = ("matrix-mean", "param-mean")
#: Largest number of mask logits for which :func:`l0_penalty` concatenates them (a copy of them all).
CONCAT_MAX_MASKS = 1 << 22


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
    if granularity.shared:  # head / layer: masks shared across matrices, contiguous by definition
        return install_shared_masks(model, targets, granularity.spec, init_log_alpha=init_log_alpha)
    choices = granularity.plan([(t.name, t.shape) for t in targets], hidden_size)
    parts = [(t.module, (t.name, t.role, t.layer, t.rows, c.block)) for t, c in zip(targets, choices)]
    masked = _replace(model, parts, layout, init_log_alpha=init_log_alpha, max_row_groups=max_row_groups)
    for m, choice in zip(masked, choices):
        m.block_choice = choice  # what the granularity asked for here (see layouts.BlockChoice)
    return masked


def granularity_fallbacks(masked: list[MaskedLinear]) -> list[dict]:
    """The matrices whose block is not the one the granularity asked for (``metrics.json``'s
    ``granularity_fallbacks``; empty when every block divides its matrix)."""
    return fallback_summary([(m.role, m.block_choice) for m in masked if getattr(m, "block_choice", None)])


def describe_fallbacks(granularity: str, fallbacks: list[dict]) -> list[str]:
    """One line per :func:`granularity_fallbacks` entry, for stderr and ``--dry-run``."""
    return [
        f"--granularity {granularity}: {f['matrices']} {f['role']} matrices of {f['shape'][0]}x{f['shape'][1]} are "
        f"not whole blocks of ({f['asked'][0]},{f['asked'][1]}); they use {f['unit']} units "
        f"({f['block'][0]},{f['block'][1]}) instead"
        for f in fallbacks
    ]


def _replace(model: nn.Module, parts: list[tuple[str, tuple]], layout: str, **kw) -> list[MaskedLinear]:
    """Swap every module named in ``parts`` (module path, part) for its masked version; the
    MaskedLinear matrices come back in ``parts`` order."""
    by_module: dict[str, list[tuple]] = {}
    for module_name, part in parts:
        by_module.setdefault(module_name, []).append(part)
    made: dict[str, MaskedLinear] = {}
    for module_name, module_parts in by_module.items():
        parent_name, _, child = module_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement, matrices = mask_module(getattr(parent, child), module_parts, layout, module_name=module_name, **kw)
        setattr(parent, child, replacement)
        made.update({m.name: m for m in matrices})
    return [made[part[0]] for _, part in parts]


def l0_penalty(masked: list[MaskedLinear], normalisation: str = "matrix-mean") -> torch.Tensor:
    """Expected L0: mean per matrix then over matrices (paper), or mean over all mask parameters.

    A mask shared by several matrices (``--granularity head | layer``) counts once, as one matrix.
    Up to :data:`CONCAT_MAX_MASKS` masks in all, the logits are concatenated and go through one
    elementwise chain (a few kernels instead of a few per matrix); the result equals the per-matrix sum
    to float rounding."""
    logits = mask_groups(masked)
    if normalisation not in PENALTIES:
        raise ConfigError(f"--penalty {normalisation!r} is not known; use one of {', '.join(PENALTIES)}")
    sizes = [la.numel() for la in logits]
    if len(logits) > 1 and sum(sizes) <= CONCAT_MAX_MASKS and len({la.device for la in logits}) == 1:
        p = hc.expected_l0(torch.cat([la.reshape(-1) for la in logits]))
        if normalisation == "param-mean":
            return p.sum() / sum(sizes)
        return segment_means(p, sizes).mean()
    if normalisation == "matrix-mean":
        return torch.stack([hc.expected_l0(la).mean() for la in logits]).mean()
    if normalisation == "param-mean":
        total = sum(la.numel() for la in logits)
        return torch.stack([hc.expected_l0(la).sum() for la in logits]).sum() / total
    raise ConfigError(f"--penalty {normalisation!r} is not known; use one of {', '.join(PENALTIES)}")


#: Device types with a ``torch.segment_reduce`` kernel (Apple's MPS has none).
SEGMENT_REDUCE_DEVICES = ("cpu", "cuda")


def segment_means(values: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The mean of each consecutive segment of ``values`` (lengths ``sizes``): one ``segment_reduce`` where the
    device has the kernel, else one ``index_add_`` (the same numbers to float rounding)."""
    lengths = torch.tensor(sizes, device=values.device)
    if values.device.type in SEGMENT_REDUCE_DEVICES:
        return torch.segment_reduce(values, "mean", lengths=lengths)
    segment = torch.repeat_interleave(torch.arange(len(sizes), device=values.device), lengths)
    sums = torch.zeros(len(sizes), dtype=values.dtype, device=values.device).index_add_(0, segment, values)
    return sums / lengths.to(values.dtype)


def set_mask_mode(model: nn.Module, mode: str | None) -> None:
    """Force every MaskedLinear of ``model`` to ``mode`` (None = sample in train, soft in eval)."""
    for module in model.modules():
        if isinstance(module, MaskedLinear):
            module.mask_mode = mode


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
            MaskEntry(
                m.name, m.role, m.layer, tuple(m.weight.shape), m.block, m.log_alpha.detach().float().clone(),
                getattr(m, "module_name", m.name), getattr(m, "rows", ()), getattr(m, "group", ""),
            )
            for m in masked
        )
        layout = masked[0].layout if masked else "strided"
        return Subnetwork(entries, layout, granularity, model)

    @property
    def num_mask_params(self) -> int:
        """Number of masks (bits): a mask shared by several matrices counts once."""
        groups = {e.group: e.log_alpha.numel() for e in self.entries if e.group}
        return sum(e.log_alpha.numel() for e in self.entries if not e.group) + sum(groups.values())

    @property
    def num_masked_weights(self) -> int:
        return sum(e.shape[0] * e.shape[1] for e in self.entries)

    def hard_masks(self) -> dict[str, torch.Tensor]:
        return {e.name: hc.hard_mask(e.log_alpha) for e in self.entries}

    def soft_masks(self) -> dict[str, torch.Tensor]:
        return {e.name: hc.soft_mask(e.log_alpha) for e in self.entries}

    def kept_weights(self) -> int:
        """Number of masked weights kept by the hard mask."""
        return counting.count(self.entries)[0]

    def density(self) -> float:
        """Fraction of masked weights kept by the hard mask."""
        return counting.density(self.entries)

    def expected_density(self) -> float:
        """Expected fraction of masked weights a training sample keeps (weight-weighted expected L0)."""
        return float(expected_density(self.entries)) if self.entries else 0.0

    def density_by(self, key: str) -> dict[str, float]:
        """Hard-mask density grouped by ``layer`` or ``role``."""
        counts = counting.count_by(self.entries, lambda e: str(getattr(e, key)))
        return {k: kept / total for k, (kept, total) in counts.items()}

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

    def compare(self, other: Subnetwork) -> Comparison:
        """Agreement and IoU of the kept weights, overall, per layer and per role (weight level, so
        other granularities and layouts of the same model compare; see :mod:`subprobe.masking.compare`); one
        :class:`SubprobeError` line when they mask different models, matrices or shapes."""
        return compare_masks(self.entries, self.layout, self.model, other.entries, other.layout, other.model)

    def apply(self, model: nn.Module, mode: str = "hard") -> list[MaskedLinear]:
        """Install these masks into a fresh copy-compatible ``model``; returns the masked modules."""
        parts = [(e.module or e.name, (e.name, e.role, e.layer, tuple(e.rows), e.block)) for e in self.entries]
        masked = _replace(model, parts, self.layout)
        for module, e in zip(masked, self.entries):
            with torch.no_grad():
                module.log_alpha.copy_(e.log_alpha.to(module.log_alpha.device))
            module.log_alpha.requires_grad_(False)
            module.mask_mode = mode
        return masked

    def bake(self, model: nn.Module) -> nn.Module:
        """Bake the hard mask into ``model``'s weights, in place, and return it: a plain model.

        ``model`` is the model the masks were found in, as loaded (with the run's reset applied for
        reset settings), without masks installed. Every weight the hard mask drops becomes exactly
        zero; kept weights, biases and all other parameters are unchanged, so the result saves and
        loads with transformers alone (``save_pretrained`` / ``AutoModel.from_pretrained``).
        Conv1D weights (stored in x out) and role slices of fused matrices are handled.
        """
        from subprobe.masking.fused import MaskedSlices, row_index
        from subprobe.models.families import is_conv1d

        for e in self.entries:
            name = e.module or e.name
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise SubprobeError(
                    f"the mask of {e.name} names module {name!r}, which this model does not have; load the run's "
                    f"model ({self.model or 'its config.yaml'})"
                ) from None
            if isinstance(module, MaskedLinear | MaskedSlices):
                raise SubprobeError(
                    f"{name} has a mask installed; bake into a freshly loaded model (without Subnetwork.apply)"
                )
            if not isinstance(getattr(module, "weight", None), torch.Tensor) or module.weight.dim() != 2:
                raise SubprobeError(f"the mask of {e.name} names module {name!r}, which is not a weight matrix of "
                                    f"this model; load the run's model ({self.model or 'its config.yaml'})")
            conv1d = is_conv1d(module)
            weight = module.weight.data.t() if conv1d else module.weight.data  # a view, out x in
            every = torch.arange(weight.shape[0], device=weight.device)
            rows = row_index(tuple(e.rows), weight.device) if e.rows else every
            if (len(rows), weight.shape[1]) != tuple(e.shape):
                raise SubprobeError(
                    f"cannot bake the mask of {e.name} ({e.shape[0]}x{e.shape[1]}) into a "
                    f"{len(rows)}x{weight.shape[1]} matrix; load the run's model ({self.model or 'its config.yaml'})"
                )
            keep = counting.kept_weight_mask(e.log_alpha, e.block, self.layout).to(weight.device)
            with torch.no_grad():
                weight[rows] = weight[rows].masked_fill(keep == 0, 0.0)
        return model

    def save(self, path: str | Path) -> None:
        """Write the mask logits and their layout to a safetensors file (atomically)."""
        from subprobe.atomic import write_safetensors

        meta = {
            "layout": self.layout,
            "granularity": self.granularity,
            "model": self.model,
            "entries": json.dumps([_entry_json(e) for e in self.entries]),
        }
        write_safetensors(path, {e.name: e.log_alpha for e in self.entries}, metadata=meta)

    @staticmethod
    def load(path: str | Path) -> Subnetwork:
        """Read a file written by :meth:`save` (tensors through safetensors only; the layout from its JSON
        metadata, checked field by field). A damaged or foreign file is one DamagedFileError line."""
        from safetensors import safe_open

        from subprobe.errors import DamagedFileError

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                rows = json.loads(meta["entries"])
                names = set(f.keys())
                entries = tuple(_entry_from_json(row, names, f) for row in rows)
            return Subnetwork(entries, str(meta["layout"]), str(meta["granularity"]), str(meta.get("model", "")))
        except FileNotFoundError:
            raise
        except Exception as exc:  # SafetensorError, bad JSON, missing keys, wrong types
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DamagedFileError(
                str(path), f"not a whole subprobe masks file: {type(exc).__name__}: {reason}",
                "the file is damaged (truncated or corrupted) or was not written by subprobe: restore it from a "
                "copy, or train the run again",
            ) from None


def _entry_from_json(row, names: set[str], f) -> MaskEntry:
    """One MaskEntry from its metadata row (see :func:`_entry_json`) and its tensor; ValueError if malformed."""
    if not isinstance(row, list) or len(row) not in (5, 7, 8):
        raise ValueError(f"entry {row!r:.60} is not [name, role, layer, shape, block, ...]")
    name, role, layer, shape, block, *rest = row
    if isinstance(layer, str) and layer.isdigit():
        layer = int(layer)
    pairs = (shape, block)
    if not (isinstance(name, str) and isinstance(role, str) and isinstance(layer, int)) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and x > 0 for x in p) for p in pairs
    ):
        raise ValueError(f"entry {name!r:.60} has fields of the wrong type")
    if name not in names:
        raise ValueError(f"no tensor for entry {name!r:.60}")
    module, ranges, group = "", (), ""
    if rest:
        module, raw = rest[0], rest[1]
        if not isinstance(module, str) or not isinstance(raw, list) or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) for r in raw
        ):
            raise ValueError(f"entry {name!r:.60} has a malformed module or row ranges")
        ranges = tuple(tuple(r) for r in raw)
        group = rest[2] if len(rest) > 2 else ""
        if not isinstance(group, str):
            raise ValueError(f"entry {name!r:.60} has a malformed group")
    tensor = f.get_tensor(name)
    if not tensor.is_floating_point():
        raise ValueError(f"mask logits of {name!r:.60} are not floating point")
    return MaskEntry(name, role, layer, tuple(shape), tuple(block), tensor, module, ranges, group)


def _entry_json(e: MaskEntry) -> list:
    """[name, role, layer, shape, block] and, for a Conv1D or fused slice, [module, rows], then [group] for a
    shared mask."""
    row = [e.name, e.role, e.layer, list(e.shape), list(e.block)]
    if (e.module and e.module != e.name) or e.rows or e.group:
        row += [e.module or e.name, [list(r) for r in e.rows]]
    if e.group:
        row.append(e.group)
    return row


def mean_pairwise_iou(subnetworks: Iterable[Subnetwork]) -> float | None:
    """Mean IoU of the kept weights over all unordered pairs (None for fewer than two subnetworks)."""
    subs = list(subnetworks)
    values = [x.compare(y).overall.iou for i, x in enumerate(subs) for y in subs[i + 1:]]
    return sum(values) / len(values) if values else None
