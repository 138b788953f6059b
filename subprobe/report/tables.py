"""Tables 1 and 2 of the paper from a results store, beside the paper's bert-base numbers."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict

TASK_TITLES = {"upos": "Part-of-speech tagging", "dep": "Dependency parsing", "ner": "Named entity recognition"}
SETTINGS = ("pretrained", "reset-encoder", "reset-all")
SETTING_TITLES = {"pretrained": "Pre-trained ↑", "reset-encoder": "Reset encoder ↓", "reset-all": "Reset all ↓"}
PROBE_TITLES = {"subnetwork": "Subnetworks", "mlp": "MLP-1", "finetune": "Fine-tuning", "linear": "Linear"}

#: Cao et al. (2021), Table 1 (bert-base-uncased; pretrained, reset encoder, reset all; in %).
PAPER_TABLE1 = {
    ("upos", "subnetwork"): (93.39, 87.53, 71.53),
    ("upos", "mlp"): (90.25, 86.53, 69.16),
    ("upos", "finetune"): (95.69, 86.47, 84.42),
    ("dep", "subnetwork"): (86.86, 54.31, 39.84),
    ("dep", "mlp"): (76.65, 54.09, 42.81),
    ("dep", "finetune"): (89.93, 79.10, 74.48),
    ("ner", "subnetwork"): (87.94, 68.09, 30.83),
    ("ner", "mlp"): (84.80, 69.35, 53.25),
    ("ner", "finetune"): (93.68, 81.80, 70.08),
}
#: Cao et al. (2021), Table 2: subnetworks by lambda_max (pretrained, reset encoder, reset all; in %).
PAPER_TABLE2 = {
    "upos": {1: (93.39, 87.53, 71.53), 5: (92.41, 87.20, 70.45), 25: (90.66, 86.23, 68.65), 125: (84.86, 86.10, 66.39)},
    "dep": {1: (86.86, 54.31, 39.84), 5: (85.99, 54.93, 43.36), 25: (83.12, 54.41, 41.43), 125: (74.49, 53.70, 43.07)},
    "ner": {1: (87.94, 68.09, 30.83), 5: (84.48, 65.18, 22.92), 25: (72.26, 57.82, 3.41), 125: (50.67, 57.56, 2.04)},
}


def _row_key(m: dict) -> str | None:
    probe = m["probe"]
    cfg = m.get("config", {})
    if probe == "subnetwork":
        if str(cfg.get("granularity", "neuron")) != "neuron":
            return None  # the tables are about neuron subnetworks (Figure 1's granularity sweep is not)
        return f"subnetwork@{float(cfg.get('lambda_max', 1.0)):g}"
    if probe == "mlp" and str(cfg.get("rank", "d")) != "d":
        return None  # only the full-rank MLP-1 belongs to the tables
    return probe


def collect(results: list[dict], split: str = "dev") -> dict:
    """(task, row, setting) -> list of primary-metric values (fractions) and densities."""
    cells: dict = defaultdict(lambda: {"values": [], "density": []})
    for m in results:
        row = _row_key(m)
        scores = m.get(split)
        if row is None or not scores:
            continue
        cell = cells[(m["task"], row, m["setting"])]
        cell["values"].append(scores[m["primary_metric"]])
        if "density" in m:
            cell["density"].append(m["density"])
    return cells


def _fmt(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) > 1:
        return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}"
    return f"{mean:.2f}"


def by_series(results: list[dict], model: str = "") -> list[tuple[str, list[dict]]]:
    """Results split by ``series`` (model and budget, see :func:`subprobe.report.loading.label_series`).

    One series is labelled ``model`` (the caller's name for it); several keep their own labels.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups[str(r.get("series", model))].append(r)
    if len(groups) <= 1:
        return [(model or next(iter(groups), "model"), results)]
    return sorted(groups.items())


def table1(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 1 (rows: probe per task; columns: the three settings), one block per series."""
    rows = ("subnetwork@1", "mlp", "finetune")
    header = "| task | probe | " + " | ".join(SETTING_TITLES[s] for s in SETTINGS) + " |"
    lines: list[str] = []
    csv_rows = [["task", "probe", *SETTINGS, "split", "series"]]
    all_tasks: list[str] = []
    for series, group in by_series(results, model):
        cells = collect(group, split)
        tasks = [t for t in TASK_TITLES if any(k[0] == t for k in cells)]
        all_tasks += [t for t in tasks if t not in all_tasks]
        lines += [f"### Ours ({series or 'model'}, {split}, primary metric in %)", "", header,
                  "|---|---|---|---|---|"]
        for task in tasks:
            for row in rows:
                label = PROBE_TITLES[row.split("@")[0]]
                vals = [_fmt(cells[(task, row, s)]["values"]) if (task, row, s) in cells else "–" for s in SETTINGS]
                lines.append(f"| {TASK_TITLES[task]} | {label} | " + " | ".join(vals) + " |")
                csv_rows.append([task, label, *vals, split, series])
        lines.append("")
    tasks = [t for t in TASK_TITLES if t in all_tasks]
    lines += ["### Paper (bert-base-uncased, Cao et al. 2021, Table 1)", "", header, "|---|---|---|---|---|"]
    for task in tasks:
        for row in ("subnetwork", "mlp", "finetune"):
            ref = PAPER_TABLE1[(task, row)]
            lines.append(f"| {TASK_TITLES[task]} | {PROBE_TITLES[row]} | " + " | ".join(f"{v:.2f}" for v in ref) + " |")
    lines += [
        "",
        "↑: higher is better (the probe finds the property); ↓: lower is better (the probe should not learn "
        "the task on a random model). Subnetwork values use the hard (binarised) mask.",
    ]
    return "\n".join(lines) + "\n", _csv(csv_rows)


def table2(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 2 (subnetworks by lambda_max with density, then MLP-1 and fine-tuning)."""
    order = ("reset-all", "reset-encoder", "pretrained")
    header = "| task | probe | " + " | ".join(order) + " | density (pretrained) | paper (" + ", ".join(order) + ") |"
    lines: list[str] = []
    csv_rows = [["task", "probe", *order, "density_pretrained", "split", "series"]]
    for series, group in by_series(results, model):
        cells = collect(group, split)
        lines += [f"### Ours ({series or 'model'}, {split}, primary metric in %)", "", header,
                  "|---|---|---|---|---|---|---|"]
        tasks = [t for t in TASK_TITLES if any(k[0] == t for k in cells)]
        for task in tasks:
            lambdas = sorted(
                {float(k[1].split("@")[1]) for k in cells if k[0] == task and k[1].startswith("subnetwork@")}
            )
            for lam in lambdas:
                row = f"subnetwork@{lam:g}"
                vals = [_fmt(cells[(task, row, s)]["values"]) if (task, row, s) in cells else "–" for s in order]
                dens = (
                    _fmt(cells[(task, row, "pretrained")]["density"], scale=1.0)
                    if (task, row, "pretrained") in cells
                    else "–"
                )
                ref = PAPER_TABLE2.get(task, {}).get(int(lam))
                ref_text = " / ".join(f"{v:.2f}" for v in reversed(ref)) if ref else "–"
                label = f"Subnetworks λmax={lam:g}"
                lines.append(f"| {TASK_TITLES[task]} | {label} | " + " | ".join(vals) + f" | {dens} | {ref_text} |")
                csv_rows.append([task, label, *vals, dens, split, series])
            for row in ("mlp", "finetune"):
                vals = [_fmt(cells[(task, row, s)]["values"]) if (task, row, s) in cells else "–" for s in order]
                ref = PAPER_TABLE1.get((task, row))
                ref_text = " / ".join(f"{v:.2f}" for v in reversed(ref)) if ref else "–"
                lines.append(
                    f"| {TASK_TITLES[task]} | {PROBE_TITLES[row]} | " + " | ".join(vals) + f" | | {ref_text} |"
                )
                csv_rows.append([task, PROBE_TITLES[row], *vals, "", split, series])
        lines.append("")
    lines += ["Density: fraction of masked weights kept by the hard mask on the pretrained model."]
    return "\n".join(lines) + "\n", _csv(csv_rows)


def claims(results: list[dict], split: str = "dev") -> dict[str, dict[str, bool | None]]:
    """Per task: does subnetwork beat MLP-1 on the pretrained model, and lose to it on both reset models?

    Keyed by task, or by "task (series)" when the results hold several models or budgets.
    """
    groups = by_series(results)
    out = {}
    for series, group in groups:
        cells = collect(group, split)

        def mean(task, row, setting, cells=cells):
            c = cells.get((task, row, setting))
            return statistics.fmean(c["values"]) if c and c["values"] else None

        for task in TASK_TITLES:
            pre = (mean(task, "subnetwork@1", "pretrained"), mean(task, "mlp", "pretrained"))
            if pre == (None, None):
                continue
            resets = [(mean(task, "subnetwork@1", s), mean(task, "mlp", s)) for s in ("reset-encoder", "reset-all")]
            out[task if len(groups) == 1 else f"{task} ({series})"] = {
                "subnetwork_above_mlp_pretrained": None if None in pre else pre[0] > pre[1],
                "subnetwork_below_mlp_reset": None if any(None in r for r in resets) else all(a < b for a, b in resets),
            }
    return out


def claims_text(found: dict[str, dict[str, bool | None]]) -> str:
    """One line per task: do the paper's two claims hold (yes / no / – when a cell is missing)?"""
    word = {True: "yes", False: "no", None: "–"}
    return "\n".join(
        f"{task}: subnetwork > MLP-1 on the pretrained model: {word[c['subnetwork_above_mlp_pretrained']]}; "
        f"subnetwork < MLP-1 on both reset models: {word[c['subnetwork_below_mlp_reset']]}"
        for task, c in found.items()
    )


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()
