"""Accuracy against density: learnt subnetworks trained to a ``--target-density``, at a fixed granularity.

A **line** is the runs of one task and model (series) whose settings are all equal but ``--target-density``
and ``--seed``; a **point** of a line is one target density, its runs (seeds) averaged: the task's primary
metric on the split (mean and standard deviation), the achieved hard ``density`` and the density before the
first rounding at the end of the ramp (``density_before_projection``), both means. Only learnt subnetwork runs
with a target density count (no penalty-weight runs, no random-like or complement controls, no control tasks).
"""

from __future__ import annotations

import statistics

from subprobe.report.mask_sources import mask_source, target_density
from subprobe.report.render import Table
from subprobe.report.selectivity import is_control
from subprobe.report.stability import NOT_IN_POINT
from subprobe.report.tables import SETTINGS, TASK_TITLES, mean_std

#: Settings that do not make another line: the point's own axis and what never changes a result.
NOT_IN_LINE = NOT_IN_POINT | {"target_density"}
#: What a line's label names anyway (its own columns in the table).
NAMED = ("task", "setting", "granularity")

HEADER = ["task", "model", "setting", "granularity", "target density", "achieved density",
          "density before rounding", "metric", "{split} (%)", "runs", "bits"]


def is_density_run(m: dict) -> bool:
    """A learnt subnetwork run with ``--target-density`` (not a control task)."""
    return (m.get("probe") == "subnetwork" and mask_source(m) == "learnt" and target_density(m) is not None
            and not is_control(m))


def _line_key(m: dict) -> tuple:
    config = m.get("config", {})
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in NOT_IN_LINE))


def _bits(m: dict) -> float | None:
    bits = m.get("mask_params") or (m.get("bits") or {}).get("lower")
    return None if bits is None else float(bits)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _point(target: float, runs: list[dict], split: str) -> dict:
    metric = runs[0]["primary_metric"]
    values = [r[split][metric] for r in runs]
    bits = [b for b in map(_bits, runs) if b is not None]
    return {
        "target": target,
        "density": _mean([float(r["density"]) for r in runs if r.get("density") is not None]),
        "density_before_projection": _mean([float(r["density_before_projection"]) for r in runs
                                            if r.get("density_before_projection") is not None]),
        "accuracy": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
        "n": len(values),
        "bits": bits[0] if bits else None,
        "runs": [r.get("run_dir", "") for r in runs],
    }


def _varying(keys: list[tuple]) -> list[str]:
    """The settings (other than the named ones) whose values differ between the lines of one task."""
    dicts = [dict(k) for k in keys]
    names = sorted({name for d in dicts for name in d} - set(NAMED))
    return [n for n in names if len({d.get(n) for d in dicts}) > 1]


def density_report(results: list[dict], split: str = "dev") -> list[dict]:
    """One entry per (task, model) with density runs scored on ``split``, tasks in the paper's order:
    ``{task, model, split, metric, lines: [{setting, granularity, variant, points: [...]}]}``, points by target."""
    groups: dict[tuple[str, str], dict[tuple, dict[float, list[dict]]]] = {}
    for m in results:
        if not is_density_run(m) or (m.get(split) or {}).get(m["primary_metric"]) is None:
            continue
        key = (m["task"], str(m.get("series", m.get("model", ""))))
        groups.setdefault(key, {}).setdefault(_line_key(m), {}).setdefault(target_density(m), []).append(m)
    order = {t: i for i, t in enumerate(TASK_TITLES)}
    settings = {s: i for i, s in enumerate(SETTINGS)}
    report = []
    for (task, model), lines in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0])):
        entry_lines = []
        varying = _varying(list(lines))
        for by_target in lines.values():
            first = next(iter(by_target.values()))[0]
            config = first.get("config", {})
            entry_lines.append({
                "setting": first.get("setting", ""),
                "granularity": str(config.get("granularity", "neuron")),
                "variant": ", ".join(f"{n}={config.get(n, '–')}" for n in varying),
                "points": [_point(t, runs, split) for t, runs in sorted(by_target.items())],
            })
        entry_lines.sort(key=lambda line: (settings.get(line["setting"], 99), line["setting"], line["granularity"],
                                           line["variant"]))
        metric = next(iter(next(iter(lines.values())).values()))[0]["primary_metric"]
        report.append({"task": task, "model": model, "split": split, "metric": metric, "lines": entry_lines})
    return report


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def density_rows(report: list[dict]) -> list[list]:
    """One row per point of every line (see :data:`HEADER`), sorted by task, then line, then target density."""
    rows = []
    for entry in report:
        for line in entry["lines"]:
            setting = line["setting"] + (f" ({line['variant']})" if line["variant"] else "")
            for p in line["points"]:
                rows.append([entry["task"], entry["model"], setting, line["granularity"], f"{p['target']:g}",
                             _num(p["density"]), _num(p["density_before_projection"]), entry["metric"],
                             mean_std(p["values"]), p["n"], "–" if p["bits"] is None else f"{p['bits']:.0f}"])
    return rows


def density_table(report: list[dict], split: str = "dev") -> Table:
    """The points of :func:`density_report` as a table (id ``density``)."""
    header = [h.format(split=split) for h in HEADER]
    return Table(
        "density", f"Accuracy against density: subnetworks at a target density ({split})", header,
        density_rows(report),
        notes=["Each row: the runs (seeds) of one --target-density; the metric is their mean ± standard deviation "
               "[Student-t 95% interval of the mean, clipped to [0, 100]] (in %). Achieved density: the hard "
               "mask's kept fraction of the masked weights; before rounding: "
               "the hard density the Lagrangian reached by the end of the ramp, before rounding to the closest kept "
               "count held it. Bits: one per mask parameter (the same at every density of a granularity)."],
        empty="No subnetwork runs with --target-density (`subprobe reproduce density` runs them).",
    )
