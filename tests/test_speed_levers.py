"""Speed levers that must not change a number: the packed feature cache, the concatenated L0 penalty,
fused Adam (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from subprobe.data.batching import bucketed_batches, collate, encode_dataset
from subprobe.data.conllu import read_conllu
from subprobe.masking import subnetwork
from subprobe.masking.subnetwork import l0_penalty
from subprobe.models.loading import load_encoder
from subprobe.probes.base import EncoderFeatures
from subprobe.probes.cached import CachedFeatures, FeatureStore
from subprobe.training.optim import adam_kind, make_adam
from tests import oracle

# --------------------------------------------------------------------------- packed feature cache


def _reference_lookup(source: nn.Module, datasets, batch, pooling: str, pad_id: int) -> torch.Tensor:
    """The cache as it was: one float32 tensor per distinct sentence in a dict, padded per batch."""
    cache: dict[bytes, torch.Tensor] = {}
    source.eval()
    with torch.no_grad():
        for ds in datasets:
            for indices in bucketed_batches(ds.encoded, 64, shuffle=False):
                feats = source(collate(ds.encoded, indices, pooling, pad_id)).float()
                for b, idx in enumerate(indices):
                    e = ds.encoded[idx]
                    cache.setdefault(e.input_ids.tobytes(), feats[b, : e.n_words + 1].clone())
    lengths = batch.attention_mask.sum(1).tolist()
    rows = [cache[batch.input_ids[b, :n].numpy().tobytes()] for b, n in enumerate(lengths)]
    padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    width = batch.word_index.shape[1]
    return nn.functional.pad(padded, (0, 0, 0, width - padded.shape[1]))


@pytest.mark.parametrize(("precision", "pooling"), [("fp32", "last"), ("bf16", "last"), ("bf16", "mean")])
def test_packed_cache_gives_exactly_the_per_sentence_cache(tiny_bert, tiny_ud, precision, pooling):
    enc, tok = load_encoder(str(tiny_bert))
    if precision == "bf16":
        enc.to(torch.bfloat16)
    train = encode_dataset("train", read_conllu(tiny_ud["train"]), tok, 64)
    dev = encode_dataset("dev", read_conllu(tiny_ud["dev"])[:2], tok, 64)
    features = EncoderFeatures(enc, pooling)
    cached = CachedFeatures(features)
    cached.fill(train, pooling, tok.pad_token_id)
    cached.fill(dev, pooling, tok.pad_token_id)  # a second fill: nothing new (same 3 sentences)
    assert len(cached.cache) == 3 and cached.cache.packed.shape[0] == 1 + (1 + 4) + (1 + 8) + (1 + 6)
    # bf16 features are stored as bf16 (exactly: they are bf16 numbers); fp32 ones as fp32
    assert cached.cache.packed.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert torch.count_nonzero(cached.cache.packed[0]) == 0  # the padding row
    batch = collate(train.encoded, [2, 0, 1, 5], pooling, tok.pad_token_id)
    got = cached(batch)
    want = _reference_lookup(EncoderFeatures(enc, pooling), [train, dev], batch, pooling, tok.pad_token_id)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want)
    assert torch.equal(cached.words(batch), want[batch.word_mask])  # the words' rows, read directly


def test_feature_store_appends_and_pads_with_zeros():
    store = FeatureStore()
    store.add([b"a", b"b"], [torch.full((2, 3), 1.0), torch.full((3, 3), 2.0)])
    store.add([b"c"], [torch.tensor([[0.1, 0.2, 0.3]])])  # not a bf16 number: the store becomes float32
    assert store.rows == {b"a": (1, 2), b"b": (3, 3), b"c": (6, 1)} and store.packed.dtype == torch.float32
    out = store.lookup([b"c", b"a"], width=4)
    expected = torch.zeros(2, 4, 3)
    expected[0, 0] = torch.tensor([0.1, 0.2, 0.3])
    expected[1, :2] = 1.0
    assert torch.equal(out, expected)
    with pytest.raises(KeyError):
        store.lookup([b"missing"], width=2)
    with pytest.raises(KeyError, match="empty"):
        FeatureStore().lookup([b"a"], width=1)


# --------------------------------------------------------------------------- L0 penalty over one concatenation


class _Masked:
    def __init__(self, log_alpha: torch.Tensor) -> None:
        self.log_alpha = log_alpha


@pytest.mark.parametrize("mode", ["matrix-mean", "param-mean"])
@pytest.mark.parametrize("concat_max", [subnetwork.CONCAT_MAX_MASKS, 0])  # concatenated, and the per-matrix path
def test_l0_penalty_and_gradient_equal_the_per_matrix_sum(monkeypatch, mode, concat_max):
    monkeypatch.setattr(subnetwork, "CONCAT_MAX_MASKS", concat_max)
    torch.manual_seed(0)
    shapes = [(1, 7), (3, 5), (1, 13), (2, 2)]
    logits = [nn.Parameter(torch.randn(s) * 2) for s in shapes]
    penalty = l0_penalty([_Masked(la) for la in logits], mode)
    assert penalty.item() == pytest.approx(oracle.l0_penalty([la.tolist() for la in logits], mode), rel=1e-6)
    penalty.backward()
    got = [la.grad.clone() for la in logits]
    for la in logits:
        la.grad = None
    if mode == "matrix-mean":
        ref = torch.stack([oracle_expected(la).mean() for la in logits]).mean()
    else:
        ref = torch.stack([oracle_expected(la).sum() for la in logits]).sum() / sum(la.numel() for la in logits)
    ref.backward()
    for g, la in zip(got, logits):
        assert torch.allclose(g, la.grad, rtol=1e-6, atol=1e-9)


def oracle_expected(la: torch.Tensor) -> torch.Tensor:
    from subprobe.masking import hard_concrete as hc

    return hc.expected_l0(la)


# --------------------------------------------------------------------------- fused Adam


def test_fused_adam_is_used_on_cpu_and_steps_as_plain_adam():
    torch.manual_seed(0)
    shapes = [(1, 16), (4, 8), (17, 8), (17,)]
    a = [nn.Parameter(torch.randn(s)) for s in shapes]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    assert adam_kind(a) == "fused"
    groups = lambda ps: [  # noqa: E731
        {"params": ps[:2], "lr": 0.1},
        {"params": ps[2:3], "lr": 1e-3},
        {"params": ps[3:], "lr": 0.05, "maximize": True},  # the Lagrange multipliers' group ascends
    ]
    fused = make_adam(groups(a))
    plain = torch.optim.Adam(groups(b), betas=(0.9, 0.999), eps=1e-8, foreach=False)
    assert all(g["fused"] for g in fused.param_groups)
    for step in range(6):
        for p, q in zip(a, b):
            g = torch.randn_like(p) * (step + 1)
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)
        assert not torch.equal(p.detach(), q.detach() * 0)  # they moved


def test_adam_falls_back_where_fused_does_not_apply():
    ints = [torch.zeros(3, dtype=torch.int64)]
    assert adam_kind(ints) == "foreach" and adam_kind([]) == "single"
    opt = make_adam([{"params": [nn.Parameter(torch.zeros(2))], "lr": 0.1}])
    assert opt.param_groups[0]["fused"]


def test_train_step_uses_fused_adam(tiny_bert, tiny_ud):
    from benchmarks import train_speed as ts
    from subprobe.data.pipeline import prepare_splits, read_splits
    from subprobe.tasks.registry import get_task

    task = get_task("upos")
    encoder, tokenizer = load_encoder(str(tiny_bert))
    splits, vocabs = prepare_splits(task, read_splits(task, {k: tiny_ud[k] for k in ("train", "dev")}), tokenizer, 64)
    runner = ts.SubprobeRunner(encoder, task, splits["train"], vocabs, 0, ts.probe_config("fp32", batch_size=4))
    assert all(g["fused"] for g in runner.train_step.optimizer.param_groups)
    runner.step()
    assert np.isfinite(float(runner.running_loss))


# --------------------------------------------------------------------------- evaluation with materialised masks


def _runner(tiny_bert, tiny_ud, task_name="upos", precision="fp32", **cfg):
    from benchmarks import train_speed as ts
    from subprobe.data.pipeline import prepare_splits, read_splits
    from subprobe.tasks.registry import get_task

    torch.manual_seed(0)
    task = get_task(task_name)
    encoder, tokenizer = load_encoder(str(tiny_bert))
    splits, vocabs = prepare_splits(task, read_splits(task, {k: tiny_ud[k] for k in ("train", "dev")}), tokenizer, 64)
    cfg.setdefault("batch_size", 4)
    runner = ts.SubprobeRunner(encoder, task, splits["train"], vocabs, 0, ts.probe_config(precision, **cfg))
    with torch.no_grad():  # masks as after some training: some units on, some off, some in between
        for m in runner.probe.masked:
            m.log_alpha.copy_(torch.randn(m.log_alpha.shape) * 3)
    return runner, splits["dev"], vocabs


@pytest.mark.parametrize("granularity", ["neuron", "weight", "head"])
@pytest.mark.parametrize("mode", ["hard", "soft", "none"])
def test_materialised_masks_compute_the_masked_forward(tiny_bert, tiny_ud, granularity, mode):
    from subprobe.masking.masked_linear import MaskedLinear
    from subprobe.masking.subnetwork import set_mask_mode
    from subprobe.training.evaluate import materialised_masks

    runner, dev, _ = _runner(tiny_bert, tiny_ud, granularity=granularity)
    model = runner.model.eval()
    set_mask_mode(model, mode)
    batch = collate(dev.encoded, list(range(len(dev.encoded))), "last", 0)
    with torch.no_grad():
        want = model(batch)
        with materialised_masks(model) as n:
            got = model(batch)
    n_masked = sum(isinstance(m, MaskedLinear) for m in model.modules())
    assert n == n_masked == 12  # 6 matrices x 2 layers
    if mode == "soft":  # W * m versus x * m: the same products, rounded in another order
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(got, want)
    assert not any("forward" in vars(m) for m in model.modules())  # the modules' own forward is back
    with torch.no_grad():
        assert torch.equal(model(batch), want)


def test_sampled_masks_are_not_materialised(tiny_bert, tiny_ud):
    from subprobe.masking.subnetwork import set_mask_mode
    from subprobe.training.evaluate import materialised_masks

    runner, _, _ = _runner(tiny_bert, tiny_ud)
    set_mask_mode(runner.model, "sample")
    with materialised_masks(runner.model) as n:
        assert n == 0
    runner.model.train()
    set_mask_mode(runner.model, None)
    with materialised_masks(runner.model) as n:  # training mode: the masks are drawn
        assert n == 0


def test_materialised_masks_stay_within_the_memory_budget(tiny_bert, tiny_ud):
    from subprobe.masking.subnetwork import set_mask_mode
    from subprobe.training.evaluate import materialised_masks

    runner, dev, _ = _runner(tiny_bert, tiny_ud)
    model = runner.model.eval()
    set_mask_mode(model, "hard")
    sizes = [m.weight.numel() * m.weight.element_size() for m in runner.probe.masked]
    batch = collate(dev.encoded, [0, 1], "last", 0)
    with torch.no_grad():
        want = model(batch)
        with materialised_masks(model, max_bytes=sizes[0] + sizes[1]) as n:
            assert n == 2  # the first two matrices fit, the others keep their own forward
            assert torch.equal(model(batch), want)
        with materialised_masks(model, max_bytes=0) as n:
            assert n == 0


@pytest.mark.parametrize("task_name", ["upos", "dep"])
def test_evaluation_restores_modes_and_training_goes_on(tiny_bert, tiny_ud, task_name):
    """predict_dataset (inference mode, materialised masks) gives the old path's predictions, leaves the
    training mode and every module's mask mode as it found them, and training steps on afterwards."""
    from subprobe.training.evaluate import predict_dataset

    runner, dev, _ = _runner(tiny_bert, tiny_ud, task_name)
    runner.step()
    model = runner.model
    masked = runner.probe.masked
    masked[0].mask_mode = "soft"  # one module with a forced mode of its own
    kwargs = dict(pooling="last", pad_id=0, mask_mode="hard")
    preds = predict_dataset(model, runner.task, dev, **kwargs)
    assert model.training and masked[0].mask_mode == "soft" and all(m.mask_mode is None for m in masked[1:])
    assert not any("forward" in vars(m) for m in model.modules())
    # the reference: the modules' own forward, under no_grad, batch by batch
    model.eval()
    for m in masked:
        m.mask_mode = "hard"
    with torch.no_grad():
        for indices in bucketed_batches(dev.encoded, 64, shuffle=False):
            batch = collate(dev.encoded, indices, "last", 0)
            fields = runner.task.predict(model.head, model(batch), batch)
            for b, (sid, idx) in enumerate(zip(batch.sentence_ids, indices)):
                n = dev.encoded[idx].n_words
                for k, v in fields.items():
                    assert np.array_equal(preds[sid][k], v[b, 1 : n + 1].numpy()), k
    for m in masked:
        m.mask_mode = None
    model.train()
    before = [m.log_alpha.detach().clone() for m in masked]
    runner.step()  # no inference tensor was kept by the model: autograd still works
    assert any(not torch.equal(b, m.log_alpha) for b, m in zip(before, masked))


