"""Token accuracy: micro over words (standard) and the paper's sentence-macro average, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from subprobe.data.batching import Dataset, EncodedSentence
from subprobe.metrics.tagging import accuracy
from subprobe.tasks.registry import get_task
from tests import oracle


def _a(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_micro_and_macro_differ_by_hand() -> None:
    gold = [_a(1, 2, 3, 4), _a(5)]
    pred = [_a(1, 2, 3, 0), _a(0)]  # 3/4 right, then 0/1
    r = accuracy(gold, pred)
    assert r["accuracy"] == pytest.approx(3 / 5)  # words: 3 of 5
    assert r["accuracy_macro"] == pytest.approx((3 / 4 + 0 / 1) / 2)  # sentences: 0.375
    assert r == pytest.approx(dict(zip(("accuracy", "accuracy_macro"), oracle.token_accuracy(gold, pred))))


def test_macro_weighs_short_sentences_up() -> None:
    # a long perfect sentence and a short wrong one: micro 10/12, macro (1 + 0) / 2
    gold = [_a(*range(10)), _a(1, 1)]
    pred = [_a(*range(10)), _a(0, 0)]
    assert accuracy(gold, pred) == pytest.approx({"accuracy": 10 / 12, "accuracy_macro": 0.5})


def test_empty_sentences_count_in_neither_average() -> None:
    gold = [_a(), _a(7, 7), _a()]
    pred = [_a(), _a(7, 0), _a()]
    assert accuracy(gold, pred) == {"accuracy": 0.5, "accuracy_macro": 0.5}
    assert accuracy([_a()], [_a()]) == {"accuracy": 0.0, "accuracy_macro": 0.0}
    assert accuracy([], []) == {"accuracy": 0.0, "accuracy_macro": 0.0}


def test_one_sentence_micro_equals_macro() -> None:
    r = accuracy([_a(1, 2, 3)], [_a(1, 0, 3)])
    assert r["accuracy"] == r["accuracy_macro"] == pytest.approx(2 / 3)


def test_random_cases_match_the_oracle() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(0, 9, size=rng.integers(1, 6))
        gold = [rng.integers(0, 3, size=n) for n in lengths]
        pred = [rng.integers(0, 3, size=n) for n in lengths]
        micro, macro = oracle.token_accuracy(gold, pred)
        assert accuracy(gold, pred) == pytest.approx({"accuracy": micro, "accuracy_macro": macro})


def test_upos_task_reports_both_averages_over_encoded_sentences() -> None:
    def sentence(index: int, labels: np.ndarray) -> EncodedSentence:
        n = len(labels)
        e = EncodedSentence(index, np.zeros(n + 2, dtype=np.int64), np.arange(1, n + 1), np.arange(2, n + 2))
        e.labels["upos"] = labels
        return e

    # sentence ids 4 and 9 (the dataset's own numbering, not positions)
    ds = Dataset("dev", [], [sentence(4, _a(1, 2, 3, 4)), sentence(9, _a(5))])
    predictions = {9: {"upos": _a(5)}, 4: {"upos": _a(0, 0, 3, 4)}}
    scores = get_task("upos").metrics(ds, predictions, vocabs=None)
    assert scores == pytest.approx({"accuracy": 3 / 5, "accuracy_macro": (2 / 4 + 1) / 2})
    assert get_task("upos").primary_metric == "accuracy"
