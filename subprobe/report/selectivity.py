"""Selectivity (Hewitt & Liang, 2019): task metric - control-task metric of the same probe.

A control run (``--control``, metrics.json ``control: true``) pairs with the task runs whose settings
are all equal but ``--seed``, ``--control`` and ``--control-seed``; both sides are averaged over their
runs (seeds, control seeds). Control runs are left out of every other table and figure.
"""

from __future__ import annotations

from subprobe.report.render import Table
from subprobe.report.stability import NOT_IN_POINT

HEADER = ["series", "task", "probe", "unit", "setting", "metric", "task (%)", "control (%)", "selectivity (points)",
          "task runs", "control runs"]


def is_control(result: dict) -> bool:
    return bool(result.get("control"))


def _pair_key(result: dict) -> tuple:
    config = result.get("config", {})
    skip = NOT_IN_POINT | {"control", "control_seed"}
    return (result.get("series", ""), result["task"],
            tuple(sorted((k, repr(v)) for k, v in config.items() if k not in skip)))


def _unit(result: dict) -> str:
    config = result.get("config", {})
    if result.get("probe") == "subnetwork":
        return str(config.get("granularity", ""))
    if result.get("probe") == "mlp":
        return f"r={config.get('rank', 'd')}"
    return ""


def selectivity_rows(results: list[dict], split: str = "dev") -> list[list]:
    """One row per probe point that has both task and control runs scored on ``split``."""
    sides: dict[tuple, tuple[list[dict], list[dict]]] = {}
    for r in results:
        if (r.get(split) or {}).get(r["primary_metric"]) is None:
            continue
        task_runs, control_runs = sides.setdefault(_pair_key(r), ([], []))
        (control_runs if is_control(r) else task_runs).append(r)
    rows = []
    for (series, task, _), (task_runs, control_runs) in sorted(sides.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                               str(kv[0][2]))):
        if not task_runs or not control_runs:
            continue
        metric = task_runs[0]["primary_metric"]
        t = sum(r[split][metric] for r in task_runs) / len(task_runs)
        c = sum(r[split][metric] for r in control_runs) / len(control_runs)
        first = task_runs[0]
        rows.append([series, task, first["probe"], _unit(first), first["setting"], metric, f"{100 * t:.2f}",
                     f"{100 * c:.2f}", f"{100 * (t - c):.2f}", len(task_runs), len(control_runs)])
    return rows


def selectivity_table(results: list[dict], split: str = "dev") -> Table:
    return Table(
        "selectivity", f"Selectivity: task - control task ({split}, Hewitt & Liang 2019)", HEADER,
        selectivity_rows(results, split),
        notes=["Control task: each word type a fixed label drawn from the training labels (dep: a fixed head "
               "behaviour -- ROOT, first or last word -- and relation), seeded (--control, --control-seed). A "
               "selective probe scores well on the task and poorly on its control."],
        empty="No probe has both task and control runs (`subprobe reproduce selectivity` runs the pairs).",
    )
