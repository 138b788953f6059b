"""Which attention kernel the frozen encoder uses, per device and precision, and a faster eager one.

``attention_for(device_type, precision)`` returns the Hugging Face ``attn_implementation`` to load
an encoder with for masked training. The CPU rows were measured with ``benchmarks/train_speed.py``
(training variants ``fp32``/``bf16`` against ``fp32_sdpa``/``bf16_sdpa``, interleaved in one run,
and an interleaved A/B of the same step): eager attention is faster than PyTorch's ``sdpa`` on this
CPU at both precisions (``sdpa``'s bf16 backward is slow, and with dropout active ``sdpa`` falls
back to its unfused math path). The CUDA rows are the usual choice, not measured here.

``subprobe_eager`` computes what the eager attention of BERT-family models computes,
``dropout(softmax(Q K^T * scaling + mask)) V``, with two changes that only affect speed: the scale
and the padding mask are applied in one ``torch.add`` (in bf16 the sum is rounded once instead of
twice), and the attention-probability dropout uses :func:`subprobe.models.dropout.fast_dropout`.
:func:`use_fast_eager` switches only the model types listed in ``FAST_EAGER_MODEL_TYPES``.
"""

from __future__ import annotations

import torch
from torch import nn

from subprobe.models.dropout import fast_dropout

FAST_EAGER = "subprobe_eager"
#: model types whose eager attention is exactly softmax(Q K^T * scaling + mask) -> dropout -> V (no GQA,
#: soft-capping or sinks), so that ``subprobe_eager`` computes the same function
FAST_EAGER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert")

#: (device type, precision) -> attn_implementation for masked training; measured, see the module doc.
ATTENTION_CHOICE: dict[tuple[str, str], str] = {
    ("cpu", "fp32"): "eager",
    ("cpu", "bf16"): "eager",
    ("cuda", "fp32"): "sdpa",
    ("cuda", "bf16"): "sdpa",
}


def attention_for(device_type: str, precision: str | None) -> str:
    """The attention implementation to load the encoder with (``eager`` where nothing was measured)."""
    return ATTENTION_CHOICE.get((device_type, precision or "fp32"), "eager")


def fast_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Eager attention: softmax(Q K^T * scaling + mask) V, with a cheap CPU dropout on the probabilities."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3))
    if attention_mask is not None:
        scores = torch.add(attention_mask, scores, alpha=scaling)  # mask + scaling * scores, one pass
    else:
        scores = scores * scaling
    weights = nn.functional.softmax(scores, dim=-1)
    weights = fast_dropout(weights, dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


_registered = False


def register_fast_eager() -> str:
    """Register ``subprobe_eager`` with transformers (idempotent); returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(FAST_EAGER, fast_eager_attention)
        AttentionMaskInterface.register(FAST_EAGER, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
        _registered = True
    return FAST_EAGER


def use_fast_eager(model: nn.Module) -> bool:
    """Switch a BERT-family model loaded with ``eager`` attention to ``subprobe_eager``; True if switched."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "eager":
        return False
    if getattr(config, "model_type", None) not in FAST_EAGER_MODEL_TYPES:
        return False
    register_fast_eager()
    config._attn_implementation = FAST_EAGER
    for sub in model.modules():  # sub-configs of composite models share the object in BERT-style models
        sub_config = getattr(sub, "config", None)
        if sub_config is not None and sub_config is not config and sub_config._attn_implementation == "eager":
            sub_config._attn_implementation = FAST_EAGER
    return True
