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
    for probe, expected in (("mlp", 32 * 5 + 5 + 5 * 32 + 32 + 64), ("linear", 32 * 17 + 17), ("finetune", None)):
        cfg = ProbeConfig(model=str(tiny_bert), probe=probe, rank="5", precision="fp32").resolved()
        encoder, _ = load_encoder(str(tiny_bert))
        built = build_probe(cfg, encoder, TaggerHead(32, 17))
        n = expected if expected is not None else sum(p.numel() for p in encoder.parameters())
        assert built.bits() == {"lower": n, "upper": 32 * n}


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


def test_unknown_setting_and_init():
    with pytest.raises(ConfigError, match="--setting"):
        ProbeConfig(setting="shuffled").resolved()
    with pytest.raises(ConfigError, match="--init"):
        ProbeConfig(init="xavier").resolved()


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


def test_finetune_trains_encoder_weights(tiny_bert, tiny_ud):
    cfg = ProbeConfig(model=str(tiny_bert), probe="finetune", precision="fp32").resolved()
    enc, tok = load_encoder(str(tiny_bert))
    built = build_probe(cfg, enc, TaggerHead(32, 17))
    ds = encode_dataset("dev", read_conllu(tiny_ud["dev"]), tok, 64)
    import numpy as np

    for e in ds.encoded:
        e.labels["upos"] = np.zeros(e.n_words, dtype=np.int64)
    batch = collate(ds.encoded, [0, 1], "last", tok.pad_token_id)
    out = built.model(batch)
    torch.nn.functional.cross_entropy(out[batch.word_mask], batch.labels["upos"][batch.word_mask]).backward()
    assert enc.encoder.layer[0].attention.self.query.weight.grad is not None
