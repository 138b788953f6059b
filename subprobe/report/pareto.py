"""Accuracy-complexity curves (Figure 1): points, Pareto frontiers, dominance and areas under the curves.

Complexity is measured in bits (Voita & Titov 2020, uniform encoding) and plotted as ln(bits):

* a subnetwork probe costs one bit per mask parameter (``mask_params``);
* an MLP-1 probe costs 1 bit (lower bound) or 32 bits (upper bound) per parameter
  (``bits.lower`` / ``bits.upper`` of its metrics.json), so it gives two curves.

Definitions (all on one split, ``dev`` by default; accuracy is the task's primary metric):

* **frontier** of a curve: its points that no other point of the same curve matches or beats with at
  most the same bits, i.e. the step function ``F(b) = max{acc_p : bits_p <= b}``, which is undefined
  below the curve's smallest complexity;
* **dominance** at an MLP-1 point m and bound B: the subnetwork frontier ``F_sub(bits_B(m))`` against
  m's accuracy: ``subnetwork`` (higher), ``mlp`` (lower), ``tie`` or ``no-subnetwork`` (no subnetwork
  probe is that cheap). The subnetwork curve dominates MLP-1 against B when every MLP-1 point says
  ``subnetwork`` (equivalent to ``F_sub > F_mlp`` at every MLP-1 complexity);
* **dominance test**: a paired bootstrap over the split's sentences (:func:`dominance_p_value`);
* **AUC**: the integral of each frontier step function over ln(bits) on a common range
  ``[max of the curves' smallest ln(bits), min of their largest]``, divided by the range width, i.e.
  the mean frontier accuracy over that range (the value at the point when the range is a single point).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import numpy as np

from subprobe.metrics import bootstrap
from subprobe.report import render, significance
from subprobe.report.mask_sources import is_lambda_subnetwork
from subprobe.report.render import Table

#: The curves of one task: the subnetwork and the two MLP-1 complexity bounds.
CURVES = ("subnetwork", "mlp_lower", "mlp_upper")
#: Comparisons for which an AUC is computed: the curves sharing one common range.
COMPARISONS = {
    "lower": ("subnetwork", "mlp_lower"),
    "upper": ("subnetwork", "mlp_upper"),
    "all": ("subnetwork", "mlp_lower", "mlp_upper"),
}


def frontier(points: list[dict]) -> list[dict]:
    """The Pareto-optimal points (fewer bits, higher accuracy), sorted by bits.

    A point is on the frontier iff every point with at most its bits has strictly lower accuracy
    (of several points with equal bits and accuracy, the first is kept).
    """
    ordered = sorted(points, key=lambda p: (p["bits"], -p["accuracy"]))
    out: list[dict] = []
    best = -math.inf
    for p in ordered:
        if p["accuracy"] > best:
            out.append(p)
            best = p["accuracy"]
    return out


def frontier_value(front: list[dict], bits: float) -> float | None:
    """``max{acc : bits_p <= bits}`` over a frontier (None when no point is that cheap)."""
    value = None
    for p in front:
        if p["bits"] <= bits * (1 + 1e-12):
            value = p["accuracy"]
        else:
            break
    return value


def step_auc(front: list[dict], lo: float, hi: float) -> float | None:
    """Mean of the frontier step function over ln(bits) in ``[lo, hi]`` (the value at lo if lo == hi)."""
    if not front or hi < lo:
        return None
    xs = [math.log(p["bits"]) for p in front]
    if lo < xs[0] - 1e-12:
        return None  # the step function is undefined below the curve's smallest complexity
    if hi == lo:
        return frontier_value(front, math.exp(lo))
    area = 0.0
    for i, p in enumerate(front):
        start = max(xs[i], lo)
        end = min(xs[i + 1] if i + 1 < len(xs) else math.inf, hi)
        if end > start:
            area += p["accuracy"] * (end - start)
    return area / (hi - lo)


def dominance(sub_front: list[dict], mlp_points: list[dict]) -> list[dict]:
    """One verdict per MLP-1 point: the subnetwork frontier at that complexity against its accuracy."""
    out = []
    for m in sorted(mlp_points, key=lambda p: p["bits"]):
        sub = frontier_value(sub_front, m["bits"])
        if sub is None:
            verdict = "no-subnetwork"
        elif sub > m["accuracy"]:
            verdict = "subnetwork"
        elif sub < m["accuracy"]:
            verdict = "mlp"
        else:
            verdict = "tie"
        out.append({"label": m["label"], "bits": m["bits"], "ln_bits": math.log(m["bits"]),
                    "mlp_accuracy": m["accuracy"], "subnetwork_accuracy": sub, "verdict": verdict})
    return out


def curve_points(results: list[dict], split: str = "dev") -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(task, model) -> curve name -> points ``{label, bits, ln_bits, accuracy, n, runs}``.

    Only pretrained-model runs: learnt subnetworks with lambda_max 1 (any granularity; no controls, no
    --target-density runs) and MLP-1 (any rank).
    Runs repeated over seeds are averaged into one point.
    """
    groups: dict = defaultdict(lambda: defaultdict(lambda: {"acc": [], "bits": None, "runs": []}))
    for m in results:
        scores = m.get(split)
        if m.get("setting") != "pretrained" or not scores:
            continue
        cfg = m.get("config", {})
        acc = scores[m["primary_metric"]]
        key = (m["task"], m.get("series", m.get("model", "")))
        if is_lambda_subnetwork(m) and float(cfg.get("lambda_max", 1.0)) == 1.0:
            bits = m.get("mask_params") or (m.get("bits") or {}).get("lower")
            entries = [("subnetwork", str(cfg.get("granularity", "neuron")), bits)]
        elif m["probe"] == "mlp":
            label = f"r={cfg.get('rank', 'd')}"
            entries = [("mlp_lower", label, m["bits"]["lower"]), ("mlp_upper", label, m["bits"]["upper"])]
        else:
            continue
        for curve, label, bits in entries:
            if not bits:
                continue
            slot = groups[key][(curve, label)]
            slot["acc"].append(acc)
            slot["bits"] = float(bits)
            slot["runs"].append(m.get("run_dir", ""))
    out: dict = {}
    for key, slots in groups.items():
        curves: dict[str, list[dict]] = {c: [] for c in CURVES}
        for (curve, label), slot in slots.items():
            curves[curve].append({
                "label": label, "bits": slot["bits"], "ln_bits": math.log(slot["bits"]),
                "accuracy": statistics.fmean(slot["acc"]), "n": len(slot["acc"]), "runs": slot["runs"],
            })
        for pts in curves.values():
            pts.sort(key=lambda p: p["bits"])
        out[key] = curves
    return out


