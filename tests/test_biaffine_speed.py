"""The biaffine head's fast training path (issue 16): relation scores per distinct head, bf16 matmuls with
fp32 parameters and loss, no MST decoding in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subprobe.config import ProbeConfig
from subprobe.heads import biaffine
from subprobe.heads.biaffine import BiaffineHead
from subprobe.resolve import resolve
from subprobe.tasks.dep import DepTask
from tests.test_heads_biaffine import make_batch

D, L = 24, 7


def trees(lengths: list[int], seed: int = 0):
    """Random features and random gold heads (a few words head several others), relations, mask."""
    features, mask, heads, rels = make_batch(lengths, seed, dim=D, labels=L, branching=True)
    rels[0, 2] = -100  # an unlabelled word: no relation loss there
    return features, mask, heads, rels


def make_head(**kw) -> BiaffineHead:
    torch.manual_seed(0)
    head = BiaffineHead(D, L, arc_dim=20, label_dim=12, dropout=0.0, **kw)
    with torch.no_grad():
        head.arc_weight.normal_(0, 0.3)
        head.rel_weight.normal_(0, 0.3)
    return head.train()


def reference_loss(head: BiaffineHead, out, heads, rels, mask) -> torch.Tensor:
    """The loss as written before: relation scores of every position (label_scores), then the words."""
    arc_ok = mask & (heads != -100)
    rel_ok = arc_ok & (rels != -100)
    arc = F.cross_entropy(out.arc_scores[arc_ok].float(), heads[arc_ok], reduction="sum") / arc_ok.sum()
    rel_logits = head.label_scores(out, heads)[rel_ok].float()
    return arc + F.cross_entropy(rel_logits, rels[rel_ok], reduction="sum") / rel_ok.sum()


def grads(head: BiaffineHead, features: torch.Tensor) -> list[torch.Tensor]:
    return [p.grad.clone() for p in head.parameters()] + [features.grad.clone()]


def test_relation_scores_per_distinct_head_equal_label_scores():
    head = make_head()
    features, mask, heads, rels = trees([6, 3, 9])
    out = head(features, mask)
    words = mask & (heads != -100)
    got = head._word_label_scores(out, heads, words)
    want = head.label_scores(out, heads)[words]
    assert got.shape == (int(words.sum()), L)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    # the product has one row per distinct (sentence, head): fewer than words here
    keys = {(int(b), int(heads[b, i])) for b, i in zip(*words.nonzero(as_tuple=True))}
    assert len(keys) < int(words.sum())


def test_relation_scores_cross_the_shape_quanta():
    """Over 64 distinct heads (the row quantum) and a head with 11 dependents (over the dependent quantum of 8):
    still label_scores at the words, and the padded head rows and dependent slots read nothing."""
    head = make_head()
    lengths = [12] * 8
    features, mask, heads, rels = make_batch(lengths, seed=3, dim=D, labels=L)  # chains: 12 heads per sentence
    heads[0, 1:12] = 5  # word 5 heads eleven words of sentence 0 (itself too: only the scores matter here)
    out = head(features, mask)
    words = mask & (heads != -100)
    keys = {(int(b), int(heads[b, i])) for b, i in zip(*words.nonzero(as_tuple=True))}
    assert len(keys) > 64 and int((heads[0] == 5).sum()) == 11
    got = head._word_label_scores(out, heads, words)
    assert torch.allclose(got, head.label_scores(out, heads)[words], rtol=1e-5, atol=1e-5)


def test_rank_within_groups_counts_in_order_of_position():
    group = torch.tensor([2, 0, 2, 1, 0, 2])
    counts = torch.bincount(group)
    assert biaffine._rank_within_groups(group, counts).tolist() == [0, 0, 1, 0, 1, 2]


def test_fp32_loss_and_gradients_equal_the_reference():
    features, mask, heads, rels = trees([6, 3, 9])
    head, ref = make_head(), make_head()
    x, y = features.clone().requires_grad_(), features.clone().requires_grad_()
    loss = head.loss(head(x, mask), heads, rels, mask)
    out = ref(y, mask)
    want = reference_loss(ref, out, heads, rels, mask)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    want.backward()
    for g, r in zip(grads(head, x), grads(ref, y)):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-6)


def test_bf16_training_matmuls_keep_fp32_parameters_and_loss():
    features, mask, heads, rels = trees([6, 3, 9])
    head, ref = make_head(compute_dtype="bf16"), make_head()
    assert head.compute_dtype == torch.bfloat16 and ref.compute_dtype is None
    x, y = features.clone().requires_grad_(), features.clone().requires_grad_()
    out = head(x, mask)
    assert out.arc_scores.dtype == out.rel_dep.dtype == torch.bfloat16  # the matmuls ran in bf16
    loss = head.loss(out, heads, rels, mask)
    want = ref.loss(ref(y, mask), heads, rels, mask)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(want.item(), rel=2e-2)
    loss.backward()
    want.backward()
    for p, g, r in zip(list(head.parameters()) + [x], grads(head, x), grads(ref, y)):
        assert p.dtype == g.dtype == torch.float32
        cosine = F.cosine_similarity(g.flatten(), r.flatten(), dim=0)
        assert cosine > 0.995
    # evaluation scores in fp32: the same numbers as the fp32 head
    head.eval(), ref.eval()
    with torch.no_grad():
        assert torch.equal(head(features, mask).arc_scores, ref(features, mask).arc_scores)
    with pytest.raises(ValueError, match="compute_dtype"):
        BiaffineHead(D, L, compute_dtype=torch.float16)


def test_dep_task_runs_the_head_in_bf16_with_a_bf16_encoder():
    task = DepTask()
    options = task.head_options(resolve(ProbeConfig(task="dep", precision="bf16")))
    assert options["compute_dtype"] == "bf16"
    assert "compute_dtype" not in task.head_options(resolve(ProbeConfig(task="dep", precision="fp32")))
    vocabs = {"rels": ["a", "b"]}  # build_head only needs the number of relations
    assert task.build_head(8, vocabs, **options).compute_dtype == torch.bfloat16
    unset = ProbeConfig(task="dep", decoder="mst")  # precision not given
    assert task.build_head(8, vocabs, **task.head_options(unset)).compute_dtype is None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_never_decode_and_evaluation_does(tiny_bert, tiny_ud, monkeypatch, precision):
    from benchmarks import train_speed as ts
    from subprobe.data.pipeline import prepare_splits, read_splits
    from subprobe.models.loading import load_encoder
    from subprobe.tasks.registry import get_task

    calls = []
    real = biaffine.mst_decode
    monkeypatch.setattr(biaffine, "mst_decode", lambda *a: calls.append(1) or real(*a))
    task = get_task("dep")
    encoder, tokenizer = load_encoder(str(tiny_bert))
    splits, vocabs = prepare_splits(task, read_splits(task, {k: tiny_ud[k] for k in ("train", "dev")}), tokenizer, 64)
    cfg = ts.probe_config(precision, batch_size=4)
    runner = ts.SubprobeRunner(encoder, task, splits["train"], vocabs, 0, cfg)
    assert runner.model.head.compute_dtype == (torch.bfloat16 if precision == "bf16" else None)
    for _ in range(3):
        runner.step()
    assert calls == [] and torch.isfinite(runner.running_loss)
    metrics = runner.evaluate(splits["dev"], vocabs)
    assert len(calls) == len(splits["dev"].encoded) and 0.0 <= metrics["las"] <= 1.0
