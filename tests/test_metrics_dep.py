"""Attachment scores with hand-computed values."""

from __future__ import annotations

import pytest

from subprobe.metrics.dep import attachment_scores


def test_micro_and_macro_differ() -> None:
    # sentence A: 4 words; sentence B: 1 word
    gold_heads = [[2, 0, 2, 3], [0]]
    gold_rels = [["nsubj", "root", "obj", "punct"], ["root"]]
    pred_heads = [[2, 0, 1, 3], [1]]  # A: 3/4 heads right; B: 0/1
    pred_rels = [["nsubj", "root", "obj", "dep"], ["root"]]  # A: LAS words 1, 2 -> 2/4
    gold_head_rels = [["nsubj", "root", "obj", "punct"], ["root"]]
    r = attachment_scores(gold_heads, gold_rels, pred_heads, pred_rels, gold_head_rels)
    assert r["uas"] == pytest.approx(3 / 5)
    assert r["las"] == pytest.approx(2 / 5)
    assert r["paper_uas"] == pytest.approx((3 / 4 + 0) / 2)
    # paper LAS: head right AND gold-head label right: A words 1, 2, 4 -> 3/4; B 0/1
    assert r["paper_las"] == pytest.approx((3 / 4 + 0) / 2)
    assert all(0.0 <= v <= 1.0 for v in r.values())


def test_paper_las_uses_gold_head_labels() -> None:
    gold_heads = [[0, 1, 1]]
    gold_rels = [[0, 1, 2]]
    pred_heads = [[0, 1, 1]]
    pred_rels = [[0, 5, 5]]  # labels from predicted heads are wrong
    from_gold = [[0, 1, 9]]
    r = attachment_scores(gold_heads, gold_rels, pred_heads, pred_rels, from_gold)
    assert r["uas"] == 1.0
    assert r["las"] == pytest.approx(1 / 3)
    assert r["paper_las"] == pytest.approx(2 / 3)


def test_without_gold_head_labels_and_empty() -> None:
    r = attachment_scores([[0, 1]], [["a", "b"]], [[0, 1]], [["a", "b"]])
    assert r == {"uas": 1.0, "las": 1.0, "paper_uas": 1.0}
    assert attachment_scores([], [], [], []) == {"uas": 0.0, "las": 0.0, "paper_uas": 0.0}
    # an empty sentence is skipped by the macro average
    r = attachment_scores([[], [0]], [[], ["x"]], [[], [0]], [[], ["x"]])
    assert r["paper_uas"] == 1.0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        attachment_scores([[0, 1]], [["a", "b"]], [[0]], [["a"]])
    with pytest.raises(ValueError):
        attachment_scores([[0]], [["a"]], [[0], [0]], [["a"], ["a"]])