def analyse(curves: dict[str, list[dict]]) -> dict:
    """Frontiers, dominance verdicts against both bounds and AUCs for one task's curves."""
    fronts = {name: frontier(pts) for name, pts in curves.items()}
    for name, pts in curves.items():
        on = {id(p) for p in fronts[name]}
        for p in pts:
            p["on_frontier"] = id(p) in on
    verdicts = {}
    for bound in ("lower", "upper"):
        rows = dominance(fronts["subnetwork"], curves[f"mlp_{bound}"])
        counts = {v: sum(r["verdict"] == v for r in rows) for v in ("subnetwork", "mlp", "tie", "no-subnetwork")}
        verdicts[bound] = {
            "points": rows,
            "counts": counts,
            "dominates": counts["subnetwork"] == len(rows) if rows and fronts["subnetwork"] else None,
        }
    aucs = {}
    for comparison, names in COMPARISONS.items():
        present = [n for n in names if fronts[n]]
        if len(present) < len(names):
            aucs[comparison] = {"range": None, "auc": {n: None for n in names}, "note": "a curve has no points"}
            continue
        lo = max(math.log(fronts[n][0]["bits"]) for n in names)
        hi = min(math.log(max(p["bits"] for p in curves[n])) for n in names)
        if hi < lo:
            aucs[comparison] = {"range": [lo, hi], "auc": {n: None for n in names}, "note": "the curves do not overlap"}
            continue
        aucs[comparison] = {"range": [lo, hi], "auc": {n: step_auc(fronts[n], lo, hi) for n in names}}
    return {
        "points": curves,
        "frontier": {n: [{"label": p["label"], "bits": p["bits"], "accuracy": p["accuracy"]} for p in f]
                     for n, f in fronts.items()},
        "dominance": verdicts,
        "auc": aucs,
    }


