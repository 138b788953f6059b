"""The report's CSV files, row by row, for small hand-made inputs (Figure 1 dominance, Figure 2 localisation)."""

from __future__ import annotations

import csv
import io
import math

import torch

from subprobe.masking.subnetwork import MaskEntry, Subnetwork
from subprobe.report import localisation, pareto


def _run(probe: str, acc: float, bits: int, **config) -> dict:
    return {"task": "upos", "probe": probe, "setting": "pretrained", "model": "m", "primary_metric": "accuracy",
            "dev": {"accuracy": acc}, "mask_params": bits if probe == "subnetwork" else None,
            "bits": {"lower": bits, "upper": 32 * bits if probe == "mlp" else bits}, "config": config}


RESULTS = [
    _run("subnetwork", 0.6, 72, granularity="paper-1"),
    _run("subnetwork", 0.78, 1000, granularity="neuron"),
    _run("subnetwork", 0.82, 1000, granularity="neuron", seed=1),  # two seeds: one point at 0.80, n = 2
    _run("subnetwork", 0.75, 2000, granularity="8,8"),  # behind the neuron point: not on the frontier
    _run("mlp", 0.5, 50, rank=1),
    _run("mlp", 0.6, 100, rank=2),
    _run("mlp", 0.7, 500, rank=5),
]


def _ln(bits: float) -> str:
    return f"{math.log(bits):.4f}"


def test_dominance_csv_rows_by_hand():
    rows = pareto.dominance_csv(pareto.pareto_report(RESULTS)).splitlines()
    assert rows == [
        "task,model,bound,mlp,bits,ln_bits,mlp_accuracy,subnetwork_frontier_accuracy,verdict",
        # 1 bit per parameter: no subnetwork is as cheap as 50 bits; at 100 bits the 72-bit one ties; at 500 it loses
        f"upos,m,lower,r=1,50,{_ln(50)},0.500000,,no-subnetwork",
        f"upos,m,lower,r=2,100,{_ln(100)},0.600000,0.600000,tie",
        f"upos,m,lower,r=5,500,{_ln(500)},0.700000,0.600000,mlp",
        # 32 bits per parameter: the neuron subnetwork (1000 bits, 0.80) is cheaper and better than every MLP-1
        f"upos,m,upper,r=1,1600,{_ln(1600)},0.500000,0.800000,subnetwork",
        f"upos,m,upper,r=2,3200,{_ln(3200)},0.600000,0.800000,subnetwork",
        f"upos,m,upper,r=5,16000,{_ln(16000)},0.700000,0.800000,subnetwork",
    ]


def test_points_csv_rows_by_hand():
    rows = pareto.points_csv(pareto.pareto_report(RESULTS)).splitlines()
    assert rows == [
        "task,model,curve,label,bits,ln_bits,accuracy,on_frontier,n",
        f"upos,m,subnetwork,paper-1,72,{_ln(72)},0.600000,1,1",
        f"upos,m,subnetwork,neuron,1000,{_ln(1000)},0.800000,1,2",
        f"upos,m,subnetwork,\"8,8\",2000,{_ln(2000)},0.750000,0,1",
        f"upos,m,mlp_lower,r=1,50,{_ln(50)},0.500000,1,1",
        f"upos,m,mlp_lower,r=2,100,{_ln(100)},0.600000,1,1",
        f"upos,m,mlp_lower,r=5,500,{_ln(500)},0.700000,1,1",
        f"upos,m,mlp_upper,r=1,1600,{_ln(1600)},0.500000,1,1",
        f"upos,m,mlp_upper,r=2,3200,{_ln(3200)},0.600000,1,1",
        f"upos,m,mlp_upper,r=5,16000,{_ln(16000)},0.700000,1,1",
    ]


# --- localisation ------------------------------------------------------------------------------

ROLE_SHAPES = (("q", (8, 8)), ("k", (8, 8)), ("v", (8, 8)), ("o", (8, 8)), ("ffn_in", (16, 8)), ("ffn_out", (8, 16)))


