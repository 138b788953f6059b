"""Chu-Liu-Edmonds with the single-root constraint, checked against brute force."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from subprobe.metrics.mst import is_single_rooted_tree, mst_decode, tree_score


@functools.cache
def all_trees(n: int) -> np.ndarray:
    """Every single-rooted tree over n words as rows of heads for words 1..n (enumerated)."""
    rows = [hs for hs in itertools.product(range(n + 1), repeat=n) if is_single_rooted_tree(np.array((-1, *hs)))]
    return np.array(rows, dtype=np.int64).reshape(len(rows), n)


def brute_force(scores: np.ndarray, n: int) -> float:
    """Best score over all single-rooted trees of n words."""
    trees = all_trees(n)
    return float(scores[np.arange(1, n + 1), trees].sum(axis=1).max())


def test_tree_enumeration_counts() -> None:
    # single-rooted spanning arborescences of n words: n^(n-1) (Cayley, rooted at its ROOT child)
    assert [len(all_trees(n)) for n in range(1, 6)] == [1, 2, 9, 64, 625]


def test_is_single_rooted_tree() -> None:
    assert is_single_rooted_tree(np.array([-1, 0, 1, 1]))
    assert not is_single_rooted_tree(np.array([-1, 0, 0, 1]))  # two roots
    assert not is_single_rooted_tree(np.array([-1, 0, 3, 2]))  # cycle 2<->3
    assert not is_single_rooted_tree(np.array([-1, 0, 2]))  # self-loop
    assert is_single_rooted_tree(np.array([-1]))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_matches_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    trials = 300
    for t in range(trials):
        scores = rng.normal(size=(n + 1, n + 1)) * rng.choice([0.01, 1.0, 30.0])
        if t % 2 == 0:
            scores[1:, 0] += 4.0  # make multi-root unconstrained optima common
        if t % 5 == 0:
            scores = np.round(scores)  # ties
        heads = mst_decode(scores, n)
        assert heads.shape == (n + 1,) and heads[0] == -1
        assert is_single_rooted_tree(heads)
        assert tree_score(scores, heads) == pytest.approx(brute_force(scores, n), abs=1e-9)


def test_log_probabilities_and_padding_ignored() -> None:
    rng = np.random.default_rng(7)
    n = 4
    full = rng.normal(size=(8, 8))
    logp = full - np.log(np.exp(full).sum(axis=1, keepdims=True))
    padded = logp.copy()
    padded[n + 1 :, :] = 1e6  # padding rows / columns must not matter
    padded[:, n + 1 :] = 1e6
    heads = mst_decode(padded, n)
    assert is_single_rooted_tree(heads)
    assert tree_score(logp, heads) == pytest.approx(brute_force(logp[: n + 1, : n + 1], n))


def test_all_words_prefer_root_gives_one_root() -> None:
    n = 5
    scores = np.full((n + 1, n + 1), -5.0)
    scores[1:, 0] = 0.0
    scores[3, 0] = 1.0  # word 3 is the best root child
    heads = mst_decode(scores, n)
    assert is_single_rooted_tree(heads)
    assert heads[3] == 0


def test_forbidden_edges() -> None:
    n = 3
    scores = np.zeros((n + 1, n + 1))
    scores[1:, 0] = -np.inf
    scores[2, 0] = 0.0  # only word 2 may attach to ROOT
    scores[1, 3] = -np.inf
    heads = mst_decode(scores, n)
    assert is_single_rooted_tree(heads)
    assert heads[2] == 0 and heads[1] != 3
    # all ROOT edges forbidden: still returns a single-rooted tree
    scores[1:, 0] = -np.inf
    assert is_single_rooted_tree(mst_decode(scores, n))


def test_edge_cases_and_errors() -> None:
    assert mst_decode(np.zeros((1, 1)), 0).tolist() == [-1]
    assert mst_decode(np.zeros((3, 3)), 1).tolist() == [-1, 0]
    with pytest.raises(ValueError):
        mst_decode(np.zeros((2, 2)), 3)
    bad = np.zeros((3, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError):
        mst_decode(bad, 2)


def test_long_sentences_are_trees() -> None:
    # the decoding speed is measured by benchmarks/mst_speed.py, not asserted here
    rng = np.random.default_rng(0)
    n = 60
    for _ in range(20):
        m = rng.normal(size=(n + 1, n + 1))
        heads = mst_decode(m, n)
        assert is_single_rooted_tree(heads)
        # never worse than the chain ROOT -> 1 -> 2 -> ... (itself a single-rooted tree)
        assert tree_score(m, heads) >= tree_score(m, np.array([-1, *range(n)])) - 1e-9