def dominance_p_value(curves: dict[str, list[dict]], bound: str, runs: dict[str, dict], split: str) -> float | None:
    """Paired bootstrap test of "the subnetwork curve dominates MLP-1 against ``bound``": in every resample of the
    split's sentences each point's accuracy is recomputed (the mean over its runs), the subnetwork frontier is
    rebuilt, and the claim holds when at every MLP-1 point the frontier at that many bits is higher; p = (1 +
    resamples in which it fails) / (R + 1) (:mod:`subprobe.report.significance`). ``runs``: run directory -> result.
    None without points, or when a run has no per-sentence statistics or was scored on other sentences."""
    sub, mlp = curves.get("subnetwork") or [], curves.get(f"mlp_{bound}") or []
    if not sub or not mlp:
        return None
    resampler = significance.Resampler(lambda m: (split, m["primary_metric"]))

    def resampled(point: dict):
        members = [runs[r] for r in point.get("runs", []) if r in runs]
        return resampler.values(members) if len(members) == len(point.get("runs", [])) else None

    sub_acc = [resampled(p) for p in sub]
    mlp_acc = [resampled(p) for p in mlp]
    if any(a is None for a in sub_acc + mlp_acc):
        return None
    margins = np.full(resampler.resamples, np.inf)
    for point, acc in zip(mlp, mlp_acc):
        cheaper = [a for p, a in zip(sub, sub_acc) if p["bits"] <= point["bits"] * (1 + 1e-12)]
        margin = np.max(cheaper, axis=0) - acc if cheaper else np.full(resampler.resamples, -np.inf)
        margins = np.minimum(margins, margin)
    return bootstrap.claim_p_value(margins)


def pareto_report(results: list[dict], split: str = "dev") -> list[dict]:
    """One analysis per (task, model) with pretrained subnetwork or MLP-1 runs, tasks in the paper's order; each
    bound's dominance has its ``p_value`` (:func:`dominance_p_value`)."""
    from subprobe.report.tables import TASK_TITLES

    order = {t: i for i, t in enumerate(TASK_TITLES)}
    runs = {str(m.get("run_dir", "")): m for m in results}
    out = []
    for (task, model), curves in sorted(curve_points(results, split).items(),
                                        key=lambda kv: (order.get(kv[0][0], 99), kv[0])):
        entry = {"task": task, "model": model, "split": split, **analyse(curves)}
        for bound in ("lower", "upper"):
            entry["dominance"][bound]["p_value"] = dominance_p_value(curves, bound, runs, split)
        out.append(entry)
    return out


def points_table(report: list[dict]) -> Table:
    """Every point of every curve: task, model, curve, label, bits, ln_bits, accuracy, on_frontier, n."""
    rows = []
    for r in report:
        for curve, pts in r["points"].items():
            for p in pts:
                rows.append([r["task"], r["model"], curve, p["label"], f"{p['bits']:.0f}", f"{p['ln_bits']:.4f}",
                             f"{p['accuracy']:.6f}", int(p["on_frontier"]), p["n"]])
    header = ["task", "model", "curve", "label", "bits", "ln_bits", "accuracy", "on_frontier", "n"]
    return Table("pareto-points", "", header, rows)


def points_csv(report: list[dict]) -> str:
    """``pareto-points.csv``: :func:`points_table` as CSV."""
    return render.to_csv(points_table(report))


def dominance_table(report: list[dict]) -> Table:
    """One row per task, bound and MLP-1 point with the dominance verdict."""
    rows = []
    for r in report:
        for bound, d in r["dominance"].items():
            for p in d["points"]:
                sub = "" if p["subnetwork_accuracy"] is None else f"{p['subnetwork_accuracy']:.6f}"
                rows.append([r["task"], r["model"], bound, p["label"], f"{p['bits']:.0f}", f"{p['ln_bits']:.4f}",
                             f"{p['mlp_accuracy']:.6f}", sub, p["verdict"]])
    header = ["task", "model", "bound", "mlp", "bits", "ln_bits", "mlp_accuracy", "subnetwork_frontier_accuracy",
              "verdict"]
    return Table("pareto-dominance", "", header, rows)


def dominance_csv(report: list[dict]) -> str:
    """``pareto-dominance.csv``: :func:`dominance_table` as CSV."""
    return render.to_csv(dominance_table(report))


