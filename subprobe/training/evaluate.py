"""Batched, length-sorted evaluation of a probe on one split."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.data.batching import INFERENCE_MAX_TOKENS, Dataset, collate, token_batches
from subprobe.device import module_device
from subprobe.masking.layouts import expand_mask
from subprobe.masking.masked_linear import MaskedLinear
from subprobe.masking.subnetwork import set_mask_mode
from subprobe.tasks.base import Task

#: Most bytes of masked weights :func:`materialised_masks` holds at once (the rest keep their own forward).
MATERIALISE_MAX_BYTES = 2 << 30


@contextmanager
def materialised_masks(model: nn.Module, max_bytes: int | None = None) -> Iterator[int]:
    """While inside, every :class:`MaskedLinear` of ``model`` with a deterministic mask (eval: ``soft``,
    ``hard`` or ``none``) runs as one ``F.linear`` on ``W * M`` computed here once, instead of forming the
    mask and the masked product at every forward. Yields how many modules it froze; their own forward
    comes back on exit. Masks drawn at random (``sample``) are left alone, and so are the modules past
    ``max_bytes`` (default :data:`MATERIALISE_MAX_BYTES`) of masked-weight copies.
    """
    budget = MATERIALISE_MAX_BYTES if max_bytes is None else max_bytes
    frozen: list[MaskedLinear] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if not isinstance(module, MaskedLinear):
                    continue
                mode = module.mask_mode or ("sample" if module.training else "soft")
                if mode == "sample":
                    continue
                mask = module.current_mask()
                weight = module.weight
                if mask is not None:
                    size = weight.numel() * weight.element_size()
                    if size > budget:
                        continue
                    budget -= size
                    weight = weight * expand_mask(mask, module.block, module.layout).to(weight.dtype)
                bias = None if module.bias is None else module.bias.to(weight.dtype)
                module.forward = partial(F.linear, weight=weight, bias=bias)
                frozen.append(module)
        yield len(frozen)
    finally:
        for module in frozen:
            del module.forward


@torch.inference_mode()
def predict_dataset(
    model,
    task: Task,
    dataset: Dataset,
    *,
    pooling: str,
    pad_id: int,
    mask_mode: str | None = None,
    max_tokens: int = INFERENCE_MAX_TOKENS,
) -> dict[int, dict[str, np.ndarray]]:
    """Predictions per sentence index: field -> per-word label ids.

    Batches hold up to ``max_tokens`` padded subwords, sentences sorted by length. Runs in eval mode under
    ``torch.inference_mode`` with the masks of the evaluation (``mask_mode``)
    multiplied into the weights once (:func:`materialised_masks`); the model's training mode and mask
    modes are restored afterwards."""
    predictions: dict[int, dict[str, np.ndarray]] = {}

    def visit(batch, output, indices) -> None:
        fields = {k: v.cpu().numpy() for k, v in task.predict(model.head, output, batch).items()}
        for b, (sid, idx) in enumerate(zip(batch.sentence_ids, indices)):
            n = dataset.encoded[idx].n_words
            predictions[sid] = {k: v[b, 1 : n + 1] for k, v in fields.items()}

    _each_batch(model, dataset, visit, pooling=pooling, pad_id=pad_id, mask_mode=mask_mode, max_tokens=max_tokens)
    return predictions


@torch.inference_mode()
def codelengths(
    model,
    task: Task,
    dataset: Dataset,
    *,
    pooling: str,
    pad_id: int,
    mask_mode: str | None = None,
    max_tokens: int = INFERENCE_MAX_TOKENS,
) -> dict[int, float]:
    """Bits per sentence index to transmit its gold labels with the probe's distribution (:meth:`Task.codelength`),
    evaluated as :func:`predict_dataset` predicts."""
    bits: dict[int, float] = {}

    def visit(batch, output, indices) -> None:
        per_sentence = task.codelength(model.head, output, batch).double().sum(dim=1).cpu().tolist()
        for sid, value in zip(batch.sentence_ids, per_sentence):
            bits[sid] = value

    _each_batch(model, dataset, visit, pooling=pooling, pad_id=pad_id, mask_mode=mask_mode, max_tokens=max_tokens)
    return bits


def _each_batch(model, dataset: Dataset, visit, *, pooling: str, pad_id: int, mask_mode: str | None,
                max_tokens: int) -> None:
    """``visit(batch, output, indices)`` for every evaluation batch of ``dataset`` (see :func:`predict_dataset`)."""
    was_training = model.training
    modes = [(m, m.mask_mode) for m in model.modules() if isinstance(m, MaskedLinear)]
    model.eval()
    set_mask_mode(model, mask_mode)
    device = module_device(model)
    try:
        with materialised_masks(model):
            for indices in token_batches(dataset.encoded, max_tokens):
                batch = collate(dataset.encoded, indices, pooling, pad_id).to(device)
                visit(batch, model(batch), indices)
    finally:
        for module, mode in modes:
            module.mask_mode = mode
        model.train(was_training)


def evaluate(model, task: Task, dataset: Dataset, vocabs, **kwargs) -> tuple[dict[str, float], dict]:
    """Metrics and predictions of ``model`` on ``dataset``."""
    predictions = predict_dataset(model, task, dataset, **kwargs)
    return task.metrics(dataset, predictions, vocabs), predictions
