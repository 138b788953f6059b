"""Real checkpoint shapes without weights: the ``config.json`` facts of popular checkpoints (``tests/zoo/*.json``,
written from their model cards), each built with two layers on the ``meta`` device. Discovery, coverage, the
mask plan of every granularity and the mask-parameter counts (= bits) are held against hand formulas written
here from the configs alone, independently of subprobe's own planning code.

Hand rules: a matrix of ``out x in`` with the paper's block ``(R, C)`` scaled from width 768 gets
``(out / R') * (in / C')`` masks, where ``R' = R`` if ``R`` divides ``out`` else ``out`` (a whole-column unit)
and ``C' = C`` if ``C`` divides ``in`` else ``in`` (a whole-row unit). ``head``: per layer one mask per query
head, one per key/value head when there are fewer of them (grouped-query attention), one per FFN neuron.
``layer``: two per layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from subprobe.masking.layouts import Granularity
from subprobe.masking.shared import num_masks
from subprobe.masking.subnetwork import Subnetwork, granularity_fallbacks, install_masks
from subprobe.models.targets import discover

ZOO = sorted((Path(__file__).parent / "zoo").glob("*.json"))
LAYERS = 2
PAPER = [(768, 768), (768, 192), (768, 24), (768, 6), (768, 1), (192, 1), (24, 1), (6, 1), (1, 1)]
GATED = {"llama", "mistral", "qwen2", "gemma", "phi3", "modernbert"}


def facts(path: Path) -> dict:
    """Widths of a checkpoint, read from its config facts by hand."""
    c = json.loads(path.read_text())
    d = c.get("hidden_size") or c.get("n_embd") or c.get("dim")
    heads = c.get("num_attention_heads") or c.get("n_head") or c.get("n_heads")
    ff = c.get("intermediate_size") or c.get("ffn_dim") or c.get("hidden_dim") or c.get("n_inner") or 4 * d
    return {"type": c["model_type"], "d": d, "heads": heads, "kv": c.get("num_key_value_heads") or heads,
            "hd": c.get("head_dim") or d // heads, "ff": ff}


def hand_matrices(f: dict) -> list[tuple[str, int, int]]:
    """(role, out, in) of the projections of one block."""
    d, q, k = f["d"], f["heads"] * f["hd"], f["kv"] * f["hd"]
    ffn_in = [("ffn_in", f["ff"], d)] * (2 if f["type"] in GATED else 1)
    return [("q", q, d), ("k", k, d), ("v", k, d), ("o", d, q), *ffn_in, ("ffn_out", d, f["ff"])]


def hand_masks(f: dict, block: tuple[int, int]) -> int:
    total = 0
    for _, out, inp in hand_matrices(f):
        rows = block[0] if out % block[0] == 0 else out
        cols = block[1] if inp % block[1] == 0 else inp
        total += (out // rows) * (inp // cols)
    return LAYERS * total


def build(path: Path):
    from transformers import CONFIG_MAPPING, AutoModel

    values = json.loads(path.read_text())
    values.pop("hub_id")
    model_type = values.pop("model_type")
    for key in ("num_hidden_layers", "n_layer", "n_layers"):
        if key in values:
            values[key] = LAYERS
    with torch.device("meta"):
        return AutoModel.from_config(CONFIG_MAPPING[model_type](**values), attn_implementation="eager"), model_type


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_discovery_finds_every_projection_at_real_widths(path):
    model, model_type = build(path)
    found = discover(model, model_type)
    assert found.coverage == 1.0 and not found.missing and not found.unmasked
    for layer in range(LAYERS):
        got = sorted((t.role, *t.shape) for t in found.targets if t.layer == layer)
        assert got == sorted(hand_matrices(facts(path)))


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_granularity_plans_and_counts_at_real_widths(path):
    f = facts(path)
    d = f["d"]
    expected = {"weight": hand_masks(f, (1, 1)), "neuron": hand_masks(f, (d, 1)),
                "matrix": LAYERS * len(hand_matrices(f))}
    for k, block in enumerate(PAPER, start=1):
        assert all(s == 1 or s * d % 768 == 0 for s in block)  # every zoo width scales the paper's blocks exactly
        expected[f"paper-{k}"] = hand_masks(f, tuple(s if s == 1 else s * d // 768 for s in block))
    expected["head"] = LAYERS * (f["heads"] + (f["kv"] if f["kv"] != f["heads"] else 0) + f["ff"])
    expected["layer"] = LAYERS * 2
    assert expected["neuron"] == expected["paper-5"]
    for spec, count in expected.items():
        model, model_type = build(path)
        masked = install_masks(model, discover(model, model_type).targets, Granularity.parse(spec), "strided", d)
        assert num_masks(masked) == count, spec
        assert Subnetwork.from_modules(masked, spec).num_mask_params == count, spec  # bits = mask parameters
        for m in masked:  # every block divides its matrix
            assert m.weight.shape[0] % m.block[0] == 0 and m.weight.shape[1] % m.block[1] == 0


def test_fallbacks_are_named_where_the_width_is_not_a_multiple():
    """Llama-2-7B at neuron granularity: its FFN-in rows (11008) are not whole groups of d = 4096 rows, so each
    gate/up matrix gets one mask per input column (whole-column units); nothing else falls back."""
    model, model_type = build(next(p for p in ZOO if p.stem == "Llama-2-7b-hf"))
    masked = install_masks(model, discover(model, model_type).targets, Granularity.parse("neuron"), "strided", 4096)
    assert granularity_fallbacks(masked) == [
        {"role": "ffn_in", "shape": [11008, 4096], "asked": [4096, 1], "block": [11008, 1], "unit": "whole-column",
         "matrices": 2 * LAYERS}]
    bert, _ = build(next(p for p in ZOO if p.stem == "bert-base-uncased"))
    masked = install_masks(bert, discover(bert, "bert").targets, Granularity.parse("neuron"), "strided", 768)
    assert granularity_fallbacks(masked) == []


#: The FFN ratios of real checkpoints at width 64 (Llama-2-7B 11008/4096, Phi-3-mini 8192/3072, Qwen2-0.5B
#: 4864/896, ModernBERT-base 1152/768): refused at neuron granularity before whole-column units existed.
REAL_RATIOS = {"llama": 172, "phi3": 170, "qwen2": 347, "modernbert": 96}


@pytest.mark.parametrize("model_type", list(REAL_RATIOS))
def test_a_run_trains_at_a_real_ffn_ratio(model_type, tmp_path, tiny_ud):
    from subprobe.cli import main
    from tests.conftest import probe_argv
    from tests.tiny_families import build_family

    ff = REAL_RATIOS[model_type]
    path = build_family(tmp_path / model_type, model_type, hidden_size=64, intermediate_size=ff)
    out = tmp_path / "run"
    assert main(probe_argv(path, tiny_ud, out, "--granularity", "neuron", epochs=1)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    kv = 2 if model_type in ("llama", "phi3", "qwen2") else 4
    f = {"type": model_type, "d": 64, "heads": 4, "kv": kv, "hd": 16, "ff": ff}
    assert metrics["mask_params"] == metrics["bits"]["lower"] == hand_masks(f, (64, 1))
    assert {(x["role"], x["unit"]) for x in metrics["granularity_fallbacks"]} >= {("ffn_in", "whole-column")}
    assert 0.0 <= metrics["expected_density"] <= 1.0
