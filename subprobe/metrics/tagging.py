"""Token accuracy, micro (standard) and sentence-macro (the paper's average), from per-sentence counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from subprobe.metrics.statistics import SentenceStats, per_sentence, ratio

__all__ = ["accuracy", "accuracy_scores", "accuracy_statistics"]


def accuracy_statistics(gold: Sequence[np.ndarray], pred: Sequence[np.ndarray],
                        ids: Sequence[int] | None = None) -> SentenceStats:
    """Per sentence: ``words``, ``correct`` words, ``sentences`` (1 if it has words) and ``macro`` (its accuracy,
    0 for an empty sentence); ``ids`` default to 0..n-1."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    lengths = np.array([len(g) for g in gold], dtype=np.int64)
    if any(len(p) != n for p, n in zip(pred, lengths)):
        raise ValueError("gold and predicted lists differ in length")
    flat = (np.concatenate([np.asarray(g) for g in gold]) == np.concatenate([np.asarray(p) for p in pred])) \
        if lengths.sum() else np.zeros(0)
    correct = per_sentence(flat, lengths)
    return SentenceStats.from_columns(
        {"words": lengths, "correct": correct, "sentences": lengths > 0, "macro": ratio(correct, lengths)},
        range(len(gold)) if ids is None else ids,
    )


def accuracy_scores(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``accuracy`` (correct / words) and ``accuracy_macro`` (mean accuracy of the non-empty sentences) of the
    column sums of :func:`accuracy_statistics` (scalars, or one value per bootstrap resample)."""
    return {
        "accuracy": ratio(totals["correct"], totals["words"]),
        "accuracy_macro": ratio(totals["macro"], totals["sentences"]),
    }


def accuracy(gold: list[np.ndarray], pred: list[np.ndarray]) -> dict[str, float]:
    """``accuracy`` over all words and ``accuracy_macro`` = mean of per-sentence accuracies."""
    scores = accuracy_scores(accuracy_statistics(gold, pred).totals())
    return {k: float(v) for k, v in scores.items()}
