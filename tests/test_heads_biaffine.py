"""Biaffine head: shapes, masking, gather vs loop, decoding, parameter count, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subprobe.heads.biaffine import BiaffineHead
from subprobe.metrics.mst import is_single_rooted_tree

D = 16


def make_batch(
    lengths: list[int], seed: int = 0, *, dim: int = D, labels: int = 3, branching: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random features, mask, and random gold trees for sentences of given lengths: chains (word k headed by
    k-1, word 1 by ROOT), or with ``branching`` random heads drawn from about half the words."""
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths) + 1
    features = torch.randn(b, t, dim, generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    heads = torch.full((b, t), -100, dtype=torch.long)
    rels = torch.full((b, t), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, 1 : n + 1] = True
        if branching:
            pool = torch.randperm(n + 1, generator=g)[: max(1, n // 2)]
            heads[i, 1 : n + 1] = pool[torch.randint(len(pool), (n,), generator=g)]
        else:
            heads[i, 1 : n + 1] = torch.arange(0, n)
        rels[i, 1 : n + 1] = torch.randint(0, labels, (n,), generator=g)
    return features, mask, heads, rels


def head_with_random_biaffine(**kw: object) -> BiaffineHead:
    torch.manual_seed(0)
    head = BiaffineHead(D, 3, arc_dim=12, label_dim=8, **kw)  # type: ignore[arg-type]
    with torch.no_grad():  # zero init would make every score equal
        head.arc_weight.normal_(0, 0.5)
        head.rel_weight.normal_(0, 0.5)
    return head.eval()


def test_shapes_and_masking() -> None:
    head = head_with_random_biaffine()
    features, mask, _, _ = make_batch([4, 2])
    out = head(features, mask)
    assert out.arc_scores.shape == (2, 5, 5)
    assert out.rel_dep.shape == out.rel_head.shape == (2, 5, 8)
    neg = torch.finfo(out.arc_scores.dtype).min
    assert (out.arc_scores[1, :, 3:] == neg).all()  # padding heads
    assert (out.arc_scores[:, torch.arange(5), torch.arange(5)] == neg).all()  # self-loops
    assert (out.arc_scores[1, 1:3, 0] > neg).all()  # ROOT is a valid head
    assert head.label_scores(out, torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 3)


def test_zero_init_gives_uniform_arcs() -> None:
    head = BiaffineHead(D, 3, arc_dim=12, label_dim=8).eval()
    features, mask, _, _ = make_batch([4])
    probs = head(features, mask).arc_scores.softmax(-1)[0, 1]
    assert torch.allclose(probs[probs > 0], torch.full((4,), 0.25))


def test_parameter_count_matches_formula() -> None:
    head = BiaffineHead(768, 50)
    arc = 2 * (768 * 1024 + 1024) + 1024 * 1025
    label = 393_728 + 66_049 * 50  # the paper's label part (REFERENCE_NOTES 1.9)
    assert head.num_parameters == arc + label


def test_label_scores_gather_matches_loop() -> None:
    head = head_with_random_biaffine()
    features, mask, _, _ = make_batch([4, 3], seed=1)
    out = head(features, mask)
    heads = torch.tensor([[-100, 2, 0, 2, 1], [-100, 0, 1, 1, -100]])
    fast = head.label_scores(out, heads)
    one = out.rel_dep.new_ones(1)
    for b in range(2):
        for i in range(5):
            h = max(int(heads[b, i]), 0)
            d = torch.cat([out.rel_dep[b, i], one])
            hv = torch.cat([out.rel_head[b, h], one])
            ref = torch.stack([d @ head.rel_weight[label] @ hv for label in range(3)])
            assert torch.allclose(fast[b, i], ref, atol=1e-5)


def test_loss_ignores_padding_and_position_zero_targets() -> None:
    head = head_with_random_biaffine()
    features, mask, heads, rels = make_batch([4, 2], seed=2)
    loss = head.loss(head(features, mask), heads, rels, mask)
    assert loss.dim() == 0 and torch.isfinite(loss)
    changed = features.clone()
    changed[1, 3:] = torch.randn(2, D) * 100  # padding positions of sentence 2
    loss2 = head.loss(head(changed, mask), heads, rels, mask)
    assert torch.allclose(loss, loss2)
    # gold values at masked positions do not matter either
    heads2, rels2 = heads.clone(), rels.clone()
    heads2[1, 3:] = 0
    rels2[:, 0] = 1
    assert torch.allclose(loss, head.loss(head(features, mask), heads2, rels2, mask))


def test_loss_is_mean_over_words() -> None:
    head = BiaffineHead(D, 3, arc_dim=12, label_dim=8).eval()  # zero init: uniform scores
    features, mask, heads, rels = make_batch([4, 2], seed=3)
    loss = head.loss(head(features, mask), heads, rels, mask)
    # sentence 1: 4 candidate heads per word, sentence 2: 2; labels uniform over 3
    expected = (4 * np.log(4) + 2 * np.log(2)) / 6 + np.log(3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_decode_mst_gives_single_rooted_trees_and_argmax_may_not() -> None:
    head = head_with_random_biaffine()
    lengths = [7, 3, 5, 1]
    features, mask, _, _ = make_batch(lengths, seed=4)
    out = head(features, mask)
    # make every word prefer ROOT so the argmax "tree" has several roots
    out.arc_scores[:, :, 0] += 50.0
    pred, pred_rels = head.decode(out, mask, method="mst")
    arg, _ = head.decode(out, mask, method="argmax")
    assert pred.shape == pred_rels.shape == mask.shape
    for b, n in enumerate(lengths):
        tree = np.array([-1, *pred[b, 1 : n + 1].tolist()])
        assert is_single_rooted_tree(tree)
        assert (pred[b, n + 1 :] == -100).all() and pred[b, 0] == -100
        assert (pred_rels[b, n + 1 :] == -100).all()
    assert (arg[0, 1:8] == 0).all()  # argmax attaches all 7 words to ROOT
    assert (pred[0, 1:8] == 0).sum() == 1
    # labels come from the predicted heads
    expected = head.label_scores(out, pred).argmax(-1)
    assert torch.equal(pred_rels[mask], expected[mask])
    with pytest.raises(ValueError):
        head.decode(out, mask, method="eisner")


def test_mst_equals_argmax_when_argmax_is_a_tree() -> None:
    head = head_with_random_biaffine()
    features, mask, heads, _ = make_batch([5], seed=5)
    out = head(features, mask)
    out.arc_scores[0, torch.arange(1, 6), heads[0, 1:]] += 100.0  # gold chain dominates
    a, _ = head.decode(out, mask, method="argmax")
    m, _ = head.decode(out, mask, method="mst")
    assert torch.equal(a, m) and torch.equal(a[mask], heads[mask])


def test_overfits_a_fixed_tree() -> None:
    torch.manual_seed(0)
    head = BiaffineHead(D, 4, arc_dim=32, label_dim=16, dropout=0.0)
    features = torch.randn(1, 4, D)
    mask = torch.tensor([[False, True, True, True]])
    # "the dog barks": the <- dog <- barks <- ROOT
    heads = torch.tensor([[-100, 2, 3, 0]])
    rels = torch.tensor([[-100, 1, 2, 3]])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):  # converges in a few dozen steps; stop early to keep the test fast
        opt.zero_grad()
        loss = head.loss(head(features, mask), heads, rels, mask)
        if loss.item() < 0.01:
            break
        loss.backward()
        opt.step()
    head.eval()
    out = head(features, mask)
    assert head.loss(out, heads, rels, mask).item() < 0.05
    for method in ("mst", "argmax"):
        ph, pr = head.decode(out, mask, method=method)
        assert torch.equal(ph, heads) and torch.equal(pr, rels)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        BiaffineHead(D, 3, activation="gelu")
    head = BiaffineHead(D, 3, arc_dim=8, label_dim=8, activation="leaky_relu")
    with pytest.raises(ValueError):
        head(torch.randn(2, 5, D), torch.ones(2, 4, dtype=torch.bool))


def test_head_prior_varies_scores_with_dependent_side_zeroed() -> None:
    """With the dependent-side arc MLP output zeroed, s[i, j] = u^T h_j still differs across heads j."""
    head = head_with_random_biaffine()
    with torch.no_grad():
        head.arc_dep[0].weight.zero_()
        head.arc_dep[0].bias.zero_()
    features, mask, _, _ = make_batch([5], seed=4)
    scores = head(features, mask).arc_scores[0, 1]  # dependent 1, candidate heads ROOT, 2..5
    candidates = scores[[0, 2, 3, 4, 5]]
    assert candidates.std() > 1e-3
    # the score then depends on the head only: dependents 1 and 2 see the same prior over heads 0, 3, 4, 5
    other = head(features, mask).arc_scores[0, 2]
    assert torch.allclose(other[[0, 3, 4, 5]], scores[[0, 3, 4, 5]])


def test_arc_scores_equal_bilinear_plus_head_prior() -> None:
    """s[i, j] = d_i^T W h_j + u^T h_j with U = [W; u^T], computed explicitly."""
    head = head_with_random_biaffine()
    features, mask, _, _ = make_batch([4], seed=5)
    out = head(features, mask)
    dep = head.arc_dep(features)[0]
    hd = head.arc_head(features)[0]
    w, u = head.arc_weight[:-1], head.arc_weight[-1]
    for i in range(1, 5):
        for j in range(0, 5):
            if i == j:
                continue
            ref = dep[i] @ w @ hd[j] + u @ hd[j]
            assert torch.allclose(out.arc_scores[0, i, j], ref, atol=1e-4), (i, j)
