"""Kept fractions per layer, matrix type and head from hand-built subnetworks; the Figure 2 selection rule."""

import pytest
import torch

from subprobe.errors import SubprobeError
from subprobe.masking.subnetwork import MaskEntry, Subnetwork
from subprobe.report import localisation
from tests.synthetic_runs import make_store

KEEP, DROP = 3.0, -3.0
ROLE_SHAPES = (("q", (8, 8)), ("k", (8, 8)), ("v", (8, 8)), ("o", (8, 8)), ("ffn_in", (16, 8)), ("ffn_out", (8, 16)))


def _weight_level(masks: dict, layers: int = 2, layout: str = "strided") -> Subnetwork:
    """A 2-layer width-8 model (2 heads of 4) with one mask per weight; ``masks[(layer, role)]`` is a 0/1 tensor."""
    entries = []
    for layer in range(layers):
        for role, shape in ROLE_SHAPES:
            kept = masks.get((layer, role), torch.zeros(shape))
            log_alpha = torch.where(kept.bool(), torch.tensor(KEEP), torch.tensor(DROP))
            entries.append(MaskEntry(f"l{layer}.{role}", role, layer, shape, (1, 1), log_alpha))
    return Subnetwork(tuple(entries), layout, "weight")


def _hand_built() -> Subnetwork:
    q = torch.zeros(8, 8)
    q[0:4] = 1  # layer 0: Q rows of head 0 (32 weights)
    o = torch.zeros(8, 8)
    o[0:4, 4:8] = 1  # layer 0: O columns of head 1, half their rows (16 weights)
    return _weight_level({(0, "q"): q, (0, "o"): o, (1, "ffn_in"): torch.ones(16, 8)})  # layer 1: all FFN-in (128)


def test_layer_matrix_type_and_head_fractions_by_hand():
    loc = localisation.localise(_hand_built(), num_heads=2)
    assert loc["layers"] == [0, 1]
    assert loc["layer"]["kept"] == [48, 128] and loc["layer"]["total"] == [512, 512]
    assert loc["layer"]["fraction"] == [48 / 512, 128 / 512]
    assert loc["matrix_types"] == ["q", "k", "v", "o", "ffn_in", "ffn_out"]
    assert loc["layer_matrix"] == [[0.5, 0, 0, 0.25, 0, 0], [0, 0, 0, 0, 1.0, 0]]
    heads = loc["heads"]
    assert heads["num_heads"] == 2 and heads["head_dim"] == 4
    # a head owns 32 weights of each of Q, K, V (rows) and O (columns): 128
    assert heads["fraction"] == [[32 / 128, 16 / 128], [0.0, 0.0]]
    assert loc["density"] == pytest.approx(176 / 1024)


def test_centre_of_mass_over_kept_weights():
    loc = localisation.localise(_hand_built(), num_heads=None)
    assert loc["heads"] is None
    assert loc["centre_of_mass"] == pytest.approx((0 * 48 + 1 * 128) / 176)
    assert loc["centre_of_mass_normalised"] == pytest.approx(128 / 176)  # L - 1 = 1
    assert localisation.centre_of_mass([0, 10, 0, 30]) == pytest.approx((10 + 90) / 40)
    assert localisation.centre_of_mass([0, 0]) is None
    empty = localisation.localise(_weight_level({}), num_heads=2)
    assert empty["centre_of_mass"] is None and empty["centre_of_mass_normalised"] is None


@pytest.mark.parametrize("layout, expected", [("strided", [0.5, 0.5]), ("contiguous", [1.0, 0.0])])
def test_head_fractions_follow_the_mask_layout(layout, expected):
    # Q mask of shape (2, 8) with blocks of (4, 1): the first mask row kept. Strided: weight rows r with
    # r mod 2 == 0 are kept (half of each head); contiguous: rows 0..3 (all of head 0).
    entries = [MaskEntry("q", "q", 0, (8, 8), (4, 1), torch.tensor([[KEEP] * 8, [DROP] * 8])),
               MaskEntry("o", "o", 0, (8, 8), (1, 1), torch.full((8, 8), DROP))]
    sub = Subnetwork(tuple(entries), layout, "4,1")
    q_only = localisation.head_fractions(sub, 2)["fraction"][0]
    # Q contributes 32 kept weights of 32 per head at most; O adds 32 dropped weights per head
    assert [f * 64 / 32 for f in q_only] == expected


