"""Pareto frontiers, dominance verdicts and areas under the accuracy-vs-ln(bits) curves, checked by hand."""

import math

import pytest

from subprobe.report import pareto


def _pts(pairs, label="p"):
    return [{"label": f"{label}{i}", "bits": float(b), "ln_bits": math.log(b), "accuracy": a, "n": 1, "runs": []}
            for i, (b, a) in enumerate(pairs)]


SUB = [(10, 0.5), (100, 0.8), (1000, 0.7), (10000, 0.9)]
MLP = [(50, 0.6), (500, 0.85), (5000, 0.88)]


def _curves():
    return {"subnetwork": _pts(SUB, "g"), "mlp_lower": _pts(MLP, "r"),
            "mlp_upper": _pts([(32 * b, a) for b, a in MLP], "r")}


def test_frontier_keeps_points_no_cheaper_point_matches():
    front = pareto.frontier(_pts(SUB))
    assert [(p["bits"], p["accuracy"]) for p in front] == [(10, 0.5), (100, 0.8), (10000, 0.9)]
    # equal bits: only the more accurate; equal accuracy at more bits is not on the frontier
    front = pareto.frontier(_pts([(10, 0.5), (10, 0.7), (20, 0.7), (30, 0.71)]))
    assert [(p["bits"], p["accuracy"]) for p in front] == [(10, 0.7), (30, 0.71)]
    assert pareto.frontier([]) == []


def test_frontier_value_is_the_best_accuracy_with_at_most_that_many_bits():
    front = pareto.frontier(_pts(SUB))
    assert pareto.frontier_value(front, 5) is None
    assert pareto.frontier_value(front, 10) == 0.5
    assert pareto.frontier_value(front, 99.9) == 0.5
    assert pareto.frontier_value(front, 5000) == 0.8
    assert pareto.frontier_value(front, 1e9) == 0.9


def test_dominance_against_both_bounds():
    result = pareto.analyse(_curves())
    lower = result["dominance"]["lower"]
    # at 50, 500, 5000 bits the subnetwork frontier is 0.5, 0.8, 0.8: below every MLP-1 point
    assert [p["subnetwork_accuracy"] for p in lower["points"]] == [0.5, 0.8, 0.8]
    assert [p["verdict"] for p in lower["points"]] == ["mlp", "mlp", "mlp"]
    assert lower["dominates"] is False and lower["counts"]["mlp"] == 3
    upper = result["dominance"]["upper"]
    # at 1600, 16000, 160000 bits: 0.8 > 0.6, 0.9 > 0.85, 0.9 > 0.88
    assert [p["subnetwork_accuracy"] for p in upper["points"]] == [0.8, 0.9, 0.9]
    assert [p["verdict"] for p in upper["points"]] == ["subnetwork"] * 3
    assert upper["dominates"] is True


def test_dominance_tie_and_no_cheap_subnetwork():
    rows = pareto.dominance(pareto.frontier(_pts([(100, 0.7)])), _pts([(50, 0.6), (200, 0.7), (300, 0.65)]))
    assert [r["verdict"] for r in rows] == ["no-subnetwork", "tie", "subnetwork"]
    assert rows[0]["subnetwork_accuracy"] is None


def test_auc_over_the_common_range_by_hand():
    auc = pareto.analyse(_curves())["auc"]
    # subnetwork vs MLP-1 lower: range [ln 50, ln 5000]
    lo, hi = auc["lower"]["range"]
    assert lo == pytest.approx(math.log(50)) and hi == pytest.approx(math.log(5000))
    sub = (0.5 * math.log(100 / 50) + 0.8 * math.log(5000 / 100)) / math.log(100)
    assert auc["lower"]["auc"]["subnetwork"] == pytest.approx(sub)
    assert auc["lower"]["auc"]["mlp_lower"] == pytest.approx((0.6 + 0.85) / 2)
    # subnetwork vs MLP-1 upper: range [ln 1600, ln 10000]; both flat there
    assert auc["upper"]["range"] == pytest.approx([math.log(1600), math.log(10000)])
    assert auc["upper"]["auc"] == pytest.approx({"subnetwork": 0.8, "mlp_upper": 0.6})
    # all three curves: [ln 1600, ln 5000]
    assert auc["all"]["range"] == pytest.approx([math.log(1600), math.log(5000)])
    assert auc["all"]["auc"] == pytest.approx({"subnetwork": 0.8, "mlp_lower": 0.85, "mlp_upper": 0.6})


def test_step_auc_edge_cases():
    front = pareto.frontier(_pts([(10, 0.5), (100, 0.8)]))
    assert pareto.step_auc(front, math.log(100), math.log(100)) == 0.8  # a single point: the value there
    assert pareto.step_auc(front, math.log(5), math.log(100)) is None  # below the curve's first point
    assert pareto.step_auc(front, 3.0, 2.0) is None
    # half the range at 0.5, half at 0.8
    assert pareto.step_auc(front, math.log(1), math.log(10000)) is None
    assert pareto.step_auc(front, math.log(10), math.log(1000)) == pytest.approx(0.65)


def test_no_overlap_gives_no_auc():
    curves = {"subnetwork": _pts([(10, 0.5), (20, 0.6)]), "mlp_lower": _pts([(100, 0.7)]),
              "mlp_upper": _pts([(3200, 0.7)])}
    auc = pareto.analyse(curves)["auc"]
    assert auc["lower"]["auc"] == {"subnetwork": None, "mlp_lower": None}
    assert "overlap" in auc["lower"]["note"]


def _result(task, probe, acc, bits, setting="pretrained", **config):
    return {"task": task, "probe": probe, "setting": setting, "model": "m", "primary_metric": "accuracy",
            "dev": {"accuracy": acc}, "mask_params": bits if probe == "subnetwork" else None,
            "bits": {"lower": bits, "upper": 32 * bits if probe == "mlp" else bits}, "config": config,
            "run_dir": f"/runs/{task}-{probe}-{bits}"}


def test_report_from_results_uses_pretrained_lambda1_subnetworks_and_averages_seeds():
    results = [
        _result("upos", "subnetwork", 0.9, 72, granularity="paper-1"),
        _result("upos", "subnetwork", 0.7, 72, granularity="paper-1", seed=1),
        _result("upos", "subnetwork", 0.1, 72, granularity="paper-1", setting="reset-encoder"),
        _result("upos", "subnetwork", 0.2, 1000, granularity="neuron", lambda_max=25.0),
        _result("upos", "mlp", 0.6, 2000, rank=1),
        _result("upos", "finetune", 0.99, 10**6),
        _result("dep", "mlp", 0.5, 3000, rank="d"),
    ]
    report = pareto.pareto_report(results)
    assert [r["task"] for r in report] == ["upos", "dep"]
    upos = report[0]
    assert len(upos["points"]["subnetwork"]) == 1
    point = upos["points"]["subnetwork"][0]
    assert point["accuracy"] == pytest.approx(0.8) and point["n"] == 2 and point["bits"] == 72
    assert upos["points"]["mlp_lower"][0]["bits"] == 2000 and upos["points"]["mlp_upper"][0]["bits"] == 64000
    assert upos["dominance"]["lower"]["dominates"] is True
    dep = report[1]
    assert dep["dominance"]["lower"]["dominates"] is None  # no subnetwork curve
    assert "dep" in pareto.summary_markdown(report)
    assert pareto.points_csv(report).count("\n") == 1 + 3 + 2
    assert "verdict" in pareto.dominance_csv(report).splitlines()[0]
