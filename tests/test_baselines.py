"""MLP-1, linear and fine-tuning probes, feature caching, random-model controls, bits."""

import pytest
import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import collate, encode_dataset
from subprobe.data.conllu import read_conllu
from subprobe.errors import ConfigError
from subprobe.heads.tagger import TaggerHead
from subprobe.models.loading import load_encoder
from subprobe.models.reset import apply_setting
from subprobe.probes.base import EncoderFeatures
from subprobe.probes.cached import CachedFeatures
from subprobe.probes.frozen import MLP1, parse_rank
from subprobe.probes.registry import build_probe
from subprobe.resolve import resolve
from tests import oracle


def test_mlp1_parameter_count_and_shape():
    d, r = 384, 25
    mlp = MLP1(d, r)
    # U, V (with biases) and the LayerNorm: d*r + r + r*d + d + 2d
    assert sum(p.numel() for p in mlp.parameters()) == d * r + r + r * d + d + 2 * d
    assert mlp(torch.randn(2, 3, d)).shape == (2, 3, d)
    assert (mlp(torch.randn(5, d)) >= 0).all()
    assert parse_rank("d", 384) == 384 and parse_rank("5", 384) == 5
    with pytest.raises(ConfigError):
        parse_rank("0", 384)


def test_bits_bounds_for_each_probe(tiny_bert):
    assert oracle.mlp1_params(32, 5) == 32 * 5 + 5 + 5 * 32 + 32 + 64
    for probe, expected in (("mlp", oracle.mlp1_params(32, 5)), ("linear", 32 * 17 + 17), ("finetune", None)):
        cfg = resolve(ProbeConfig(model=str(tiny_bert), probe=probe, rank="5", precision="fp32"))
        encoder, _ = load_encoder(str(tiny_bert))
        built = build_probe(cfg, encoder, TaggerHead(32, 17))
        n = expected if expected is not None else sum(p.numel() for p in encoder.parameters())
        assert built.probe_params == n
        assert built.bits() == oracle.bits_dense(n)
    cfg = resolve(ProbeConfig(model=str(tiny_bert), probe="subnetwork", granularity="neuron", precision="fp32"))
    built = build_probe(cfg, load_encoder(str(tiny_bert))[0], TaggerHead(32, 17))
    assert built.bits() == oracle.bits_subnetwork(2 * (4 * 32 + 64 + 64))  # one bit per mask parameter


def _weights(model, part):
    return {n: p.detach().clone() for n, p in model.named_parameters() if part in n}


def test_reset_encoder_keeps_embeddings_reset_all_does_not(tiny_bert):
    base, _ = load_encoder(str(tiny_bert))
    enc, _ = load_encoder(str(tiny_bert))
    n = apply_setting(enc, "reset-encoder", "torch-default", seed=1)
    assert n == sum(p.numel() for name, p in enc.named_parameters() if "encoder.layer." in name)
    for name, p in enc.named_parameters():
        same = torch.equal(p, dict(base.named_parameters())[name])
        if "embeddings" in name:
            assert same, name
        elif name.endswith("weight") and "LayerNorm" not in name:
            assert not same, name
    everything, _ = load_encoder(str(tiny_bert))
    apply_setting(everything, "reset-all", "torch-default", seed=1)
    emb = everything.embeddings.word_embeddings.weight
    assert not torch.equal(emb, base.embeddings.word_embeddings.weight)
    assert 0.8 < emb.std().item() < 1.2  # torch default for Embedding is N(0, 1), as in the paper's code