def _subnetwork() -> Subnetwork:
    """Width 8, 2 heads of 4, one mask per weight. Layer 0: Q rows 0-3 (head 0, 32 weights) and O rows 0-3 of
    columns 4-7 (head 1, 16 weights); layer 1: all of FFN-in (128 weights)."""
    kept = {(0, "q"): torch.zeros(8, 8), (0, "o"): torch.zeros(8, 8), (1, "ffn_in"): torch.ones(16, 8)}
    kept[(0, "q")][0:4] = 1
    kept[(0, "o")][0:4, 4:8] = 1
    entries = []
    for layer in range(2):
        for role, shape in ROLE_SHAPES:
            mask = kept.get((layer, role), torch.zeros(shape))
            entries.append(MaskEntry(f"l{layer}.{role}", role, layer, shape, (1, 1), mask * 6.0 - 3.0))
    return Subnetwork(tuple(entries), "strided", "weight")


def _localisation_report(tmp_path) -> dict:
    chosen = tmp_path / "lambda5"
    chosen.mkdir()
    _subnetwork().save(chosen / "masks.safetensors")
    results = [{**_run("finetune", 0.9, 10), "run_dir": str(tmp_path / "ft")}]
    for lam, acc, density in ((1.0, 0.88, 0.5), (5.0, 0.85, 176 / 1024), (25.0, 0.7, 0.05)):
        run = _run("subnetwork", acc, 384, granularity="neuron", lambda_max=lam)
        results.append({**run, "density": density, "run_dir": str(chosen if lam == 5.0 else tmp_path / f"l{lam:g}")})
    return localisation.localisation_report(results, num_heads=2)


def _rows(text: str, columns: str) -> list[str]:
    """The CSV's rows cut to ``columns`` (comma-separated names), so that added columns leave the test alone."""
    names = columns.split(",")
    return [",".join(row[n] for n in names) for row in csv.DictReader(io.StringIO(text))]


def test_localisation_csvs_rows_by_hand(tmp_path):
    report = _localisation_report(tmp_path)
    key = "task,model,setting,lambda_max"
    assert _rows(localisation.selection_csv(report), f"{key},accuracy,density,reference_setting,reference_accuracy,"
                 "within_tolerance,selected") == [
        # threshold 0.9 x 0.90 = 0.81: lambda 5 is the largest within it
        "upos,m,pretrained,1,0.880000,0.500000,pretrained,0.900000,1,0",
        "upos,m,pretrained,5,0.850000,0.171875,pretrained,0.900000,1,1",
        "upos,m,pretrained,25,0.700000,0.050000,pretrained,0.900000,0,0",
    ]
    assert _rows(localisation.layers_csv(report), f"{key},layer,kept,total,fraction") == [
        "upos,m,pretrained,5,0,48,512,0.093750",
        "upos,m,pretrained,5,1,128,512,0.250000",
    ]
    fractions = {0: ("0.500000", "0.000000", "0.000000", "0.250000", "0.000000", "0.000000"),
                 1: ("0.000000", "0.000000", "0.000000", "0.000000", "1.000000", "0.000000")}
    assert _rows(localisation.matrix_csv(report), f"{key},layer,matrix,fraction") == [
        f"upos,m,pretrained,5,{layer},{role},{fractions[layer][i]}"
        for layer in (0, 1) for i, (role, _) in enumerate(ROLE_SHAPES)
    ]
    # a head owns 32 weights of each of Q, K, V (rows) and O (columns): 128
    assert _rows(localisation.heads_csv(report), f"{key},layer,head,fraction") == [
        "upos,m,pretrained,5,0,0,0.250000",
        "upos,m,pretrained,5,0,1,0.125000",
        "upos,m,pretrained,5,1,0,0.000000",
        "upos,m,pretrained,5,1,1,0.000000",
    ]


def test_an_accuracy_exactly_at_the_threshold_is_within_it():
    # (1 - 0.1) x 0.5 is 0.45 exactly in floating point: "within 10%" includes the boundary
    results = [_run("finetune", 0.5, 10)] + [
        {**_run("subnetwork", acc, 384, granularity="neuron", lambda_max=lam), "run_dir": ""}
        for lam, acc in ((1.0, 0.49), (5.0, 0.45), (25.0, 0.4499))
    ]
    (selection,) = localisation.select_lambda(results)
    assert selection["threshold"] == 0.45
    assert [c["within"] for c in selection["candidates"]] == [True, True, False]
    assert selection["selected_lambda"] == 5.0 and selection["rule_met"] is True
