"""Features of a frozen encoder computed once per sentence and looked up afterwards."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from subprobe.data.batching import INFERENCE_MAX_TOKENS, Batch, Dataset, collate, token_batches
from subprobe.device import module_device


class FeatureStore:
    """Every cached sentence's ``[1+n, d]`` word features, packed into one tensor.

    Row 0 of :attr:`packed` is zeros (what padding slots read); a sentence's rows follow at ``offset``.
    ``rows`` maps a sentence's key (its subword ids) to ``(offset, 1+n)``. The rows are stored in bfloat16
    when every feature value is a bfloat16 number (a bf16 encoder with first/last pooling), else in float32:
    lookups give back exactly the features that were stored.
    """

    def __init__(self) -> None:
        self.rows: dict[bytes, tuple[int, int]] = {}
        self.packed: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: bytes) -> bool:
        return key in self.rows

    def add(self, keys: list[bytes], chunks: list[torch.Tensor]) -> None:
        """Append the rows of new sentences (``chunks[i]`` holds ``keys[i]``'s rows)."""
        if not chunks:
            return
        parts = ([self.packed] if self.packed is not None else []) + chunks
        if self.packed is None:
            parts.insert(0, chunks[0].new_zeros(1, chunks[0].shape[-1]))
        dtype = torch.bfloat16 if all(_bf16_exact(c) for c in parts) else torch.float32
        offset = 1 if self.packed is None else self.packed.shape[0]
        for key, chunk in zip(keys, chunks):
            self.rows[key] = (offset, chunk.shape[0])
            offset += chunk.shape[0]
        self.packed = torch.cat([c.to(dtype) for c in parts])

    def lookup(self, keys: list[bytes], width: int) -> torch.Tensor:
        """Features ``[len(keys), width, d]`` (float32), zeros after each sentence's rows: one gather."""
        where = self._where(keys)
        slots = np.arange(width)
        index = np.where(slots < where[:, 1:], where[:, :1] + slots, 0)  # row 0 = zeros
        return self._gather(index.reshape(-1)).view(len(keys), width, -1)

    def lookup_words(self, keys: list[bytes]) -> torch.Tensor:
        """The real words' features ``[N, d]`` (float32) of these sentences, in order, without row 0 (the
        [CLS] slot) of each: what :meth:`lookup` holds at the word positions, packed."""
        where = self._where(keys)
        words = where[:, 1] - 1
        starts = np.repeat(where[:, 0] + 1 - np.cumsum(words) + words, words)  # each word row: its sentence's
        return self._gather(starts + np.arange(int(words.sum())))  # first word row + its rank in the batch

    def _where(self, keys: list[bytes]) -> np.ndarray:
        """``(offset, 1+n)`` of each key's rows, as an ``[len(keys), 2]`` array."""
        if self.packed is None:
            raise KeyError("the feature cache is empty: call CachedFeatures.fill first")
        return np.array([self.rows[k] for k in keys], dtype=np.int64).reshape(-1, 2)

    def _gather(self, index: np.ndarray) -> torch.Tensor:
        return self.packed.index_select(0, torch.from_numpy(index).to(self.packed.device)).float()


def _bf16_exact(x: torch.Tensor) -> bool:
    return x.dtype == torch.bfloat16 or torch.equal(x.to(torch.bfloat16).to(x.dtype), x)


class CachedFeatures(nn.Module):
    """Word features from a cache filled by :meth:`fill`; falls back to nothing (must be filled).

    Entries are keyed by the sentence's subword ids and word positions (:meth:`_keys`), so any split can be
    looked up and identical sentences share one entry. Features are computed in eval mode (no encoder dropout).
    The cache is one packed tensor (:class:`FeatureStore`); a batch reads it with one ``index_select``.
    """

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.source = features
        self.cache = FeatureStore()

    @torch.no_grad()
    def fill(self, dataset: Dataset, pooling: str, pad_id: int, max_tokens: int = INFERENCE_MAX_TOKENS) -> None:
        """Run the encoder once over ``dataset`` and store every new sentence's [1+n, d] features."""
        was_training = self.source.training
        self.source.eval()
        device = module_device(self.source)
        keys: list[bytes] = []
        chunks: list[torch.Tensor] = []
        seen: set[bytes] = set()
        for indices in token_batches(dataset.encoded, max_tokens):
            batch = collate(dataset.encoded, indices, pooling, pad_id)
            todo = []
            for b, key in enumerate(self._keys(batch)):
                if key not in self.cache and key not in seen:
                    seen.add(key)
                    todo.append((b, indices[b], key))
            if not todo:
                continue
            feats = self.source(batch.to(device)).float()
            if _bf16_exact(feats):  # a bf16 encoder's features: keep half the memory until packed
                feats = feats.to(torch.bfloat16)
            for b, idx, key in todo:
                keys.append(key)
                chunks.append(feats[b, : dataset.encoded[idx].n_words + 1])
        self.cache.add(keys, chunks)
        self.source.train(was_training)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.cache.lookup(self._keys(batch), batch.word_index.shape[1])

    def words(self, batch: Batch) -> torch.Tensor:
        """``forward(batch)[batch.word_mask]`` (the real words' features ``[N, d]``), read directly."""
        return self.cache.lookup_words(self._keys(batch))

    @staticmethod
    def _keys(batch: Batch) -> list[bytes]:
        """Each sentence's cache key: its subword ids and the subword each word is read from. The ids alone do
        not say how they split into words (``U.S.`` and ``U. S.``, ``dog.`` and ``dog .`` have the same
        subwords), and two such sentences have different word features."""
        lengths = batch.attention_mask.sum(1).tolist()
        words = batch.word_mask.sum(1).tolist()
        ids = batch.input_ids.cpu().numpy()  # the keys live on the CPU (the features stay on the device)
        where = batch.word_index.cpu().numpy()
        return [ids[b, :n].tobytes() + b"|" + where[b, : 1 + w].tobytes()
                for b, (n, w) in enumerate(zip(lengths, words))]
