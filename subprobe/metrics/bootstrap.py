"""Uncertainty of a score: the paired bootstrap over sentences, intervals over seeds, and the tests of claims.

**Paired bootstrap over sentences** (Efron & Tibshirani 1993; for NLP, Koehn 2004). A resample draws n sentences
of the n scored ones with replacement; :func:`resample_counts` gives how often each sentence is drawn in each of
R resamples. The counts depend only on ``(n, resamples, seed)``, so every system scored on the same sentences
is resampled with the very same sentences: the resampling is *paired*, and a difference between two systems
can be read off resample by resample. The task's own metric is recomputed from each resample's summed
per-sentence statistics (:mod:`subprobe.metrics.statistics`): NER F1 from chunk counts, LAS from word counts,
never as a mean of per-sentence scores.

* :func:`confidence_intervals`: the percentile interval (the ``(1 - level) / 2`` and ``(1 + level) / 2``
  quantiles of the R resampled scores, numpy's linear interpolation) of every metric.
* :func:`claim_p_value`: for a claim ``T > 0`` (e.g. T = subnetwork accuracy - MLP-1 accuracy), the share of
  resamples in which it fails, ``(1 + #{r: T_r <= 0}) / (R + 1)`` (Koehn 2004's paired bootstrap test, with the
  usual +1 so that a p-value is never 0). A compound claim ("higher at every point") takes T = the smallest of its
  margins in each resample, so it fails in a resample as soon as one part does.

**Over seeds** (training randomness): :func:`seed_interval` (mean, standard deviation and the Student-t 95%
interval of the mean) and :func:`permutation_p_value` (one-sided exact permutation test of two groups of runs).

Defaults (:data:`RESAMPLES`, :data:`SEED`, :data:`LEVEL`): 1,000 resamples, seed 0, 95%.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from subprobe.metrics.statistics import SentenceStats

__all__ = ["LEVEL", "RESAMPLES", "SEED", "claim_p_value", "confidence_intervals", "method", "percentile_interval",
           "permutation_p_value", "resample_counts", "resampled_scores", "seed_interval"]

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95

Score = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def method(resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """How the intervals were computed (``metrics.json``'s ``ci``)."""
    return {"method": "percentile bootstrap over sentences, the task metric recomputed from each resample's "
                      "summed per-sentence counts; paired: every run resamples the same sentences",
            "resamples": resamples, "seed": seed, "level": level}


@functools.lru_cache(maxsize=4)
def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples, n]`` int32 (read-only): how often each of n sentences is drawn in each resample of n draws
    with replacement. The same ``(n, resamples, seed)`` gives the same counts (on any machine: numpy's PCG64)."""
    if n < 1:
        raise ValueError("nothing to resample: no sentences")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    flat = (draws + (np.arange(resamples, dtype=np.int64) * n)[:, None]).ravel()
    counts = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.int32)
    counts.setflags(write=False)
    return counts


def resampled_scores(stats: SentenceStats, score: Score, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of ``score`` on each resample of ``counts`` (``[R, n]``, n = ``stats.n``): ``[R]`` arrays."""
    if counts.shape[1] != stats.n:
        raise ValueError(f"counts resample {counts.shape[1]} sentences, the statistics hold {stats.n}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in score(stats.totals(counts)).items()}


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``samples`` (numpy's linear interpolation)."""
    lo, hi = np.quantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def confidence_intervals(stats: SentenceStats, score: Score, resamples: int = RESAMPLES, seed: int = SEED,
                         level: float = LEVEL) -> dict[str, list[float]]:
    """``{metric: [lo, hi]}``: the paired percentile bootstrap interval of every metric ({} with no sentences)."""
    if stats.n == 0:
        return {}
    samples = resampled_scores(stats, score, resample_counts(stats.n, resamples, seed))
    return {k: list(percentile_interval(v, level)) for k, v in samples.items()}


def claim_p_value(margins: np.ndarray) -> float:
    """p-value of the claim ``margin > 0`` from its resampled margins: ``(1 + #{margin <= 0}) / (R + 1)``."""
    margins = np.asarray(margins, dtype=np.float64)
    return float((1 + np.count_nonzero(~(margins > 0))) / (margins.size + 1))


#: Student t quantiles t_{0.975, df} for df = 1..30 (beyond: a Cornish-Fisher expansion, error < 1e-5).
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (the 95% interval's multiplier)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def seed_interval(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``sd`` (sample standard deviation) and the Student-t 95% interval of the mean, ``lo`` and
    ``hi`` (``mean -+ t_{0.975, n-1} sd / sqrt(n)``); ``sd``, ``lo`` and ``hi`` are None for fewer than 2 values."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    mean = math.fsum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None}
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def permutation_p_value(a: Sequence[float], b: Sequence[float], max_exact: int = 20_000,
                        permutations: int = 10_000, seed: int = SEED) -> float | None:
    """One-sided permutation test of ``mean(a) > mean(b)`` over runs (seeds): the share of the ways to split the
    pooled values into groups of ``len(a)`` and ``len(b)`` whose mean difference is at least the observed one
    (the observed split included, so the smallest p is 1 / C(n_a + n_b, n_a)). Exact up to ``max_exact`` splits,
    else ``permutations`` seeded random splits (+1 smoothing). None when a group has fewer than 2 values."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = np.array(a + b)
    observed = np.mean(a) - np.mean(b)
    tol = 1e-12 * max(1.0, abs(observed))
    n_a, total = len(a), pooled.sum()
    if math.comb(len(pooled), n_a) <= max_exact:
        hits = count = 0
        for chosen in itertools.combinations(range(len(pooled)), n_a):
            s = pooled[list(chosen)].sum()
            diff = s / n_a - (total - s) / len(b)
            hits += diff >= observed - tol
            count += 1
        return hits / count
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        perm = rng.permutation(pooled)
        hits += perm[:n_a].mean() - perm[n_a:].mean() >= observed - tol
    return (1 + hits) / (permutations + 1)
