"""Find the projection matrices to mask (Q, K, V, attention output, FFN-in, FFN-out) in every block.

Blocks are the longest list of identical modules that hold projections (``encoder.layer``, ``h``,
``layers``, ...). Inside a block, a known family (:mod:`subprobe.models.families`) names every
projection's role and splits fused matrices (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``, Phi-3
``qkv_proj``/``gate_up_proj``) into one target per role slice; an unknown family gets roles guessed
from the module names (``other`` where none fits). ``--target-modules`` replaces discovery.
Coverage (masked weights / block projection weights, and the roles each block lacks) is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from subprobe.errors import ConfigError, SubprobeError
from subprobe.models.families import (
    ALL_ROLES,
    FAMILY_PATTERNS,
    MODEL_TYPE_FAMILY,
    ROLES,
    Rows,
    generic_role,
    is_projection,
    out_in_shape,
)

__all__ = ["ROLES", "FAMILY_PATTERNS", "MODEL_TYPE_FAMILY", "MaskTarget", "Discovery", "discover", "find_targets"]


@dataclass(frozen=True)
class MaskTarget:
    """One matrix to mask: a whole projection, or one role's rows of a fused projection.

    ``name`` is the module path, or ``path[label]`` for a slice (``h.0.attn.c_attn[q]``); ``module``
    the module path; ``rows`` the row ranges of the module's ``out x in`` weight (``()``: all rows).
    """

    name: str
    role: str
    layer: int
    shape: tuple[int, int]  # (out_features, in_features) of this matrix (slice)
    module: str = ""
    rows: Rows = ()

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", self.name)


@dataclass
class Discovery:
    """The targets of a model, how they were found, and the coverage of its blocks."""

    targets: list[MaskTarget]
    source: str  # "family <name>", "module names (unknown family)" or "--target-modules"
    blocks: str  # path of the block list
    n_blocks: int
    block_weights: int  # weights of all projections inside the blocks
    missing: dict[int, list[str]] = field(default_factory=dict)  # layer -> roles without a target
    unmasked: list[str] = field(default_factory=list)  # block projections left unmasked
    notes: list[str] = field(default_factory=list)  # one line each, for stderr

    @property
    def masked_weights(self) -> int:
        return sum(t.shape[0] * t.shape[1] for t in self.targets if t.layer >= 0)

    @property
    def coverage(self) -> float:
        return self.masked_weights / self.block_weights if self.block_weights else 0.0

    def coverage_dict(self) -> dict:
        """What ``metrics.json`` records under ``coverage``."""
        return {
            "fraction": round(self.coverage, 6),
            "masked_weights": self.masked_weights,
            "block_projection_weights": self.block_weights,
            "blocks": self.n_blocks,
            "source": self.source,
            "missing_roles": {str(k): v for k, v in self.missing.items()},
            "unmasked": list(self.unmasked),
        }

    def summary(self) -> str:
        """One line: coverage and what is missing."""
        text = (
            f"coverage {self.coverage:.1%}: {self.masked_weights:,} masked weights / {self.block_weights:,} "
            f"projection weights in {self.n_blocks} blocks ({self.blocks}.N, {self.source})"
        )
        if self.missing:
            text += f"; missing roles: {_describe_missing(self.missing)}"
        return text


def find_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """The repeated blocks: the list of same-class modules holding the most projection weights."""
    best: tuple[int, str, list[nn.Module]] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        children = list(module)
        if len({type(c) for c in children}) != 1:
            continue
        size = sum(_weights(m) for c in children for m in c.modules() if is_projection(m))
        if size and (best is None or size > best[0]):
            best = (size, name, children)
    if best is None:
        raise SubprobeError(
            f"could not find the transformer blocks of this model ({type(model).__name__}): no list of identical "
            "modules holding Linear layers; name the matrices to mask with --target-modules REGEX[=ROLE],..."
        )
    return best[1], best[2]


def discover(
    model: nn.Module, model_type: str = "", target_modules: str | None = None, allow_partial: bool = False
) -> Discovery:
    """Targets and coverage of ``model``; raises ConfigError when a block lacks a role (unless allowed)."""
    path, blocks = find_blocks(model)
    config = getattr(model, "config", None)
    family = MODEL_TYPE_FAMILY.get(model_type)
    table = FAMILY_PATTERNS[family] if family else {}
    overrides = parse_target_modules(target_modules) if target_modules else None
    targets: list[MaskTarget] = []
    block_weights = 0
    unmasked: list[str] = []
    guessed: dict[str, str] = {}
    for layer, block in enumerate(blocks):
        for relative, module in block.named_modules():
            if not relative or not is_projection(module):
                continue
            full = f"{path}.{layer}.{relative}" if path else f"{layer}.{relative}"
            block_weights += _weights(module)
            if overrides is not None:
                role = _override_role(overrides, full)
                if role is None:
                    unmasked.append(full)
                    continue
                spec = table.get(relative, generic_role(relative)) if role == "" else role
            elif relative in table:
                spec = table[relative]
            elif family:  # a projection the family table does not list: not a Q/K/V/O/FFN matrix
                unmasked.append(full)
                continue
            else:
                spec = generic_role(relative)
                guessed.setdefault(relative, spec)
            targets.extend(_targets_for(full, module, layer, spec, config))
    if overrides is not None:  # projections outside the blocks that the user named
        for name, module in model.named_modules():
            if is_projection(module) and not _in_blocks(name, path) and _override_role(overrides, name) is not None:
                role = _override_role(overrides, name) or generic_role(name)
                targets.extend(_targets_for(name, module, -1, role, config))
    if not targets:
        what = f"--target-modules {target_modules}" if overrides is not None else "discovery"
        raise SubprobeError(f"{what} found no projection matrices to mask in this model; check the module names")
    order = {r: i for i, r in enumerate(ALL_ROLES)}
    targets.sort(key=lambda t: (t.layer, order.get(t.role, len(order)), t.name))
    missing = {}
    for layer in range(len(blocks)):
        have = {t.role for t in targets if t.layer == layer}
        lacking = [r for r in ROLES if r not in have]
        if lacking:
            missing[layer] = lacking
    source = "--target-modules" if overrides is not None else (f"family {family}" if family else "module names")
    found = Discovery(targets, source, path, len(blocks), block_weights, missing, unmasked)
    if overrides is None and not family:
        roles = ", ".join(f"{r}={role}" for r, role in guessed.items())
        found.notes.append(
            f"model type {model_type or 'unknown'!r} is not a known family: masking every Linear/Conv1D in "
            f"{len(blocks)} blocks ({path}.N) with roles from their names: {roles}"
        )
    if missing and not allow_partial:
        raise ConfigError(
            f"the masks would not cover every projection role: {_describe_missing(missing)} "
            f"({found.coverage:.1%} of block projection weights masked); name the matrices with "
            "--target-modules REGEX=ROLE,... or pass --allow-partial to train anyway"
        )
    return found


def find_targets(model: nn.Module, model_type: str = "", **kwargs) -> list[MaskTarget]:
    """The maskable matrices of ``model``, sorted by layer then role order (see :func:`discover`)."""
    return discover(model, model_type, **kwargs).targets


def parse_target_modules(spec: str) -> list[tuple[re.Pattern, str, str]]:
    """``REGEX[=ROLE],...`` -> (pattern, text, role or ''); a name matches a pattern as PEFT does:
    the whole name, or its last dotted components, equal the text, or the whole name matches the regex."""
    items = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        text, _, role = part.partition("=")
        text, role = text.strip(), role.strip()
        if role and role not in ALL_ROLES:
            raise ConfigError(
                f"--target-modules {part!r}: role {role!r} is not known; use one of {', '.join(ALL_ROLES)}"
            )
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigError(f"--target-modules {part!r}: not a regular expression ({exc})") from None
        items.append((pattern, text, role))
    if not items:
        raise ConfigError("--target-modules is empty; give REGEX[=ROLE],... e.g. 'q_proj=q,v_proj=v'")
    return items


def _override_role(overrides: list[tuple[re.Pattern, str, str]], name: str) -> str | None:
    """The role the first matching override gives ``name`` ('' = discover it), None if none matches."""
    for pattern, text, role in overrides:
        if name == text or name.endswith("." + text) or pattern.fullmatch(name):
            return role
    return None


def _targets_for(name: str, module: nn.Module, layer: int, spec, config) -> list[MaskTarget]:
    shape = out_in_shape(module)
    if not callable(spec):
        return [MaskTarget(name, spec, layer, shape)]
    slices = spec(shape[0], config)
    out = []
    for label, role, rows in slices:
        n = sum(b - a for a, b in rows)
        out.append(MaskTarget(f"{name}[{label}]", role, layer, (n, shape[1]), name, tuple(rows)))
    covered = sorted(r for _, _, rows in slices for r in rows)
    if covered[0][0] != 0 or covered[-1][1] != shape[0] or any(a[1] != b[0] for a, b in zip(covered, covered[1:])):
        raise SubprobeError(f"{name}: the role slices do not cover its {shape[0]} rows exactly (a bug)")
    return out


def _in_blocks(name: str, path: str) -> bool:
    return bool(re.match(rf"{re.escape(path)}\.\d+\.", name)) if path else bool(re.match(r"\d+\.", name))


def _weights(module: nn.Module) -> int:
    return int(module.weight.numel())


def _describe_missing(missing: dict[int, list[str]]) -> str:
    """``layers 0-11 have no k, v`` style text, grouped by the missing roles."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for layer, roles in missing.items():
        groups.setdefault(tuple(roles), []).append(layer)
    parts = []
    for roles, layers in groups.items():
        span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"
        if len(layers) > 1 and layers != list(range(layers[0], layers[-1] + 1)):
            span = "layers " + ",".join(map(str, layers))
        parts.append(f"{span} {'has' if len(layers) == 1 else 'have'} no {', '.join(roles)}")
    return "; ".join(parts)
