"""Grids as data, the resumable store and sweep, and Tables 1/2 from results."""

import json

import pytest

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.experiments.grids import load_grid
from subprobe.experiments.store import Store, config_key
from subprobe.experiments.sweep import run_points, seeds_axis
from subprobe.report.tables import claims, claims_text, table1, table2


def test_table1_grid_has_27_points_and_restricts():
    grid = load_grid("table1")
    points = grid.points("quick")
    assert len(points) == 27
    assert {p["probe"] for p in points} == {"subnetwork", "mlp", "finetune"}
    assert all(p["profile"] == "quick" and p["max_train_samples"] == 3000 for p in points)
    assert len(grid.points("quick", task=["upos"])) == 9
    with pytest.raises(ConfigError):
        grid.points("quick", task=["srl"])
    assert len(seeds_axis(points, 3)) == 81
    assert len(load_grid("table2").points("quick")) == 54


def test_config_key_ignores_output_fields_and_sees_result_fields():
    a = ProbeConfig(out="x", progress=False)
    b = ProbeConfig(out="y", progress=True)
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key(ProbeConfig(lambda_max=5.0))
    assert config_key(a) == config_key(ProbeConfig(epochs=3))  # the quick profile's own value


def test_sweep_skips_finished_and_records_failures(tiny_bert, tiny_ud, tmp_path):
    base = {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32"}
    points = [{"probe": "mlp", "rank": "2"}, {"probe": "linear"}, {"probe": "linear", "test": str(tmp_path / "nope")}]
    store = Store(tmp_path / "store")
    messages = []
    counts = run_points(points, store, base, echo=lambda *a, **k: messages.append(a[0]))
    assert counts == {"done": 2, "skipped": 0, "failed": 1}
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    failed = [e for e in index.values() if e["status"] == "failed"]
    assert len(failed) == 1 and "no such file" in failed[0]["error"]
    assert len(store.results()) == 2
    again = run_points(points, store, base, echo=lambda *a, **k: None)
    assert again == {"done": 0, "skipped": 2, "failed": 1}


def fake(task, probe, setting, value, lam=1.0, rank="d", density=None, seed=0, macro=None, soft=None):
    """A finished run: micro ``value`` (dev; test 0.01 lower), macro accuracy ``macro`` (default value - 0.02) and
    for subnetworks a soft-mask macro accuracy ``soft`` (default macro + 0.005)."""
    macro = value - 0.02 if macro is None else macro
    m = {"task": task, "probe": probe, "setting": setting, "primary_metric": "accuracy",
         "dev": {"accuracy": value, "accuracy_macro": macro}, "test": {"accuracy": value - 0.01},
         "config": {"lambda_max": lam, "rank": rank, "seed": seed}}
    if probe == "subnetwork":
        m["dev_soft"] = {"accuracy": value, "accuracy_macro": macro + 0.005 if soft is None else soft}
    if density is not None:
        m["density"] = density
    return m


def test_table1_values_means_and_claims():
    results = [
        fake("upos", "subnetwork", "pretrained", 0.90, density=0.5), fake("upos", "subnetwork", "pretrained", 0.92),
        fake("upos", "mlp", "pretrained", 0.85), fake("upos", "mlp", "reset-encoder", 0.80),
        fake("upos", "subnetwork", "reset-encoder", 0.70), fake("upos", "subnetwork", "reset-all", 0.60),
        fake("upos", "mlp", "reset-all", 0.65), fake("upos", "finetune", "pretrained", 0.95),
        fake("upos", "mlp", "pretrained", 0.10, rank="1"),  # not full rank: not in the table
    ]
    md, csv_text = table1(results, "dev", "tiny")
    # per setting: ours as the paper measures (soft macro), the paper's bert-base number, our headline (micro, hard)
    # headline: mean of 0.90 and 0.92 = 91.00, sample std = 1.41; soft macro: 88.50 and 90.50 -> 89.50 ± 1.41;
    # t interval over 2 seeds: mean -+ t(0.975, 1) = 12.7062 x sd / sqrt(2) = 12.71 points, clipped at 100
    assert ("| Part-of-speech tagging | Subnetworks | 89.50 ± 1.41 [76.79, 100.00] | 93.39 "
            "| 91.00 ± 1.41 [78.29, 100.00] | 68.50 | 87.53 | 70.00 | 58.50 | 71.53 | 60.00 |") in md
    assert ("| Part-of-speech tagging | MLP-1 | 83.00 | 90.25 | 85.00 | 78.00 | 86.53 | 80.00 | 63.00 | 69.16 "
            "| 65.00 |") in md
    assert "| Part-of-speech tagging | Fine-tuning | 93.00 | 95.69 | 95.00 | – | 86.47 | – | – | 84.42 | – |" in md
    assert csv_text.splitlines()[0] == (
        "task,probe,pretrained_comparable,pretrained_paper,pretrained_headline,reset-encoder_comparable,"
        "reset-encoder_paper,reset-encoder_headline,reset-all_comparable,reset-all_paper,reset-all_headline,split,series"
    )
    untested = {"subnetwork_above_mlp_pretrained": None, "subnetwork_below_mlp_reset": None}
    both = {"subnetwork_above_mlp_pretrained": True, "subnetwork_below_mlp_reset": True,
            "p_values": untested, "p_values_seeds": untested}  # no run directories: nothing to resample
    assert claims(results) == {"upos": {"headline": both, "paper_comparable": both}}
    assert claims_text(claims(results)).splitlines() == [
        "upos (headline, hard mask): subnetwork > MLP-1 on the pretrained model: yes; "
        "subnetwork < MLP-1 on both reset models: yes",
        "upos (paper's metric, soft mask): subnetwork > MLP-1 on the pretrained model: yes; "
        "subnetwork < MLP-1 on both reset models: yes",
    ]


def test_claims_are_tested_separately_on_each_kind_of_value():
    """Headline (micro, hard mask) and paper-comparable (macro, soft mask) can disagree: each is reported."""
    results = [
        fake("upos", "subnetwork", "pretrained", 0.90, soft=0.80), fake("upos", "mlp", "pretrained", 0.85, macro=0.84),
        fake("upos", "subnetwork", "reset-encoder", 0.70), fake("upos", "mlp", "reset-encoder", 0.80),
        fake("upos", "subnetwork", "reset-all", 0.60), fake("upos", "mlp", "reset-all", 0.65),
    ]
    found = claims(results)["upos"]
    assert found["headline"]["subnetwork_above_mlp_pretrained"] is True
    assert found["paper_comparable"]["subnetwork_above_mlp_pretrained"] is False  # soft 0.80 < MLP-1 macro 0.84
    assert found["headline"]["subnetwork_below_mlp_reset"] is found["paper_comparable"]["subnetwork_below_mlp_reset"]


def test_runs_of_different_budgets_are_never_averaged_together():
    from subprobe.report.loading import label_series
    from subprobe.report.pareto import pareto_report

    small = {"max_train_samples": 1500, "max_eval_samples": 500, "epochs": 2}
    big = {"max_train_samples": 3000, "max_eval_samples": 1000, "epochs": 3}
    results = []
    for budget, sub, mlp in ((small, 0.80, 0.70), (big, 0.90, 0.85)):
        for m in (fake("upos", "subnetwork", "pretrained", sub), fake("upos", "mlp", "pretrained", mlp)):
            m["model"] = "/models/tiny"
            m["config"].update(budget, granularity="neuron")
            m["mask_params"], m["bits"] = 100, {"lower": 100.0, "upper": 100.0}
            if m["probe"] == "mlp":
                m["bits"] = {"lower": 1000.0, "upper": 32000.0}
            results.append(m)
    label_series(results)
    assert {r["series"] for r in results} == {"tiny [train 1500, eval 500, 2 ep]", "tiny [train 3000, eval 1000, 3 ep]"}
    md, csv_text = table1(results, "dev", "tiny")
    assert md.count("### Ours") == 2
    assert "| Part-of-speech tagging | Subnetworks | 78.50 | 93.39 | 80.00 | – | 87.53 | – |" in md  # not 85.00 ± 7.07
    assert "| Part-of-speech tagging | Subnetworks | 88.50 | 93.39 | 90.00 | – | 87.53 | – |" in md
    assert csv_text.splitlines()[1].endswith(',dev,"tiny [train 1500, eval 500, 2 ep]"')  # quoted: commas
    found = claims(results)  # per series, not pooled: 80 > 70 and 90 > 85 each hold on their own
    assert set(found) == {"upos (tiny [train 1500, eval 500, 2 ep])", "upos (tiny [train 3000, eval 1000, 3 ep])"}
    assert all(c["subnetwork_above_mlp_pretrained"] and c["subnetwork_below_mlp_reset"] is None
               for kinds in found.values() for c in kinds.values())
    curves = pareto_report(results, "dev")
    assert len(curves) == 2 and {c["model"] for c in curves} == {r["series"] for r in results}
    one = [r for r in results if r["config"]["epochs"] == 2]
    label_series(one)
    assert {r["series"] for r in one} == {"tiny"}  # a single budget: just the model's name


def test_table2_rows_by_lambda_with_density():
    results = [fake("ner", "subnetwork", s, v, lam=lam, density=d) for s, v, lam, d in (
        ("pretrained", 0.8, 1.0, 0.4), ("pretrained", 0.7, 25.0, 0.1), ("reset-all", 0.2, 25.0, 0.05))]
    md, _ = table2(results, "dev")
    # fake NER runs carry "accuracy" as their primary metric; the paper's NER metric (f1) is absent: "–"
    assert ("| Named entity recognition | Subnetworks λmax=1 | – | – | – | 30.83 / 68.09 / 87.94 | – / – / 80.00 "
            "| 0.40 |") in md
    assert ("| Named entity recognition | Subnetworks λmax=25 | – | – | – | 3.41 / 57.82 / 72.26 | 20.00 / – / 70.00 "
            "| 0.10 |") in md
