"""Paired tests of the report's claims across runs, from the runs' saved per-sentence statistics.

Every run writes ``sentence-stats.npz`` (:meth:`subprobe.runs.RunDir.write_sentence_stats`): the per-sentence
counts behind each score. Runs scored on the same sentences are resampled together
(:func:`subprobe.metrics.bootstrap.resample_counts`, 1,000 resamples, seed 0) and each claim's margin is
recomputed in every resample with the task's own metric; a group of runs (seeds of one point) counts as the
mean of its runs' values in that resample. The p-value of a claim is the share of resamples in which it fails
(:func:`subprobe.metrics.bootstrap.claim_p_value`). A test is None when a run has no statistics or the runs were
scored on different sentences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from subprobe.metrics import bootstrap
from subprobe.runs import RunDir

#: What a claim's p-value is, for table notes and the claims file.
TEST = (f"paired bootstrap over the split's sentences ({bootstrap.RESAMPLES:,} resamples, seed {bootstrap.SEED}): "
        "every run is rescored on the same resampled sentences with the task's own metric (seeds of a point: their "
        "mean); p = (1 + resamples in which the claim fails) / (resamples + 1)")

_CACHE: dict[tuple[str, int], dict] = {}


def run_statistics(run_dir: str | Path) -> dict:
    """The saved per-sentence statistics of a run ({} when it has none); read once per file version."""
    run = RunDir(run_dir)
    path = run.sentence_stats_path
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    key = (str(path.resolve()), stamp)
    if key not in _CACHE:
        _CACHE[key] = run.read_sentence_stats()
    return _CACHE[key]


#: A run (metrics.json with ``run_dir``) -> where its value is: scores key (``dev``, ``dev_soft``, ...) and metric.
Source = Callable[[dict], tuple[str, str]]


class Resampler:
    """Resampled values of runs scored on one set of sentences: ``values(runs)`` is ``[R]``, the mean over the
    runs of each resample's metric (None when a run lacks statistics or covers other sentences)."""

    def __init__(self, source: Source, resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED) -> None:
        self.source, self.resamples, self.seed = source, resamples, seed
        self.ids: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self._score_of: dict[str, Callable] = {}

    def values(self, runs: Sequence[dict]) -> np.ndarray | None:
        if not runs:
            return None
        total = np.zeros(self.resamples)
        for run in runs:
            one = self._one(run)
            if one is None:
                return None
            total += one
        return total / len(runs)

    def _one(self, run: dict) -> np.ndarray | None:
        key, metric = self.source(run)
        stats = run_statistics(run.get("run_dir", "")).get(key)
        if stats is None or stats.n == 0:
            return None
        if self.ids is None:
            self.ids = stats.ids
            self.counts = bootstrap.resample_counts(stats.n, self.resamples, self.seed)
        elif not np.array_equal(self.ids, stats.ids):
            return None  # scored on other sentences: no pairing
        scores = bootstrap.resampled_scores(stats, self._scorer(run["task"]), self.counts)
        return scores.get(metric)

    def _scorer(self, task: str) -> Callable:
        if task not in self._score_of:
            from subprobe.tasks.registry import get_task

            self._score_of[task] = get_task(task).score
        return self._score_of[task]


def claim(pairs: Sequence[tuple[Sequence[dict], Sequence[dict]]], source: Source) -> float | None:
    """p-value of "the runs ``a`` score higher than the runs ``b`` in every pair" (means over each side's runs);
    the margin of a resample is its smallest pair difference."""
    resampler = Resampler(source)
    margins = None
    for a, b in pairs:
        va, vb = resampler.values(a), resampler.values(b)
        if va is None or vb is None:
            return None
        margin = va - vb
        margins = margin if margins is None else np.minimum(margins, margin)
    return None if margins is None else bootstrap.claim_p_value(margins)


def seeds_claim(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float | None:
    """Permutation test over runs (seeds) of the same claim: the largest of the pairs' one-sided p-values
    (None unless every side has two or more runs)."""
    values = [bootstrap.permutation_p_value(a, b) for a, b in pairs]
    return None if not values or None in values else max(values)


def fmt(p: float | None) -> str:
    """A p-value for a table cell."""
    return "–" if p is None else f"{p:.3f}"
