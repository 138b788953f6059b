"""Which subnetwork runs are learnt with a penalty weight, and which are controls or density-constrained.

The paper's tables, Pareto curves and localisation figures are about masks **learnt** with the L0 penalty
weight lambda_max. Runs with a fixed mask (``--random-mask-like``, ``--complement-of``) or a density target
(``--target-density``) are other experiments and must not be averaged into those rows.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from subprobe.report.loading import has_masks, settings
from subprobe.report.render import Table


def mask_source(m: dict) -> str:
    """``learnt``, ``random-like`` or ``complement`` (from metrics.json, else from the run's config)."""
    if m.get("mask_source"):
        return str(m["mask_source"])
    return settings(m).mask_source


def target_density(m: dict) -> float | None:
    """The run's ``--target-density`` (None: a penalty weight)."""
    value = m.get("target_density", settings(m).target_density)
    return None if value is None else float(value)


def is_lambda_subnetwork(m: dict) -> bool:
    """A subnetwork run whose mask was learnt with the penalty weight lambda_max (the paper's kind)."""
    return has_masks(m) and mask_source(m) == "learnt" and target_density(m) is None


def _same_run(path: str, run_dir: str) -> bool:
    if not path or not run_dir:
        return False
    try:
        if Path(path).resolve() == Path(run_dir).resolve():
            return True
    except OSError:
        pass
    return Path(path).name == Path(run_dir).name  # recorded relative to another working directory


def _mean(values: list[float]) -> str:
    """A mean in % (with the standard deviation and count over several runs)."""
    if not values:
        return "–"
    text = f"{statistics.fmean(values) * 100:.2f}"
    return f"{text} ± {statistics.stdev(values) * 100:.2f} (n={len(values)})" if len(values) > 1 else text


def controls_rows(results: list[dict], split: str = "dev") -> list[list]:
    """One row per learnt subnetwork run that has a random-like or complement control (see :func:`controls_table`)."""
    controls = [m for m in results if has_masks(m) and mask_source(m) != "learnt" and m.get(split)]
    rows = []
    for src in results:
        if not has_masks(src) or mask_source(src) != "learnt" or not src.get(split):
            continue
        mine = [c for c in controls if _same_run(str(c.get("mask_source_run", "")), str(src.get("run_dir", "")))]
        if not mine:
            continue
        key = src["primary_metric"]
        cells = []
        for kind in ("random-like", "complement"):
            runs = [c for c in mine if mask_source(c) == kind]
            dens = [c["density"] for c in runs if "density" in c]
            cells += [_mean([c[split][key] for c in runs]), f"{statistics.fmean(dens):.4f}" if dens else "–"]
        name = str(src.get("run_dir", "")).rstrip("/").rsplit("/", 1)[-1]
        rows.append([src["task"], src["setting"], name, key, f"{src[split][key] * 100:.2f}",
                     f"{src.get('density', float('nan')):.4f}", *cells])
    return rows


def controls_table(results: list[dict], split: str = "dev") -> Table:
    """Learnt subnetworks beside their random-like and complement controls (accuracy in %, hard density)."""
    header = ["task", "setting", "learnt run", "metric", "learnt", "density", "random-like", "density",
              "complement", "density"]
    notes = ["Random-like: a frozen random mask with the learnt mask's kept count in every matrix (same density); "
             "complement: the units the learnt mask drops (density 1 - d). Only the head trains for both. "
             "Mean ± standard deviation over runs (seeds)."]
    return Table("mask-controls", f"Does the mask matter? Learnt vs random-like vs complement ({split}, in %)",
                 header, controls_rows(results, split), notes,
                 empty="No random-like or complement runs (subprobe probe --random-mask-like / --complement-of).")
