"""Per-sentence sufficient statistics: the one representation every task metric is computed from.

Every metric subprobe reports is a function of column sums over sentences of a few per-sentence numbers:
a ratio of counts (token accuracy = correct words / words; entity F1 from correct, predicted and gold
chunk counts; LAS = words with the right head and relation / words) or a sentence-macro mean (the sum of
per-sentence values / the number of non-empty sentences). A task therefore scores a split in two steps:
``statistics`` (one row per sentence) and ``score`` (the metrics of the column sums). The metric of any
multiset of sentences -- a bootstrap resample, where sentence ``i`` is drawn ``c_i`` times -- is the same
``score`` of the weighted sums ``c @ values``: :mod:`subprobe.metrics.bootstrap` resamples sentences and
recomputes the task's own metric with one matrix product, never by averaging per-sentence scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SentenceStats", "per_sentence", "ratio"]


@dataclass(frozen=True)
class SentenceStats:
    """``values[i, j]`` is statistic ``names[j]`` of sentence ``i``; ``ids[i]`` is that sentence's index in its
    split (two systems' statistics pair up sentence by sentence only when their ``ids`` are equal)."""

    names: tuple[str, ...]
    values: np.ndarray  # [n, k] float64
    ids: np.ndarray  # [n] int64

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64).reshape(len(self.ids), len(self.names))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=np.int64))

    @property
    def n(self) -> int:
        """Number of sentences."""
        return len(self.ids)

    def totals(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Column sums by name: over every sentence once (0-d arrays), or for each row of ``weights`` (``[R, n]``:
        how often each sentence counts in each of R resamples; ``[R]`` arrays)."""
        sums = self.values.sum(axis=0) if weights is None else np.asarray(weights, dtype=np.float64) @ self.values
        return {name: sums[..., j] for j, name in enumerate(self.names)}

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[float] | np.ndarray], ids: Sequence[int]) -> SentenceStats:
        """Statistics from one array per name (each of length ``len(ids)``)."""
        names = tuple(columns)
        values = np.stack([np.asarray(columns[k], dtype=np.float64) for k in names], axis=1) if names else \
            np.zeros((len(ids), 0))
        return cls(names, values, np.asarray(ids, dtype=np.int64))

    @classmethod
    def join(cls, parts: Mapping[str, SentenceStats]) -> SentenceStats:
        """One table from several over the same sentences; each part's names get its key as a prefix."""
        parts = dict(parts)
        first = next(iter(parts.values()))
        for prefix, part in parts.items():
            if not np.array_equal(part.ids, first.ids):
                raise ValueError(f"SentenceStats.join: part {prefix!r} covers other sentences")
        names = tuple(f"{prefix}{name}" for prefix, part in parts.items() for name in part.names)
        return cls(names, np.concatenate([p.values for p in parts.values()], axis=1), first.ids)

    def select(self, prefix: str) -> dict[str, int]:
        """Column indices of the names starting with ``prefix``, by name without it."""
        return {name[len(prefix):]: j for j, name in enumerate(self.names) if name.startswith(prefix)}


def ratio(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` elementwise, 0.0 where the denominator is 0 (every metric's convention)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, 0.0)


def per_sentence(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sums of the concatenated per-word ``values`` over each sentence (``lengths`` words each; 0 for empty ones)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    return np.bincount(owner, weights=np.asarray(values, dtype=np.float64), minlength=len(lengths))
