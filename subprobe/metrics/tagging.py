"""Token accuracy, micro (standard) and sentence-macro (the paper's average)."""

from __future__ import annotations

import numpy as np


def accuracy(gold: list[np.ndarray], pred: list[np.ndarray]) -> dict[str, float]:
    """``accuracy`` over all words and ``accuracy_macro`` = mean of per-sentence accuracies."""
    correct = [int((g == p).sum()) for g, p in zip(gold, pred)]
    sizes = [len(g) for g in gold]
    total = sum(sizes)
    nonempty = [c / n for c, n in zip(correct, sizes) if n]
    return {
        "accuracy": sum(correct) / total if total else 0.0,
        "accuracy_macro": float(np.mean(nonempty)) if nonempty else 0.0,
    }
