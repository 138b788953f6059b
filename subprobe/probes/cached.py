"""Features of a frozen encoder computed once per sentence and looked up afterwards."""

from __future__ import annotations

import torch
from torch import nn

from subprobe.data.batching import Batch, Dataset, bucketed_batches, collate
from subprobe.device import module_device


class CachedFeatures(nn.Module):
    """Word features from a cache filled by :meth:`fill`; falls back to nothing (must be filled).

    Entries are keyed by the sentence's subword ids, so any split can be looked up and identical
    sentences share one entry. Features are computed in eval mode (no encoder dropout).
    """

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.source = features
        self.cache: dict[bytes, torch.Tensor] = {}

    @torch.no_grad()
    def fill(self, dataset: Dataset, pooling: str, pad_id: int, batch_size: int = 64) -> None:
        """Run the encoder once over ``dataset`` and store every sentence's [1+n, d] features."""
        was_training = self.source.training
        self.source.eval()
        device = module_device(self.source)
        for indices in bucketed_batches(dataset.encoded, batch_size, shuffle=False):
            batch = collate(dataset.encoded, indices, pooling, pad_id).to(device)
            feats = self.source(batch).float()
            for b, idx in enumerate(indices):
                e = dataset.encoded[idx]
                key = e.input_ids.tobytes()
                if key not in self.cache:
                    self.cache[key] = feats[b, : e.n_words + 1].clone()
        self.source.train(was_training)

    def forward(self, batch: Batch) -> torch.Tensor:
        lengths = batch.attention_mask.sum(1).tolist()
        ids = batch.input_ids.cpu()  # cache keys are the subword ids (the features stay on the device)
        rows = [self.cache[ids[b, :n].numpy().tobytes()] for b, n in enumerate(lengths)]
        padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        width = batch.word_index.shape[1]
        if padded.shape[1] < width:
            padded = nn.functional.pad(padded, (0, 0, 0, width - padded.shape[1]))
        return padded