def test_grouped_key_value_heads_serve_several_query_heads():
    entries = [MaskEntry("q", "q", 0, (8, 8), (1, 1), torch.full((8, 8), DROP)),
               MaskEntry("k", "k", 0, (4, 8), (1, 1), torch.tensor([[KEEP] * 8] * 2 + [[DROP] * 8] * 2)),
               MaskEntry("o", "o", 0, (8, 8), (1, 1), torch.full((8, 8), DROP))]
    # 4 query heads of 2, 2 K heads of 2 rows: K head 0 (kept) serves query heads 0 and 1
    fractions = localisation.head_fractions(Subnetwork(tuple(entries), "strided", "weight"), 4)["fraction"][0]
    assert fractions == [16 / 48, 16 / 48, 0.0, 0.0]


def test_head_count_that_does_not_divide_is_an_error():
    with pytest.raises(SubprobeError, match="heads"):
        localisation.head_fractions(_hand_built(), 3)


def test_head_count_comes_from_override_metrics_or_model_config(tiny_bert):
    assert localisation.num_heads_for({"model": "x"}, override=6) == (6, "given")
    assert localisation.num_heads_for({"num_attention_heads": 12, "model": "x"})[0] == 12
    assert localisation.num_heads_for({"model": str(tiny_bert)})[0] == 4
    heads, why = localisation.num_heads_for({"model": "/no/such/model"})
    assert heads is None and "--num-heads" in why


def _run(task, probe, acc, setting="pretrained", lam=1.0, granularity="neuron"):
    return {"task": task, "probe": probe, "setting": setting, "model": "m", "primary_metric": "accuracy",
            "dev": {"accuracy": acc}, "density": 0.1 * lam, "run_dir": f"/r/{task}-{probe}-{setting}-{lam}",
            "config": {"lambda_max": lam, "granularity": granularity}}


def test_selection_rule_largest_lambda_within_ten_percent_of_finetuning():
    results = [_run("upos", "finetune", 0.95)]
    results += [_run("upos", "subnetwork", a, lam=lam) for lam, a in ((1.0, 0.93), (5.0, 0.90), (25.0, 0.86),
                                                                         (125.0, 0.80))]
    results += [_run("upos", "subnetwork", a, "reset-encoder", lam) for lam, a in ((1.0, 0.80), (5.0, 0.70))]
    results.append(_run("upos", "subnetwork", 0.99, lam=125.0, granularity="paper-1"))  # not a neuron subnetwork
    by_setting = {s["setting"]: s for s in localisation.select_lambda(results)}
    pre = by_setting["pretrained"]
    assert pre["threshold"] == pytest.approx(0.855)  # 0.9 x 0.95
    assert pre["selected_lambda"] == 25.0 and pre["rule_met"] is True
    assert [c["within"] for c in pre["candidates"]] == [True, True, True, False]
    reset = by_setting["reset-encoder"]
    assert reset["reference"] == {"setting": "pretrained", "accuracy": 0.95}
    assert reset["selected_lambda"] == 1.0 and reset["rule_met"] is False and "smallest" in reset["note"]
    # a fine-tuning run in the same setting is the reference for that setting
    results.append(_run("upos", "finetune", 0.85, "reset-encoder"))
    reset = {s["setting"]: s for s in localisation.select_lambda(results)}["reset-encoder"]
    assert reset["threshold"] == pytest.approx(0.765) and reset["selected_lambda"] == 1.0 and reset["rule_met"]
    # no fine-tuning run at all: the smallest lambda, rule not applicable
    alone = localisation.select_lambda([r for r in results if r["probe"] != "finetune"])
    assert all(s["rule_met"] is None and s["selected_lambda"] == 1.0 for s in alone)


