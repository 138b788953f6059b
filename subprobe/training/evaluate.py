"""Batched, length-sorted evaluation of a probe on one split."""

from __future__ import annotations

import numpy as np
import torch

from subprobe.data.batching import Dataset, bucketed_batches, collate
from subprobe.device import module_device
from subprobe.masking.subnetwork import set_mask_mode
from subprobe.tasks.base import Task


@torch.no_grad()
def predict_dataset(
    model,
    task: Task,
    dataset: Dataset,
    *,
    pooling: str,
    pad_id: int,
    mask_mode: str | None = None,
    batch_size: int = 64,
) -> dict[int, dict[str, np.ndarray]]:
    """Predictions per sentence index: field -> per-word label ids."""
    was_training = model.training
    model.eval()
    set_mask_mode(model, mask_mode)
    predictions: dict[int, dict[str, np.ndarray]] = {}
    device = module_device(model)
    try:
        for indices in bucketed_batches(dataset.encoded, batch_size, shuffle=False):
            batch = collate(dataset.encoded, indices, pooling, pad_id).to(device)
            output = model(batch)
            fields = {k: v.cpu().numpy() for k, v in task.predict(model.head, output, batch).items()}
            for b, (sid, idx) in enumerate(zip(batch.sentence_ids, indices)):
                n = dataset.encoded[idx].n_words
                predictions[sid] = {k: v[b, 1 : n + 1] for k, v in fields.items()}
    finally:
        set_mask_mode(model, None)
        model.train(was_training)
    return predictions


def evaluate(model, task: Task, dataset: Dataset, vocabs, **kwargs) -> tuple[dict[str, float], dict]:
    """Metrics and predictions of ``model`` on ``dataset``."""
    predictions = predict_dataset(model, task, dataset, **kwargs)
    return task.metrics(dataset, predictions, vocabs), predictions
