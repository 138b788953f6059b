"""Where each model family keeps its projection matrices, and how fused matrices split into roles.

A family maps the name of a module *inside one block* (relative to the block, e.g.
``attention.self.query``) to a role, or to a :data:`Split` for a fused matrix. Row ranges always
refer to the matrix in ``out x in`` orientation (GPT-2's ``Conv1D`` stores ``in x out``; it is
transposed before slicing). Facts from the transformers source (see docs/MODEL_FAMILIES.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")
#: ``other``: a projection inside a block whose role could not be told from its name.
ALL_ROLES = (*ROLES, "other")

#: A row range [start, stop) of an ``out x in`` matrix.
Rows = tuple[tuple[int, int], ...]
#: (label, role, rows) for each slice of a fused matrix.
Slices = list[tuple[str, str, Rows]]
#: (out_features, model config) -> slices.
Split = Callable[[int, object], Slices]


def _heads(config) -> tuple[int, int, int]:
    """(query heads, key/value heads, head size) of ``config``."""
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0))
    kv = int(getattr(config, "num_key_value_heads", 0) or heads)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
    head_dim = int(getattr(config, "head_dim", 0) or hidden // heads)
    return heads, kv, head_dim


def qkv_thirds(out: int, config) -> Slices:
    """Contiguous ``[q | k | v]``, each a third (GPT-2 ``c_attn``, ModernBERT ``Wqkv``)."""
    d = out // 3
    return [("q", "q", ((0, d),)), ("k", "k", ((d, 2 * d),)), ("v", "v", ((2 * d, out),))]


def qkv_gqa(out: int, config) -> Slices:
    """Contiguous ``[q | k | v]`` with grouped-query sizes (Phi-3 ``qkv_proj``)."""
    heads, kv, hd = _heads(config)
    q, k = heads * hd, kv * hd
    return [("q", "q", ((0, q),)), ("k", "k", ((q, q + k),)), ("v", "v", ((q + k, out),))]


def qkv_per_head(out: int, config) -> Slices:
    """Rows interleaved per head ``[h0: q k v][h1: q k v]...`` (GPT-NeoX / Pythia ``query_key_value``)."""
    heads, _, _ = _heads(config)
    size = out // (3 * heads)
    slices = []
    for i, role in enumerate(("q", "k", "v")):
        rows = tuple((h * 3 * size + i * size, h * 3 * size + (i + 1) * size) for h in range(heads))
        slices.append((role, role, rows))
    return slices


def halves(first: str, second: str) -> Split:
    """Contiguous ``[first | second]`` halves, both FFN-in (Phi-3 ``gate_up_proj``, ModernBERT ``Wi``)."""

    def split(out: int, config) -> Slices:
        return [(first, "ffn_in", ((0, out // 2),)), (second, "ffn_in", ((out // 2, out),))]

    return split


_BERT = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
}
_LLAMA = {
    "self_attn.q_proj": "q",
    "self_attn.k_proj": "k",
    "self_attn.v_proj": "v",
    "self_attn.o_proj": "o",
    "mlp.gate_proj": "ffn_in",
    "mlp.up_proj": "ffn_in",
    "mlp.down_proj": "ffn_out",
}

#: family -> {module name inside a block: role or split}
FAMILY_PATTERNS: dict[str, dict[str, str | Split]] = {
    "bert": _BERT,
    "distilbert": {
        "attention.q_lin": "q",
        "attention.k_lin": "k",
        "attention.v_lin": "v",
        "attention.out_lin": "o",
        "ffn.lin1": "ffn_in",
        "ffn.lin2": "ffn_out",
    },
    "deberta-v2": {
        "attention.self.query_proj": "q",
        "attention.self.key_proj": "k",
        "attention.self.value_proj": "v",
        "attention.self.pos_query_proj": "q",  # relative-position projections (share_att_key=False)
        "attention.self.pos_key_proj": "k",
        "attention.output.dense": "o",
        "intermediate.dense": "ffn_in",
        "output.dense": "ffn_out",
    },
    "modernbert": {
        "attn.Wqkv": qkv_thirds,
        "attn.Wo": "o",
        "mlp.Wi": halves("input", "gate"),
        "mlp.Wo": "ffn_out",
    },
    "gpt2": {"attn.c_attn": qkv_thirds, "attn.c_proj": "o", "mlp.c_fc": "ffn_in", "mlp.c_proj": "ffn_out"},
    "gpt_neox": {
        "attention.query_key_value": qkv_per_head,
        "attention.dense": "o",
        "mlp.dense_h_to_4h": "ffn_in",
        "mlp.dense_4h_to_h": "ffn_out",
    },
    "opt": {
        "self_attn.q_proj": "q",
        "self_attn.k_proj": "k",
        "self_attn.v_proj": "v",
        "self_attn.out_proj": "o",
        "fc1": "ffn_in",
        "fc2": "ffn_out",
    },
    "llama": _LLAMA,
    "phi3": {
        "self_attn.qkv_proj": qkv_gqa,
        "self_attn.o_proj": "o",
        "mlp.gate_up_proj": halves("gate", "up"),
        "mlp.down_proj": "ffn_out",
    },
}

#: model_type -> family (every entry has a parity test in tests/test_families.py).
MODEL_TYPE_FAMILY = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "camembert": "bert",
    "distilbert": "distilbert",
    "deberta-v2": "deberta-v2",
    "modernbert": "modernbert",
    "gpt2": "gpt2",
    "gpt_neox": "gpt_neox",
    "opt": "opt",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "gemma": "llama",
    "phi3": "phi3",
}

#: Roles guessed from names for a family that is not known (first match wins; q/k/v before o before FFN).
GENERIC_ROLES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        ("q", r"(^|\.)(q|query|q_proj|q_lin|wq|query_proj|to_q)$"),
        ("k", r"(^|\.)(k|key|k_proj|k_lin|wk|key_proj|to_k)$"),
        ("v", r"(^|\.)(v|value|v_proj|v_lin|wv|value_proj|to_v)$"),
        ("o", r"(attn|attention)[^.]*\.(.+\.)?(o|o_proj|out_proj|out_lin|wo|dense|c_proj|proj|to_out)$"),
        ("ffn_in", r"(^|\.)(fc1|fc_in|up_proj|gate_proj|w1|w3|c_fc|lin1|wi|wi_0|wi_1|dense_h_to_4h)$"),
        ("ffn_in", r"(^|\.)intermediate\.dense$"),
        ("ffn_out", r"(^|\.)(fc2|fc_out|down_proj|w2|lin2|wo|dense_4h_to_h|output\.dense|c_proj)$"),
    )
)


def generic_role(relative: str) -> str:
    """The role a module name inside a block suggests, or ``other``."""
    for role, pattern in GENERIC_ROLES:
        if pattern.search(relative):
            return role
    return "other"


def is_projection(module: nn.Module) -> bool:
    """A Linear layer or a GPT-2 style ``Conv1D`` (weight stored ``in x out``)."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def out_in_shape(module: nn.Module) -> tuple[int, int]:
    """The weight's shape as ``(out_features, in_features)`` whatever the storage."""
    rows, cols = module.weight.shape
    return (cols, rows) if is_conv1d(module) else (rows, cols)