def test_localisation_report_from_a_store(tmp_path, tiny_bert):
    from subprobe.report.loading import load_results

    make_store(tmp_path / "store", str(tiny_bert))
    report = localisation.localisation_report(load_results(tmp_path / "store"))
    sel = {(e["task"], e["setting"]): e for e in report["selections"]}
    assert sel[("upos", "pretrained")]["selected_lambda"] == 5.0  # 0.76 >= 0.9 x 0.84; 0.72 is not
    assert sel[("dep", "pretrained")]["selected_lambda"] == 1.0
    assert sel[("upos", "reset-encoder")]["rule_met"] is False
    for e in report["selections"]:
        assert e["localisation"]["heads"]["num_heads"] == 4 and e["heads_source"].startswith("config of model")
    assert report["order"]["pretrained"] == "upos < dep"
    com = report["centre_of_mass"]
    assert com["upos"]["pretrained"]["normalised"] < 0.5 < com["dep"]["pretrained"]["normalised"]
    csv_text = localisation.heads_csv(report)
    assert len(csv_text.splitlines()) == 1 + 4 * 2 * 4  # 4 selections x 2 layers x 4 heads
    assert "upos < dep" in localisation.summary_markdown(report)


def test_two_models_in_one_directory_are_localised_apart(tmp_path, tiny_bert):
    import shutil

    from subprobe.report.loading import load_results

    twin = tmp_path / "twin-bert"
    shutil.copytree(tiny_bert, twin)  # same weights, another name: a second series
    make_store(tmp_path / "runs" / "a", str(tiny_bert))
    make_store(tmp_path / "runs" / "b", str(twin), tasks=("upos",))
    report = localisation.localisation_report(load_results(tmp_path / "runs"))
    first = f"upos ({tiny_bert.name})"
    assert set(report["centre_of_mass"]) == {first, f"dep ({tiny_bert.name})", "upos (twin-bert)"}
    assert report["order"][f"pretrained, {tiny_bert.name}"] == "upos < dep"
    assert report["order"]["pretrained, twin-bert"] == "upos"
    summary = localisation.summary_markdown(report)
    assert "| task | series | setting |" in summary and "| upos | twin-bert | pretrained |" in summary


def test_paper_statistic_mean_soft_qkv_normalised_by_hand():
    """The paper's Figure 2 statistic: per layer the mean soft mask over Q, K, V (FFN and O ignored), normalised."""
    from subprobe.masking import hard_concrete as hc

    soft_keep = float(hc.soft_mask(torch.tensor(KEEP)))  # 1.2 * sigmoid(3) - 0.1, clamped: 1.0
    soft_drop = float(hc.soft_mask(torch.tensor(DROP)))  # clamped to 0.0
    q = torch.zeros(8, 8)
    q[0:4] = 1  # layer 0: half of Q kept -> mean over Q, K, V = (32 * keep) / 192
    masks = {(0, "q"): q, (0, "o"): torch.ones(8, 8), (1, "q"): torch.ones(8, 8), (1, "k"): torch.ones(8, 8),
             (1, "ffn_in"): torch.ones(16, 8)}
    paper = localisation.localise(_weight_level(masks), num_heads=None)["paper"]
    mean0 = (32 * soft_keep + 160 * soft_drop) / 192
    mean1 = (128 * soft_keep + 64 * soft_drop) / 192
    assert paper["mean_soft_qkv"] == pytest.approx([mean0, mean1])
    assert paper["normalised"] == pytest.approx([mean0 / (mean0 + mean1), mean1 / (mean0 + mean1)])
    assert paper["centre_of_mass"] == pytest.approx(mean1 / (mean0 + mean1))
    assert paper["centre_of_mass_normalised"] == pytest.approx(mean1 / (mean0 + mean1))  # L - 1 = 1
    # a fractional soft mask counts with its value (not binarised): log-alpha 0 -> 1.2 * 0.5 - 0.1 = 0.5
    entries = [MaskEntry(f"l0.{r}", r, 0, (8, 8), (8, 1), torch.zeros(1, 8)) for r in ("q", "k", "v", "ffn_in")]
    half = localisation.localise(Subnetwork(tuple(entries), "strided", "neuron"), num_heads=None)["paper"]
    assert half["mean_soft_qkv"] == pytest.approx([0.5])
    assert half["normalised"] == pytest.approx([1.0])
