"""Which subnetwork runs are learnt with a penalty weight, and which are controls or density-constrained.

The paper's tables, Pareto curves and localisation figures are about masks **learnt** with the L0 penalty
weight lambda_max. Runs with a fixed mask (``--random-mask-like``, ``--complement-of``) or a density target
(``--target-density``) are other experiments and must not be averaged into those rows.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from subprobe.report import intervals, significance
from subprobe.report.render import Table


def mask_source(m: dict) -> str:
    """``learnt``, ``random-like`` or ``complement`` (from metrics.json, else from the run's config)."""
    if m.get("mask_source"):
        return str(m["mask_source"])
    cfg = m.get("config", {})
    return "random-like" if cfg.get("random_mask_like") else "complement" if cfg.get("complement_of") else "learnt"


def target_density(m: dict) -> float | None:
    """The run's ``--target-density`` (None: a penalty weight)."""
    value = m.get("target_density", m.get("config", {}).get("target_density"))
    return None if value is None else float(value)


def is_lambda_subnetwork(m: dict) -> bool:
    """A subnetwork run whose mask was learnt with the penalty weight lambda_max (the paper's kind)."""
    return m.get("probe") == "subnetwork" and mask_source(m) == "learnt" and target_density(m) is None


def _same_run(path: str, run_dir: str) -> bool:
    if not path or not run_dir:
        return False
    try:
        if Path(path).resolve() == Path(run_dir).resolve():
            return True
    except OSError:
        pass
    return Path(path).name == Path(run_dir).name  # recorded relative to another working directory


def controls_data(results: list[dict], split: str = "dev") -> list[dict]:
    """One entry per learnt subnetwork run that has random-like or complement controls: its run, metric and value,
    and per control kind the runs' values and densities and ``p`` of "the learnt mask scores higher than the
    control" (the mean of its runs; :data:`subprobe.report.significance.TEST`; None when untestable)."""
    controls = [m for m in results if m.get("probe") == "subnetwork" and mask_source(m) != "learnt" and m.get(split)]
    out = []
    for src in results:
        if src.get("probe") != "subnetwork" or mask_source(src) != "learnt" or not src.get(split):
            continue
        mine = [c for c in controls if _same_run(str(c.get("mask_source_run", "")), str(src.get("run_dir", "")))]
        if not mine:
            continue
        key = src["primary_metric"]
        entry = {"task": src["task"], "setting": src["setting"], "learnt_run": str(src.get("run_dir", "")),
                 "metric": key, "split": split, "learnt": src[split][key], "density": src.get("density"),
                 "learnt_ci": intervals.run_interval(src, split, key)}
        for kind in ("random-like", "complement"):
            runs = [c for c in mine if mask_source(c) == kind]
            p = significance.claim([([src], runs)], lambda m, key=key: (split, key)) if runs else None
            entry[kind] = {"values": [c[split][key] for c in runs], "densities": [c.get("density") for c in runs],
                           "cis": [intervals.run_interval(c, split, key) for c in runs], "p": p}
        out.append(entry)
    return out


def controls_rows(results: list[dict], split: str = "dev") -> list[list]:
    """The rows of :func:`controls_table`, from :func:`controls_data`."""
    rows = []
    for e in controls_data(results, split):
        cells = []
        for kind in ("random-like", "complement"):
            c = e[kind]
            dens = [d for d in c["densities"] if d is not None]
            cells += [intervals.cell(c["values"], c["cis"], count=True),
                      f"{statistics.fmean(dens):.4f}" if dens else "–", significance.fmt(c["p"])]
        name = e["learnt_run"].rstrip("/").rsplit("/", 1)[-1]
        density = "–" if e["density"] is None else f"{e['density']:.4f}"
        rows.append([e["task"], e["setting"], name, e["metric"], intervals.cell([e["learnt"]], [e["learnt_ci"]]),
                     density, *cells])
    return rows


def controls_table(results: list[dict], split: str = "dev") -> Table:
    """Learnt subnetworks beside their random-like and complement controls (accuracy in %, hard density), with the
    p-value of "learnt > control" (:data:`subprobe.report.significance.TEST`)."""
    header = ["task", "setting", "learnt run", "metric", "learnt", "density", "random-like", "density",
              "p (learnt > random-like)", "complement", "density", "p (learnt > complement)"]
    notes = ["Random-like: a frozen random mask with the learnt mask's kept count in every matrix (same density); "
             "complement: the units the learnt mask drops (density 1 - d). Only the head trains for both. "
             f"{intervals.NOTE} p: the claim that the learnt mask scores higher than the control (the mean of its "
             f"runs), {significance.TEST}."]
    return Table("mask-controls", f"Does the mask matter? Learnt vs random-like vs complement ({split}, in %)",
                 header, controls_rows(results, split), notes,
                 empty="No random-like or complement runs (subprobe probe --random-mask-like / --complement-of).")