def test_reset_is_seeded_and_leaves_global_rng_alone(tiny_bert):
    a, _ = load_encoder(str(tiny_bert))
    b, _ = load_encoder(str(tiny_bert))
    c, _ = load_encoder(str(tiny_bert))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    apply_setting(a, "reset-all", "torch-default", seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    apply_setting(b, "reset-all", "torch-default", seed=7)
    apply_setting(c, "reset-all", "torch-default", seed=8)
    wa, wb, wc = (m.encoder.layer[0].attention.self.query.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_model_initialiser_uses_initializer_range(tiny_bert):
    enc, _ = load_encoder(str(tiny_bert))
    apply_setting(enc, "reset-all", "model", seed=0)
    std = enc.encoder.layer[0].intermediate.dense.weight.std().item()
    assert abs(std - enc.config.initializer_range) < 0.005


@pytest.fixture(scope="module")
def far_from_init_bert(tmp_path_factory, tiny_bert):
    """The tiny BERT with every weight moved far from any initial value (x 7 + 0.5), saved: a stand-in for a
    pretrained model, whose loaded tensors transformers flags as initialised."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(7.0).add_(0.5)
    path = tmp_path_factory.mktemp("far-bert")
    model.save_pretrained(path)
    for f in tiny_bert.iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (path / f.name).write_bytes(f.read_bytes())
    return path


@pytest.mark.parametrize("setting", ["reset-all", "reset-encoder"])
def test_model_initialiser_replaces_loaded_weights(far_from_init_bert, setting):
    """--init model re-initialises for real: every reset tensor differs from the loaded one and follows the
    family's initialiser (BERT: Linear/Embedding N(0, initializer_range), zero biases, LayerNorm 1/0)."""
    enc, _ = load_encoder(str(far_from_init_bert))
    loaded = {k: v.clone() for k, v in enc.named_parameters()}
    apply_setting(enc, setting, "model", seed=0)
    std = enc.config.initializer_range
    checked = 0
    for name, p in enc.named_parameters():
        in_block = ".layer." in name
        if setting == "reset-encoder" and not in_block:
            assert torch.equal(p, loaded[name]), f"{name} is outside the blocks and must stay"
            continue
        assert not torch.equal(p, loaded[name]), f"{name} was not re-initialised"
        if "LayerNorm.weight" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        elif p.numel() >= 512:
            assert abs(p.std().item() - std) < 0.25 * std and abs(p.mean().item()) < 0.25 * std, name
        checked += 1
    assert checked >= 16


def test_unknown_setting_and_init():
    with pytest.raises(ConfigError, match="--setting"):
        resolve(ProbeConfig(setting="shuffled"))
    with pytest.raises(ConfigError, match="--init"):
        resolve(ProbeConfig(init="xavier"))


def test_cached_features_equal_fresh_features_in_eval(tiny_bert, tiny_ud):
    enc, tok = load_encoder(str(tiny_bert))
    ds = encode_dataset("dev", read_conllu(tiny_ud["dev"]), tok, 64)
    features = EncoderFeatures(enc, "last").eval()
    cached = CachedFeatures(features)
    cached.fill(ds, "last", tok.pad_token_id)
    assert len(cached.cache) == 3  # the dev file repeats 3 distinct sentences
    batch = collate(ds.encoded, [0, 1, 2, 3], "last", tok.pad_token_id)
    with torch.no_grad():
        fresh = features(batch)
    got = cached(batch)
    mask = batch.word_mask.clone()
    mask[:, 0] = True
    assert torch.allclose(got[mask], fresh[mask], atol=1e-6)


def test_sentences_with_the_same_subwords_split_into_other_words_are_cached_apart(tiny_bert):
    """``dog.`` (one word) and ``dog .`` (two) have the same subword ids; the cache once returned the first one's
    rows for the second, and a linear probe on the embedded EWT crashed with a shape mismatch."""
    from subprobe.data.records import Sentence

    enc, tok = load_encoder(str(tiny_bert))
    sentences = [Sentence(words=["the", "dog."]), Sentence(words=["the", "dog", "."]), Sentence(words=["a", "cat"])]
    ds = encode_dataset("x", sentences, tok, 64)
    assert ds.encoded[0].input_ids.tolist() == ds.encoded[1].input_ids.tolist()  # the same subwords
    features = EncoderFeatures(enc, "last").eval()
    cached = CachedFeatures(features)
    cached.fill(ds, "last", tok.pad_token_id)
    assert len(cached.cache) == 3
    batch = collate(ds.encoded, [0, 1, 2], "last", tok.pad_token_id)
    with torch.no_grad():
        fresh = features(batch)
    words = cached.words(batch)
    assert words.shape[0] == int(batch.word_mask.sum()) == 2 + 3 + 2
    assert torch.allclose(words, fresh[batch.word_mask], atol=1e-6)


@pytest.mark.parametrize("probe", ["finetune", "mlp", "linear"])
def test_one_optimiser_step_moves_encoder_weights_only_when_fine_tuning(tiny_bert, tiny_ud, probe):
    """One Adam step on the probe's own parameter groups, as the trainer takes it: fine-tuning changes every
    encoder matrix (embeddings included); MLP-1 and linear probes leave every encoder tensor as it was."""
    import numpy as np

    cfg = resolve(ProbeConfig(model=str(tiny_bert), probe=probe, rank="5", precision="fp32", cache_features=False))
    enc, tok = load_encoder(str(tiny_bert))
    head = TaggerHead(32, 17)
    built = build_probe(cfg, enc, head)
    ds = encode_dataset("dev", read_conllu(tiny_ud["dev"]), tok, 64)
    for e in ds.encoded:
        e.labels["upos"] = np.zeros(e.n_words, dtype=np.int64)
    batch = collate(ds.encoded, [0, 1], "last", tok.pad_token_id)
    encoder_before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    head_before = head.linear.weight.detach().clone()
    optimizer = torch.optim.Adam(built.param_groups)
    out = built.model(batch)
    torch.nn.functional.cross_entropy(out[batch.word_mask], batch.labels["upos"][batch.word_mask]).backward()
    optimizer.step()
    changed = {n for n, p in enc.named_parameters() if not torch.equal(p, encoder_before[n])}
    matrices = {n for n, p in enc.named_parameters() if p.dim() == 2}
    if probe == "finetune":
        # every matrix that the loss reaches moves (Adam's first step is +-lr per element with a gradient)
        assert matrices - {"pooler.dense.weight"} <= changed
        assert "pooler.dense.weight" not in changed  # the pooler is not on the path to the word features
    else:
        assert changed == set() and not any(p.requires_grad for p in enc.parameters())
    assert not torch.equal(head.linear.weight, head_before)


def test_feature_dropout_before_every_head_and_adapter():
    """Dropout 0.1 on the encoder's word features, before MLP-1 and the head (the paper's code), none in eval."""
    from subprobe.probes.base import FEATURE_DROPOUT, ProbeModel

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, word_mask=None):
            seen.append(x.detach().clone())
            return x

    features = torch.ones(4, 50, 64)
    model = ProbeModel(lambda batch: features, Recorder(), adapter=Recorder())
    assert FEATURE_DROPOUT == 0.1
    torch.manual_seed(0)
    model.train()
    model(type("B", (), {"word_mask": None})())
    dropped = seen[0]  # what the adapter (MLP-1) receives: already dropped out
    zero_fraction = float((dropped == 0).float().mean())
    assert 0.08 < zero_fraction < 0.12
    assert torch.allclose(dropped[dropped != 0], torch.full_like(dropped[dropped != 0], 1 / 0.9), atol=1e-2)
    seen.clear()
    model.eval()
    model(type("B", (), {"word_mask": None})())
    assert torch.equal(seen[0], features) and torch.equal(seen[1], features)
    assert TaggerHead(8, 3).dropout.p == 0.0  # the tagger adds none of its own


def test_mlp1_forward_is_relu_of_layernorm_of_the_low_rank_map():
    torch.manual_seed(0)
    mlp = MLP1(6, 2)
    with torch.no_grad():  # LayerNorm away from its identity initialisation, so that its weights matter too
        mlp.norm.weight.uniform_(0.5, 1.5)
        mlp.norm.bias.uniform_(-0.3, 0.3)
    x = torch.randn(3, 6)
    params = [t.tolist() for t in (mlp.down.weight, mlp.down.bias, mlp.up.weight, mlp.up.bias, mlp.norm.weight,
                                   mlp.norm.bias)]
    expected = torch.tensor([oracle.mlp1(row, *params) for row in x.tolist()])
    with torch.no_grad():
        got = mlp(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got == 0).any() and (got > 0).any()  # the ReLU is active on this input