def summary_table(report: list[dict]) -> Table:
    """Per task: dominance against both bounds and AUCs, then the frontiers (id ``pareto-summary``)."""
    header = ["task", "model", "dominates MLP-1 (1 bit/param)", "dominates MLP-1 (32 bits/param)",
              "AUC subnetwork / MLP-1 lower [ln range]", "AUC subnetwork / MLP-1 upper [ln range]"]
    rows = []
    for r in report:
        cells = [r["task"], r["model"]]
        for bound in ("lower", "upper"):
            d = r["dominance"][bound]
            n = len(d["points"])
            p = d.get("p_value")
            cells.append("–" if d["dominates"] is None or not n else
                         f"{'yes' if d['dominates'] else 'no'} ({d['counts']['subnetwork']}/{n})"
                         + ("" if p is None else f", p = {p:.3f}"))
        for bound in ("lower", "upper"):
            a = r["auc"][bound]
            vals = [a["auc"][n] for n in COMPARISONS[bound]]
            if a["range"] is None or None in vals:
                cells.append("–")
            else:
                cells.append(f"{vals[0] * 100:.2f} / {vals[1] * 100:.2f} [{a['range'][0]:.2f}, {a['range'][1]:.2f}]")
        rows.append(cells)
    note = ("Dominance: at each MLP-1 complexity, the best subnetwork accuracy with at most that many bits is "
            "higher than the MLP-1 accuracy (count of MLP-1 ranks where it is); p: the dominance claim tested by "
            f"{significance.TEST}, the frontier rebuilt in every resample. AUC: mean frontier accuracy (%) "
            "over the common ln(bits) range.")
    bullets = []
    for r in report:
        for curve in CURVES:
            pts = r["frontier"][curve]
            if pts:
                text = ", ".join(f"{p['label']} ({math.log(p['bits']):.2f}, {p['accuracy'] * 100:.2f})" for p in pts)
                bullets.append(f"{r['task']} {curve} frontier (ln bits, %): {text}")
    return Table("pareto-summary", "", header, rows, [note], bullets,
                 empty="No pretrained subnetwork or MLP-1 runs: no accuracy-complexity curves.")


def summary_markdown(report: list[dict]) -> str:
    """``pareto.md``: :func:`summary_table` as Markdown."""
    return render.markdown(summary_table(report))


#: How the page names the AUC comparisons and the dominance verdicts.
AUC_TITLES = {"lower": "subnetwork vs MLP-1 lower bound", "upper": "subnetwork vs MLP-1 upper bound",
              "all": "all three curves"}
VERDICT_TEXT = {"subnetwork": "subnetwork higher", "mlp": "MLP-1 higher", "tie": "tie",
                "no-subnetwork": "no subnetwork that small"}


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def entry_tables(entry: dict, key: str) -> list[Table]:
    """The page's tables of one task's analysis (an entry of :func:`pareto_report`): its points, the dominance
    verdicts at both bounds and the AUCs (ids ``pareto-points-KEY``, ``pareto-dominance-KEY``, ``pareto-auc-KEY``)."""
    rows = [[curve, p["label"], f"{p['bits']:,.0f}", f"{p['ln_bits']:.2f}", _pct(p["accuracy"]),
             "yes" if p["on_frontier"] else "", p["n"]]
            for curve, pts in entry["points"].items() for p in pts]
    points = Table(f"pareto-points-{key}", "", ["curve", "point", "bits", "ln bits", "accuracy (%)", "on frontier",
                                                  "runs"], rows)
    lower = entry["dominance"]["lower"]["points"]
    upper = {p["label"]: p for p in entry["dominance"]["upper"]["points"]}
    rows = []
    for p in lower:
        u = upper.get(p["label"], {})
        rows.append([p["label"], _pct(p["mlp_accuracy"]), f"{p['ln_bits']:.2f}", _pct(p["subnetwork_accuracy"]),
                     VERDICT_TEXT[p["verdict"]], f"{u.get('ln_bits', 0):.2f}",
                     _pct(u.get("subnetwork_accuracy")), VERDICT_TEXT.get(u.get("verdict"), "–")])
    dominance = Table(f"pareto-dominance-{key}", "", ["MLP-1", "MLP-1 accuracy (%)", "ln bits (1/param)",
                                                      "subnetwork frontier (%)", "verdict", "ln bits (32/param)",
                                                      "subnetwork frontier (%)", "verdict"], rows)
    rows = []
    for comparison, a in entry["auc"].items():
        rng = "–" if not a["range"] else f"[{a['range'][0]:.2f}, {a['range'][1]:.2f}]"
        rows.append([AUC_TITLES[comparison], rng] + [_pct(a["auc"][n]) if n in a["auc"] else ""
                                                     for n in ("subnetwork", "mlp_lower", "mlp_upper")]
                    + [a.get("note", "")])
    auc = Table(f"pareto-auc-{key}", "", ["curves compared", "common ln(bits) range", "AUC subnetwork (%)",
                                          "AUC MLP-1, 1 bit/param (%)", "AUC MLP-1, 32 bits/param (%)", "note"], rows)
    return [points, dominance, auc]
