"""Selectivity (Hewitt & Liang, 2019): task metric - control-task metric of the same probe.

A control run (``--control``, metrics.json ``control: true``) pairs with the task runs whose settings
are all equal but the seeds (replica settings), ``--control`` and ``--decoder``; both sides are averaged over
their runs (seeds, control seeds). Both sides are scored on the task's selectivity metric: the primary metric,
except for dependencies, where it is the LAS of heads decoded per word (``las_argmax``) on both sides, because
the control task's trees (many ROOT children, 2-cycles) cannot be single-rooted trees and control runs decode
with argmax. Control runs are left out of every other table and figure.
"""

from __future__ import annotations

from subprobe.report import intervals
from subprobe.report.render import Table
from subprobe.report.stability import NOT_IN_POINT

HEADER = ["series", "task", "probe", "unit", "setting", "metric", "task (%)", "control (%)", "selectivity (points)",
          "task runs", "control runs"]


def is_control(result: dict) -> bool:
    return bool(result.get("control"))


def _pair_key(result: dict) -> tuple:
    config = result.get("config", {})
    skip = NOT_IN_POINT | {"control", "decoder"}
    return (result.get("series", ""), result["task"],
            tuple(sorted((k, repr(v)) for k, v in config.items() if k not in skip)))


def selectivity_metric(result: dict) -> str:
    """The metric both sides of a pair are compared on (the task's ``selectivity_metric``, else its primary)."""
    from subprobe.tasks.registry import get_task

    return get_task(result["task"]).selectivity_metric or result["primary_metric"]


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
        if (r.get(split) or {}).get(selectivity_metric(r)) is None:
            continue
        task_runs, control_runs = sides.setdefault(_pair_key(r), ([], []))
        (control_runs if is_control(r) else task_runs).append(r)
    rows = []
    for (series, task, _), (task_runs, control_runs) in sorted(sides.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                               str(kv[0][2]))):
        if not task_runs or not control_runs:
            continue
        metric = selectivity_metric(task_runs[0])
        t = sum(r[split][metric] for r in task_runs) / len(task_runs)
        c = sum(r[split][metric] for r in control_runs) / len(control_runs)
        first = task_runs[0]
        cells = [intervals.cell([r[split][metric] for r in runs],
                                [intervals.run_interval(r, split, metric) for r in runs])
                 for runs in (task_runs, control_runs)]
        rows.append([series, task, first["probe"], _unit(first), first["setting"], metric, *cells,
                     f"{100 * (t - c):.2f}", len(task_runs), len(control_runs)])
    return rows


def selectivity_table(results: list[dict], split: str = "dev") -> Table:
    return Table(
        "selectivity", f"Selectivity: task - control task ({split}, Hewitt & Liang 2019)", HEADER,
        selectivity_rows(results, split),
        notes=["Control task: each word type a fixed label drawn from the training labels (dep: a fixed head "
               "behaviour -- ROOT, first or last word -- and relation), seeded (--control, --control-seed). A "
               "selective probe scores well on the task and poorly on its control. Dependencies are compared on the "
               "LAS of per-word (argmax) heads on both sides (las_argmax): the control trees are not single-rooted.",
               intervals.NOTE],
        empty="No probe has both task and control runs (`subprobe reproduce selectivity` runs the pairs).",
    )
