"""Find the Linear layers to mask (Q, K, V, attention output, FFN-in, FFN-out) from module names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from subprobe.errors import SubprobeError

ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")

#: Per family: regular expressions on module names, ending in the role's group. ``(\d+)`` is the layer.
FAMILY_PATTERNS: dict[str, dict[str, str]] = {
    "bert": {
        "q": r"layer\.(\d+)\.attention\.self\.query$",
        "k": r"layer\.(\d+)\.attention\.self\.key$",
        "v": r"layer\.(\d+)\.attention\.self\.value$",
        "o": r"layer\.(\d+)\.attention\.output\.dense$",
        "ffn_in": r"layer\.(\d+)\.intermediate\.dense$",
        "ffn_out": r"layer\.(\d+)\.output\.dense$",
    },
    "distilbert": {
        "q": r"layer\.(\d+)\.attention\.q_lin$",
        "k": r"layer\.(\d+)\.attention\.k_lin$",
        "v": r"layer\.(\d+)\.attention\.v_lin$",
        "o": r"layer\.(\d+)\.attention\.out_lin$",
        "ffn_in": r"layer\.(\d+)\.ffn\.lin1$",
        "ffn_out": r"layer\.(\d+)\.ffn\.lin2$",
    },
    "llama": {
        "q": r"layers\.(\d+)\.self_attn\.q_proj$",
        "k": r"layers\.(\d+)\.self_attn\.k_proj$",
        "v": r"layers\.(\d+)\.self_attn\.v_proj$",
        "o": r"layers\.(\d+)\.self_attn\.o_proj$",
        "ffn_in": r"layers\.(\d+)\.mlp\.(?:gate_proj|up_proj)$",
        "ffn_out": r"layers\.(\d+)\.mlp\.down_proj$",
    },
}
#: model_type -> family of patterns (BERT-style encoders share module names).
MODEL_TYPE_FAMILY = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "camembert": "bert",
    "distilbert": "distilbert",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
}


@dataclass(frozen=True)
class MaskTarget:
    """One Linear layer to mask."""

    name: str
    role: str
    layer: int
    shape: tuple[int, int]  # (out_features, in_features)


def find_targets(model: nn.Module, model_type: str = "") -> list[MaskTarget]:
    """The maskable Linear layers of ``model``, sorted by layer then role order."""
    family = MODEL_TYPE_FAMILY.get(model_type)
    families = [family] if family else list(FAMILY_PATTERNS)
    for fam in families:
        compiled = {role: re.compile(p) for role, p in FAMILY_PATTERNS[fam].items()}
        found: list[MaskTarget] = []
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            for role, pattern in compiled.items():
                match = pattern.search(name)
                if match:
                    found.append(MaskTarget(name, role, int(match.group(1)), tuple(module.weight.shape)))
                    break
        if found:
            order = {r: i for i, r in enumerate(ROLES)}
            return sorted(found, key=lambda t: (t.layer, order[t.role], t.name))
    raise SubprobeError(
        f"could not find maskable Linear layers in this model (model_type {model_type or 'unknown'!r}); "
        f"supported families: {', '.join(sorted(MODEL_TYPE_FAMILY))}; use a model of one of these families "
        "(or add its module names to FAMILY_PATTERNS in subprobe/models/targets.py)"
    )
