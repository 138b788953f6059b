"""The paper's claims with their tests, in one file (``table1-claims.json``) and one report table.

* ``table1``: per task, does the subnetwork beat MLP-1 on the pretrained model and lose to it on both reset
  models (:func:`subprobe.report.tables.claims`);
* ``pareto_dominance``: per task (and series) and MLP-1 bound, does the subnetwork curve dominate MLP-1
  (:func:`subprobe.report.pareto.dominance_p_value`);
* ``learnt_vs_controls``: per learnt subnetwork with controls, does it beat its random-like and complement masks
  (:func:`subprobe.report.mask_sources.controls_data`).

Every claim carries a p-value of the paired bootstrap over the split's sentences
(:data:`subprobe.report.significance.TEST`); Table 1's also a permutation test over seeds when every cell has
two or more. A claim that cannot be tested (no per-sentence statistics, runs scored on other sentences) has None.
"""

from __future__ import annotations

import statistics

from subprobe.report import mask_sources, pareto, significance, tables
from subprobe.report.render import Table


def all_claims(results: list[dict], split: str = "dev", pareto_entries: list[dict] | None = None) -> dict:
    """The content of ``table1-claims.json`` (``pareto_entries``: :func:`subprobe.report.pareto.pareto_report` of
    the same results, when already computed)."""
    entries = pareto.pareto_report(results, split) if pareto_entries is None else pareto_entries
    dominance = {}
    for e in entries:
        dominance[f"{e['task']} ({e['model']})"] = {
            bound: {"dominates": d["dominates"], "counts": d["counts"], "p_value": d.get("p_value")}
            for bound, d in e["dominance"].items()
        }
    controls = []
    for c in mask_sources.controls_data(results, split):
        entry = {k: c[k] for k in ("task", "setting", "learnt_run", "metric", "learnt")}
        for kind in ("random-like", "complement"):
            values = c[kind]["values"]
            entry[kind] = {"mean": statistics.fmean(values) if values else None, "runs": len(values),
                           "learnt_higher": (c["learnt"] > statistics.fmean(values)) if values else None,
                           "p_value": c[kind]["p"]}
        controls.append(entry)
    return {"split": split, "test": significance.TEST, "table1": tables.claims(results, split),
            "pareto_dominance": dominance, "learnt_vs_controls": controls}


def claims_table(found: dict) -> Table:
    """Every claim of :func:`all_claims` as one row: what, where, whether it holds and its p-values."""
    word = {True: "yes", False: "no", None: "–"}
    kinds = {"headline": "headline, hard mask", "paper_comparable": "paper's metric, soft mask"}
    rows = []
    for task, by_kind in found["table1"].items():
        for kind, c in by_kind.items():
            for name, text in ((tables.CLAIMS[0], "subnetwork > MLP-1, pretrained"),
                               (tables.CLAIMS[1], "subnetwork < MLP-1, both reset models")):
                rows.append([f"Table 1: {text}", f"{task} ({kinds[kind]})", word[c[name]],
                             significance.fmt(c["p_values"][name]), significance.fmt(c["p_values_seeds"][name])])
    bounds = {"lower": "1 bit/param", "upper": "32 bits/param"}
    for where, by_bound in found["pareto_dominance"].items():
        for bound, d in by_bound.items():
            rows.append([f"Figure 1: subnetwork dominates MLP-1 ({bounds[bound]})", where, word[d["dominates"]],
                         significance.fmt(d["p_value"]), "–"])
    for c in found["learnt_vs_controls"]:
        name = c["learnt_run"].rstrip("/").rsplit("/", 1)[-1]
        for kind in ("random-like", "complement"):
            if c[kind]["runs"]:
                rows.append([f"learnt mask > {kind} ({c[kind]['runs']} run(s))", f"{c['task']} {c['setting']} {name}",
                             word[c[kind]["learnt_higher"]], significance.fmt(c[kind]["p_value"]), "–"])
    return Table("claims", f"The paper's claims and their tests ({found['split']})",
                 ["claim", "where", "holds", "p (paired bootstrap)", "p (seeds)"], rows,
                 [f"Holds: on the means over seeds. p (paired bootstrap): {found['test']}. p (seeds): one-sided exact "
                  "permutation test over the seeds (Table 1 cells with two or more seeds on every side). – : not "
                  "testable (a run without per-sentence statistics, or runs scored on different sentences)."],
                 empty="No claim can be checked: no Table 1 cells, Pareto curves or mask controls.")
