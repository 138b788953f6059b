"""``--granularity head`` and ``layer``: masks shared across matrices, counted by hand on the tiny BERT
(hidden 32, 4 heads of 8, FFN 64, 2 layers)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from subprobe.cli import main
from subprobe.errors import ConfigError
from subprobe.masking import hard_concrete as hc
from subprobe.masking.layouts import Granularity
from subprobe.masking.shared import SharedMaskedLinear, mask_groups, num_masks, shared_plan
from subprobe.masking.subnetwork import Subnetwork, install_masks, l0_penalty, set_mask_mode
from subprobe.models.targets import MaskTarget, find_targets
from tests.conftest import probe_argv
from tests.test_families import family_path, hidden, load  # noqa: F401 (fixture)
from tests.tiny_families import FAMILIES, NH

K, D = 60.0, -60.0
PREFIX = "encoder.layer"


def _masked(path, unit: str):
    model = AutoModel.from_pretrained(path).eval()
    return model, install_masks(model, find_targets(model, "bert"), Granularity.parse(unit), "strided", 32)


def _by_name(masked) -> dict:
    return {m.name.removeprefix(f"{PREFIX}."): m for m in masked}


def test_mask_counts_by_hand(tiny_bert) -> None:
    _, head = _masked(tiny_bert, "head")
    assert num_masks(head) == 2 * (4 + 64) and len(mask_groups(head)) == 4
    m = _by_name(head)
    assert tuple(m["0.attention.self.query"].log_alpha.shape) == (4, 1) and m["0.attention.self.query"].block == (8, 32)
    assert tuple(m["0.attention.output.dense"].log_alpha.shape) == (1, 4)
    assert m["0.attention.output.dense"].block == (32, 8)
    assert tuple(m["1.intermediate.dense"].log_alpha.shape) == (64, 1) and m["1.intermediate.dense"].block == (1, 32)
    assert tuple(m["1.output.dense"].log_alpha.shape) == (1, 64) and m["1.output.dense"].block == (32, 1)
    _, layer = _masked(tiny_bert, "layer")
    assert num_masks(layer) == 2 * 2 and all(x.log_alpha.numel() == 1 for x in layer)
    sub = Subnetwork.from_modules(head, "head")
    assert sub.num_mask_params == 136 and sub.layout == "contiguous"
    assert {e.group for e in sub.entries} == {f"layer.{i}.{p}" for i in (0, 1) for p in ("attention", "ffn")}


def _drop_head1_and_neuron5(masked) -> None:
    m = _by_name(masked)
    with torch.no_grad():
        for x in masked:
            x.shared.log_alpha.fill_(K)
        m["0.attention.self.query"].shared.log_alpha[1] = D  # the group: Q, K, V rows 8..15, O columns 8..15
        m["1.intermediate.dense"].shared.log_alpha[5] = D  # FFN-in row 5, FFN-out column 5


def test_a_dropped_head_zeroes_exactly_its_rows_and_columns(tiny_bert, tmp_path) -> None:
    _, masked = _masked(tiny_bert, "head")
    _drop_head1_and_neuron5(masked)
    sub = Subnetwork.from_modules(masked, "head")
    path = tmp_path / "masks.safetensors"
    sub.save(path)
    loaded = Subnetwork.load(path)
    assert len(loaded.entries) == len(sub.entries) == 12
    for a, b in zip(loaded.entries, sub.entries):
        assert (a.name, a.group, a.block, a.shape, a.module) == (b.name, b.group, b.block, b.shape, b.module)
        assert a.rows == b.rows == ()
        assert torch.equal(a.log_alpha, b.log_alpha)
    assert loaded.num_mask_params == 136
    # 3 x (8 rows x 32) + 32 x 8 columns in layer 0, 32 + 32 weights of neuron 5 in layer 1, of 2 x 8192
    assert sub.kept_weights() == 16384 - 1024 - 64 and loaded.density() == pytest.approx((16384 - 1088) / 16384)
    assert sub.density_by("role") == pytest.approx({"q": 1 - 256 / 2048, "k": 1 - 256 / 2048, "v": 1 - 256 / 2048,
                                                    "o": 1 - 256 / 2048, "ffn_in": 1 - 32 / 4096,
                                                    "ffn_out": 1 - 32 / 4096})
    base = AutoModel.from_pretrained(tiny_bert)
    baked = loaded.bake(AutoModel.from_pretrained(tiny_bert))
    params, before = dict(baked.named_parameters()), dict(base.named_parameters())
    zeroed = {}
    for name, w in params.items():
        if w.dim() == 2 and not torch.equal(w, before[name]):
            zeroed[name] = (w == 0) & (before[name] != 0)
            assert torch.equal(w[~zeroed[name]], before[name][~zeroed[name]])
    rows = torch.zeros(32, 32, dtype=torch.bool)
    rows[8:16] = True
    assert set(zeroed) == {f"{PREFIX}.0.attention.self.{r}.weight" for r in ("query", "key", "value")} | {
        f"{PREFIX}.0.attention.output.dense.weight", f"{PREFIX}.1.intermediate.dense.weight",
        f"{PREFIX}.1.output.dense.weight"}
    for r in ("query", "key", "value"):
        assert torch.equal(zeroed[f"{PREFIX}.0.attention.self.{r}.weight"], rows)
    assert torch.equal(zeroed[f"{PREFIX}.0.attention.output.dense.weight"], rows.t())
    assert zeroed[f"{PREFIX}.1.intermediate.dense.weight"].nonzero()[:, 0].unique().tolist() == [5]
    assert zeroed[f"{PREFIX}.1.output.dense.weight"].nonzero()[:, 1].unique().tolist() == [5]


def test_hard_masked_forward_equals_the_baked_model(tiny_bert) -> None:
    model, masked = _masked(tiny_bert, "head")
    _drop_head1_and_neuron5(masked)
    set_mask_mode(model, "hard")
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    baked = Subnetwork.from_modules(masked, "head").bake(AutoModel.from_pretrained(tiny_bert).eval())
    with torch.no_grad():
        torch.testing.assert_close(hidden(model, ids), hidden(baked, ids), atol=1e-5, rtol=0)


def test_training_shares_one_sample_and_one_gradient_per_group(tiny_bert) -> None:
    model, masked = _masked(tiny_bert, "head")
    model.train()
    seen = {}

    def record(mod, args, out) -> None:
        seen.setdefault(mod.name, mod.current_mask().detach())

    for m in masked:
        m.register_forward_hook(record)
    torch.manual_seed(0)
    model(input_ids=torch.tensor([[2, 7, 9, 3]])).last_hidden_state.sum().backward()
    q, k, o = (seen[f"{PREFIX}.0.{n}"] for n in ("attention.self.query", "attention.self.key",
                                                 "attention.output.dense"))
    assert torch.equal(q, k) and torch.equal(q.view(-1), o.view(-1))
    assert not torch.equal(q.view(-1), seen[f"{PREFIX}.1.attention.self.query"].view(-1))  # another group
    groups = mask_groups(masked)
    assert all(p.is_leaf and p.grad is not None and p.grad.abs().sum() > 0 for p in groups)
    torch.optim.Adam(groups).step()  # leaf parameters, each once


def test_penalty_counts_each_shared_mask_once(tiny_bert) -> None:
    _, masked = _masked(tiny_bert, "head")
    m = _by_name(masked)
    with torch.no_grad():
        for x in masked:
            x.shared.log_alpha.fill_(0.0)
        m["0.attention.self.query"].shared.log_alpha.fill_(3.0)
    p0, p3 = (float(hc.expected_l0(torch.tensor(v))) for v in (0.0, 3.0))
    assert l0_penalty(masked, "matrix-mean").item() == pytest.approx((p3 + 3 * p0) / 4, rel=1e-6)
    assert l0_penalty(masked, "param-mean").item() == pytest.approx((4 * p3 + 132 * p0) / 136, rel=1e-6)


def test_grouped_query_heads_and_unknown_roles() -> None:
    """4 query heads of 8 rows, 2 K/V heads: Q and O share the query heads' group, K and V the K/V heads' group."""
    t = [MaskTarget("q", "q", 0, (32, 32)), MaskTarget("k", "k", 0, (16, 32)), MaskTarget("v", "v", 0, (16, 32)),
         MaskTarget("o", "o", 0, (32, 32))]
    assert [p[1:] for p in shared_plan(t, "head", 4)] == [
        ((8, 32), "layer.0.attention", 4), ((8, 32), "layer.0.kv", 2), ((8, 32), "layer.0.kv", 2),
        ((32, 8), "layer.0.attention", 4)]
    assert [p[1:] for p in shared_plan(t[:2], "layer", 4)] == [((32, 32), "layer.0.attention", 1),
                                                               ((16, 32), "layer.0.attention", 1)]
    with pytest.raises(ConfigError, match="not whole heads of 8 rows"):
        shared_plan([t[0], MaskTarget("k", "k", 0, (12, 32))], "head", 4)
    with pytest.raises(ConfigError, match="neither attention nor FFN"):
        shared_plan([MaskTarget("x", "other", 0, (32, 32))], "head", 4)


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_every_family_masks_per_head(model_type, family_path):  # noqa: F811
    """Query heads and (grouped-query) K/V heads are units of every family; all masks at 1 reproduce the model."""
    path = family_path(model_type)
    reference, model = load(path), load(path)
    from subprobe.models.targets import discover

    targets = discover(model, model_type).targets
    kv = getattr(model.config, "num_key_value_heads", NH)
    masked = install_masks(model, targets, Granularity.parse("head"), "strided", 32)
    assert all(isinstance(m, SharedMaskedLinear) for m in masked)
    ffn_in = {t.shape[0] for t in targets if t.role == "ffn_in"}
    assert num_masks(masked) == 2 * (NH + (kv if kv != NH else 0) + ffn_in.pop())
    groups = {m.group for m in masked if m.role in ("k", "v")}
    assert groups == ({"layer.0.kv", "layer.1.kv"} if kv != NH else {"layer.0.attention", "layer.1.attention"})
    set_mask_mode(model, "hard")
    ids = torch.randint(5, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in mask_groups(masked):
            p.fill_(10.0)
        torch.testing.assert_close(hidden(model, ids), hidden(reference, ids), atol=1e-5, rtol=0)


def test_probe_cli_with_head_masks_records_bits(tiny_bert, tiny_ud, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--granularity", "head", epochs=1)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mask_params"] == 136 and metrics["bits"]["lower"] == 136
    from subprobe.loaded import load_run

    run = load_run(out)
    assert run.subnetwork.num_mask_params == 136


def test_a_dropped_kv_head_zeroes_exactly_its_k_and_v_rows(family_path) -> None:  # noqa: F811
    """Tiny Llama (4 query heads of 8 rows, 2 K/V heads): dropping K/V head 1 zeroes K and V rows 8..15 and
    nothing else; the hard-masked forward equals the model with those rows zeroed by hand."""
    from subprobe.models.targets import discover

    path = family_path("llama")
    model, reference = load(path), load(path)
    masked = install_masks(model, discover(model, "llama").targets, Granularity.parse("head"), "strided", 32)
    by = {m.name.removeprefix("layers."): m for m in masked}
    with torch.no_grad():
        for p in mask_groups(masked):
            p.fill_(K)
        by["0.self_attn.k_proj"].shared.log_alpha[1] = D
        for name in ("k_proj", "v_proj"):
            reference.get_submodule(f"layers.0.self_attn.{name}").weight[8:16] = 0.0
    sub = Subnetwork.from_modules(masked, "head")
    assert sub.num_mask_params == 2 * (4 + 2 + 64)
    assert sub.density_by("role")["k"] == pytest.approx(1 - 8 * 32 / (2 * 16 * 32))
    assert sub.density_by("role")["q"] == 1.0
    set_mask_mode(model, "hard")
    ids = torch.randint(5, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hidden(model, ids), hidden(reference, ids), atol=1e-5, rtol=0)
