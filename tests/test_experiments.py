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


def fake(task, probe, setting, value, lam=1.0, rank="d", density=None, seed=0):
    m = {"task": task, "probe": probe, "setting": setting, "primary_metric": "accuracy",
         "dev": {"accuracy": value}, "test": {"accuracy": value - 0.01},
         "config": {"lambda_max": lam, "rank": rank, "seed": seed}}
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
    # mean of 0.90 and 0.92 = 91.00, sample std = 1.41
    assert "| Part-of-speech tagging | Subnetworks | 91.00 ± 1.41 | 70.00 | 60.00 |" in md
    assert "| Part-of-speech tagging | MLP-1 | 85.00 | 80.00 | 65.00 |" in md
    assert "| Part-of-speech tagging | Fine-tuning | 95.00 | – | – |" in md
    assert "93.39 | 87.53 | 71.53" in md  # the paper's reference row
    assert csv_text.splitlines()[0] == "task,probe,pretrained,reset-encoder,reset-all,split,series"
    assert claims(results) == {"upos": {"subnetwork_above_mlp_pretrained": True, "subnetwork_below_mlp_reset": True}}
    assert claims_text(claims(results)) == (
        "upos: subnetwork > MLP-1 on the pretrained model: yes; subnetwork < MLP-1 on both reset models: yes"
    )


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
    assert "| Part-of-speech tagging | Subnetworks | 80.00 | – | – |" in md  # not 85.00 ± 7.07
    assert "| Part-of-speech tagging | Subnetworks | 90.00 | – | – |" in md
    assert csv_text.splitlines()[1].endswith(',dev,"tiny [train 1500, eval 500, 2 ep]"')  # quoted: commas
    found = claims(results)  # per series, not pooled: 80 > 70 and 90 > 85 each hold on their own
    assert set(found) == {"upos (tiny [train 1500, eval 500, 2 ep])", "upos (tiny [train 3000, eval 1000, 3 ep])"}
    assert all(c["subnetwork_above_mlp_pretrained"] and c["subnetwork_below_mlp_reset"] is None for c in found.values())
    curves = pareto_report(results, "dev")
    assert len(curves) == 2 and {c["model"] for c in curves} == {r["series"] for r in results}
    one = [r for r in results if r["config"]["epochs"] == 2]
    label_series(one)
    assert {r["series"] for r in one} == {"tiny"}  # a single budget: just the model's name


def test_table2_rows_by_lambda_with_density():
    results = [fake("ner", "subnetwork", s, v, lam=lam, density=d) for s, v, lam, d in (
        ("pretrained", 0.8, 1.0, 0.4), ("pretrained", 0.7, 25.0, 0.1), ("reset-all", 0.2, 25.0, 0.05))]
    md, _ = table2(results, "dev")
    assert "| Named entity recognition | Subnetworks λmax=1 | – | – | 80.00 | 0.40 |" in md
    assert "| Named entity recognition | Subnetworks λmax=25 | 20.00 | – | 70.00 | 0.10 | 3.41 / 57.82 / 72.26 |" in md