# --------------------------------------------------------------------------- benchmark helpers


def test_task_ratios_and_missing_task_data(tmp_path):
    from benchmarks import train_speed as ts

    stats = {
        "bf16": {"words_per_s": 200.0, "wordpieces_per_s": 250.0},
        "dep": {"words_per_s": 150.0, "wordpieces_per_s": 200.0},
        "fp32": {"words_per_s": 50.0, "wordpieces_per_s": 60.0},
    }
    assert ts.task_ratios(stats, "bf16") == {
        "dep_vs_upos": 0.75, "ner_vs_upos": None, "dep_vs_upos_wordpieces": 0.8, "ner_vs_upos_wordpieces": None
    }
    stats["ner"] = {"words_per_s": 190.0, "wordpieces_per_s": 275.0}  # more wordpieces per word
    ratios = ts.task_ratios(stats, "bf16")
    assert ratios["ner_vs_upos"] == 0.95 and ratios["ner_vs_upos_wordpieces"] == 1.1
    assert ts.load_task("ner", tmp_path, tokenizer=None, max_length=8) is None  # no conll2003 folder


# --------------------------------------------------------------------------- per-word heads and bf16 probes


class _FixedFeatures(nn.Module):
    """Features ``[B, 1+W, d]`` given in advance (what an encoder or a cache would return)."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.value = features

    def forward(self, batch) -> torch.Tensor:
        return self.value


def _frozen_probe_model(train_bf16: bool):
    from types import SimpleNamespace

    from subprobe.heads.tagger import TaggerHead
    from subprobe.probes.base import ProbeModel
    from subprobe.probes.frozen import MLP1

    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    for b, n in enumerate((6, 2, 4)):
        mask[b, 1 : n + 1] = True
    features = torch.randn(3, 7, 16, generator=g)
    torch.manual_seed(0)
    model = ProbeModel(_FixedFeatures(features), TaggerHead(16, 5), MLP1(16, 4), feature_dropout=0.0,
                       train_bf16=train_bf16)
    return model, features, SimpleNamespace(word_mask=mask)


def test_per_word_head_runs_on_the_words_only_and_gives_the_padded_result():
    model, features, batch = _frozen_probe_model(train_bf16=False)
    got = model.eval()(batch)
    want = model.head(model.adapter(features), batch.word_mask)  # every slot, the old way
    assert got.shape == want.shape == (3, 7, 5)
    assert torch.allclose(got[batch.word_mask], want[batch.word_mask], rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(got[~batch.word_mask]) == 0


@pytest.mark.parametrize("n, rounded", [(1, 64), (64, 64), (65, 128), (563, 576)])
def test_quantised_rows(n, rounded):
    from subprobe.device import quantised_rows

    assert quantised_rows(n) == rounded
    assert quantised_rows(n, 8) == -(-n // 8) * 8


def test_bf16_probe_trains_in_bf16_with_fp32_parameters_and_evaluates_in_fp32():
    model, features, batch = _frozen_probe_model(train_bf16=True)
    reference, _, _ = _frozen_probe_model(train_bf16=False)
    words = batch.word_mask
    trained = model.train()(batch)
    assert trained.dtype == torch.float32
    exact = reference.eval()(batch)
    x = features[words].to(torch.bfloat16)  # the bf16 computation by hand: matmuls in bf16, LayerNorm in fp32
    a = model.adapter
    h = torch.nn.functional.linear(x, a.down.weight.bfloat16(), a.down.bias.bfloat16())
    h = torch.nn.functional.linear(h, a.up.weight.bfloat16(), a.up.bias.bfloat16())
    h = torch.relu(a.norm(h.float())).bfloat16()
    by_hand = torch.nn.functional.linear(h, model.head.linear.weight.bfloat16(), model.head.linear.bias.bfloat16())
    assert torch.allclose(trained[words], by_hand.float(), rtol=0, atol=1e-6)
    assert not torch.equal(trained[words], exact[words])  # it did run in bf16
    assert torch.allclose(trained[words], exact[words], rtol=0.05, atol=0.05)
    trained[words].sum().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.adapter.parameters())
    assert torch.equal(model.eval()(batch), exact)  # evaluation: fp32, the same as without bf16


def test_per_word_rows_are_rounded_up_only_for_bf16_matmuls():
    rows = []
    for train_bf16, training, want in ((True, True, 64), (True, False, 12), (False, True, 12)):
        model, _, batch = _frozen_probe_model(train_bf16=train_bf16)
        handle = model.head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
        out = model.train(training)(batch)
        handle.remove()
        assert rows[-1] == want and out.shape == (3, 7, 5)  # 12 words; bf16 training pads them to 64 rows
