"""Tables 1 and 2 of the paper from a results store, beside the paper's bert-base numbers."""

from __future__ import annotations

import statistics
from collections import defaultdict

from subprobe.report import intervals, render, significance
from subprobe.report.mask_sources import is_lambda_subnetwork
from subprobe.report.render import Table

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


#: The value the paper reports, per task: sentence-macro accuracy, LAS with argmax heads and labels from the gold
#: head (sentence-macro), entity F1; all with the soft (deterministic) mask.
PAPER_METRIC = {"upos": "accuracy_macro", "dep": "paper_las", "ner": "f1"}
#: What each kind of value is, for table notes and the claims file.
VALUE_KINDS = {
    "paper_comparable": "the paper's metric (UPOS sentence-macro accuracy, dep LAS with argmax heads and labels "
    "from the gold head, sentence-macro; NER entity F1) with the soft mask, as the paper reports",
    "headline": "our headline (UPOS token-micro accuracy, dep LAS of MST trees, token-micro; NER entity F1) with "
    "the hard (binarised) mask",
}


def paper_comparable(m: dict, split: str) -> float | None:
    """The run's value measured as the paper measured it (soft mask for subnetworks; see :data:`PAPER_METRIC`)."""
    key, metric = value_source(m, split, "paper_comparable")
    return (m.get(key) or {}).get(metric)


def value_source(m: dict, split: str, kind: str) -> tuple[str, str]:
    """Where a run's value of ``kind`` (:data:`VALUE_KINDS`) is: the scores key (``dev``, ``dev_soft``, ...) and
    the metric."""
    if kind == "headline":
        return split, m["primary_metric"]
    key = f"{split}_soft" if m.get(f"{split}_soft") else split
    return key, PAPER_METRIC.get(m["task"], m["primary_metric"])


def _row_key(m: dict) -> str | None:
    probe = m["probe"]
    cfg = m.get("config", {})
    if probe == "subnetwork":
        if not is_lambda_subnetwork(m):
            return None  # controls (random-like, complement) and --target-density runs are other experiments
        if str(cfg.get("granularity", "neuron")) != "neuron":
            return None  # the tables are about neuron subnetworks (Figure 1's granularity sweep is not)
        return f"subnetwork@{float(cfg.get('lambda_max', 1.0)):g}"
    if probe == "mlp" and str(cfg.get("rank", "d")) != "d":
        return None  # only the full-rank MLP-1 belongs to the tables
    return probe


def collect(results: list[dict], split: str = "dev") -> dict:
    """(task, row, setting) -> lists of values (fractions): ``values`` (our headline, the primary metric with the
    hard mask), ``paper`` (:func:`paper_comparable`) and ``density``."""
    cells: dict = defaultdict(lambda: {"values": [], "paper": [], "density": [], "values_ci": [], "paper_ci": [],
                                       "runs": [], "paper_runs": []})
    for m in results:
        row = _row_key(m)
        scores = m.get(split)
        if row is None or not scores:
            continue
        cell = cells[(m["task"], row, m["setting"])]
        cell["values"].append(scores[m["primary_metric"]])
        cell["values_ci"].append(intervals.run_interval(m, split, m["primary_metric"]))
        cell["runs"].append(m)
        comparable = paper_comparable(m, split)
        if comparable is not None:
            cell["paper"].append(comparable)
            cell["paper_ci"].append(intervals.run_interval(m, *value_source(m, split, "paper_comparable")))
            cell["paper_runs"].append(m)
        if "density" in m:
            cell["density"].append(m["density"])
    return cells


def mean_std(values: list[float], scale: float = 100.0, cis: list | None = None) -> str:
    """``values`` (fractions) as a percentage cell: the value [bootstrap interval ``cis[0]``] of one run, mean ±
    standard deviation [t interval] over several (:func:`subprobe.report.intervals.cell`); "–" for none."""
    return intervals.cell(values, cis or (), scale)


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


def _cell(cells: dict, key: tuple, kind: str = "values", scale: float = 100.0) -> str:
    if key not in cells:
        return "–"
    return mean_std(cells[key][kind], scale, cells[key].get(f"{kind}_ci"))


def _series_id(prefix: str, i: int) -> str:
    """The HTML id of a table's ``i``-th series block (0-based): ``prefix``, then ``prefix-2``, ..."""
    return prefix if i == 0 else f"{prefix}-{i + 1}"


def table1_tables(results: list[dict], split: str = "dev", model: str = "") -> tuple[list[Table], Table]:
    """Table 1 (rows: probe per task), one display table per series (ids ``table1-SPLIT``, ``table1-SPLIT-2``,
    ...), and the same cells as one data table (the CSV: task keys, setting columns, split and series).

    Per setting three columns: ours measured as the paper measured (:func:`paper_comparable`), the paper's
    bert-base number, and our headline (primary metric, hard mask).
    """
    rows = ("subnetwork@1", "mlp", "finetune")
    columns = []
    for s in SETTINGS:
        columns += [f"{SETTING_TITLES[s]} ours (paper's metric)", "paper", "ours (headline)"]
    header = ["task", "probe", *columns]
    shown: list[Table] = []
    data_rows: list[list] = []
    groups = by_series(results, model)
    for i, (series, group) in enumerate(groups):
        cells = collect(group, split)
        tasks = [t for t in TASK_TITLES if any(k[0] == t for k in cells)]
        block = []
        for task in tasks:
            for row in rows:
                probe = row.split("@")[0]
                ref = PAPER_TABLE1.get((task, probe))
                vals = []
                for j, s in enumerate(SETTINGS):
                    key = (task, row, s)
                    vals += [_cell(cells, key, "paper"), f"{ref[j]:.2f}" if ref else "–", _cell(cells, key)]
                block.append([TASK_TITLES[task], PROBE_TITLES[probe], *vals])
                data_rows.append([task, PROBE_TITLES[probe], *vals, split, series])
        last = i == len(groups) - 1
        notes = [
            "Paper: bert-base-uncased, Cao et al. 2021, Table 1 (dev). ↑: higher is better (the probe finds the "
            "property); ↓: lower is better (the probe should not learn the task on a random model). "
            f"Ours (paper's metric): {VALUE_KINDS['paper_comparable']}. Ours (headline): {VALUE_KINDS['headline']}.",
            intervals.NOTE,
        ] if last else []
        shown.append(Table(_series_id(f"table1-{split}", i), f"Ours ({series or 'model'}, {split}, in %)", header,
                           block, notes))
    data_header = ["task", "probe"] + [f"{s}_{k}" for s in SETTINGS for k in ("comparable", "paper", "headline")]
    return shown, Table(f"table1-{split}-data", "", [*data_header, "split", "series"], data_rows)


def table1(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 1 (see :func:`table1_tables`)."""
    shown, data = table1_tables(results, split, model)
    return render.markdown(shown), render.to_csv(data)


def table2_tables(results: list[dict], split: str = "dev", model: str = "") -> tuple[list[Table], Table]:
    """Table 2 (subnetworks by lambda_max with density, then MLP-1 and fine-tuning): display tables per series
    (ids ``table2-SPLIT``, ``table2-SPLIT-2``, ...) and one data table (the CSV).

    The three setting columns are ours measured as the paper measured (:func:`paper_comparable`); then the
    paper's bert-base numbers and our headline values (primary metric, hard mask), each as three values.
    """
    order = ("reset-all", "reset-encoder", "pretrained")
    triple = " / ".join(order)
    header = ["task", "probe", *order, f"paper ({triple})", f"ours, headline ({triple})", "density (pretrained)"]
    shown: list[Table] = []
    data_rows: list[list] = []
    groups = by_series(results, model)
    for i, (series, group) in enumerate(groups):
        cells = collect(group, split)
        tasks = [t for t in TASK_TITLES if any(k[0] == t for k in cells)]
        block = []
        for task in tasks:
            lambdas = sorted(
                {float(k[1].split("@")[1]) for k in cells if k[0] == task and k[1].startswith("subnetwork@")}
            )
            entries = [(f"subnetwork@{lam:g}", f"Subnetworks λmax={lam:g}", PAPER_TABLE2.get(task, {}).get(int(lam)))
                       for lam in lambdas]
            entries += [(row, PROBE_TITLES[row], PAPER_TABLE1.get((task, row))) for row in ("mlp", "finetune")]
            for row, label, ref in entries:
                comparable = [_cell(cells, (task, row, s), "paper") for s in order]
                headline = [_cell(cells, (task, row, s)) for s in order]
                paper = [f"{v:.2f}" for v in reversed(ref)] if ref else ["–"] * 3
                dens = _cell(cells, (task, row, "pretrained"), "density", scale=1.0) if row.startswith("sub") else ""
                block.append([TASK_TITLES[task], label, *comparable, " / ".join(paper), " / ".join(headline), dens])
                data_rows.append([task, label, *comparable, *paper, *headline, dens, split, series])
        last = i == len(groups) - 1
        notes = [
            "Density: fraction of masked weights kept by the hard mask on the pretrained model. "
            f"Ours (setting columns): {VALUE_KINDS['paper_comparable']}. Headline: {VALUE_KINDS['headline']}. "
            "Paper: bert-base-uncased, Cao et al. 2021, Table 2.", intervals.NOTE,
        ] if last else []
        shown.append(Table(_series_id(f"table2-{split}", i), f"Ours ({series or 'model'}, {split}, in %)", header,
                           block, notes))
    data_header = ["task", "probe", *(f"{s}_comparable" for s in order), *(f"{s}_paper" for s in order),
                   *(f"{s}_headline" for s in order), "density_pretrained", "split", "series"]
    return shown, Table(f"table2-{split}-data", "", data_header, data_rows)


def table2(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 2 (see :func:`table2_tables`)."""
    shown, data = table2_tables(results, split, model)
    return render.markdown(shown), render.to_csv(data)


#: The claims of Table 1, as named in ``table1-claims.json``.
CLAIMS = ("subnetwork_above_mlp_pretrained", "subnetwork_below_mlp_reset")


def claims(results: list[dict], split: str = "dev") -> dict[str, dict]:
    """Per task: does subnetwork beat MLP-1 on the pretrained model, and lose to it on both reset models?

    Tested separately on each kind of value (:data:`VALUE_KINDS`): ``{"headline": {...}, "paper_comparable":
    {...}}`` with the two claims (:data:`CLAIMS`) as booleans on the means over seeds (None when a cell is missing),
    ``p_values``: each claim's paired bootstrap test over the split's sentences
    (:data:`subprobe.report.significance.TEST`; the reset claim holds in a resample only if it holds on both reset
    models) and ``p_values_seeds``: a one-sided exact permutation test over seeds (the larger p of the two reset
    models; None unless every cell has two or more seeds). Keyed by task, or by "task (series)" when the results
    hold several models or budgets.
    """
    groups = by_series(results)
    out = {}
    for series, group in groups:
        cells = collect(group, split)
        for task in TASK_TITLES:
            found = {kind: _claims_on(cells, task, kind, split) for kind in ("headline", "paper_comparable")}
            if found["headline"] is None and found["paper_comparable"] is None:
                continue
            empty = {**dict.fromkeys(CLAIMS), "p_values": dict.fromkeys(CLAIMS),
                     "p_values_seeds": dict.fromkeys(CLAIMS)}
            out[task if len(groups) == 1 else f"{task} ({series})"] = {k: v or empty for k, v in found.items()}
    return out


def _claims_on(cells: dict, task: str, kind: str, split: str) -> dict | None:
    values_key, runs_key = ("values", "runs") if kind == "headline" else ("paper", "paper_runs")

    def cell(row: str, setting: str, what: str) -> list:
        c = cells.get((task, row, setting))
        return c[what] if c else []

    def mean(row: str, setting: str) -> float | None:
        values = cell(row, setting, values_key)
        return statistics.fmean(values) if values else None

    pre = (mean("subnetwork@1", "pretrained"), mean("mlp", "pretrained"))
    if pre == (None, None):
        return None
    resets = [(mean("subnetwork@1", s), mean("mlp", s)) for s in ("reset-encoder", "reset-all")]
    holds = {
        CLAIMS[0]: None if None in pre else pre[0] > pre[1],
        CLAIMS[1]: None if any(None in r for r in resets) else all(a < b for a, b in resets),
    }
    # the claims as "a above b" pairs: sub > MLP-1 pretrained; MLP-1 > sub on each reset model
    pairs = {CLAIMS[0]: [("subnetwork@1", "mlp", "pretrained")],
             CLAIMS[1]: [("mlp", "subnetwork@1", s) for s in ("reset-encoder", "reset-all")]}

    def source(m: dict) -> tuple[str, str]:
        return value_source(m, split, kind)

    p_values, p_seeds = {}, {}
    for name, parts in pairs.items():
        if holds[name] is None:
            p_values[name] = p_seeds[name] = None
            continue
        p_values[name] = significance.claim([(cell(a, s, runs_key), cell(b, s, runs_key)) for a, b, s in parts],
                                            source)
        p_seeds[name] = significance.seeds_claim([(cell(a, s, values_key), cell(b, s, values_key))
                                                  for a, b, s in parts])
    return {**holds, "p_values": p_values, "p_values_seeds": p_seeds}


def claims_text(found: dict[str, dict]) -> str:
    """One line per task and kind of value: do the paper's two claims hold (yes / no / – when a cell is missing),
    with the paired bootstrap p-value of each?"""
    word = {True: "yes", False: "no", None: "–"}
    names = {"paper_comparable": "paper's metric, soft mask", "headline": "headline, hard mask"}

    def said(c: dict, name: str) -> str:
        p = (c.get("p_values") or {}).get(name)
        return word[c[name]] + ("" if p is None else f" (p = {p:.3f})")

    return "\n".join(
        f"{task} ({names[kind]}): subnetwork > MLP-1 on the pretrained model: {said(c, CLAIMS[0])}; "
        f"subnetwork < MLP-1 on both reset models: {said(c, CLAIMS[1])}"
        for task, kinds in found.items() for kind, c in kinds.items()
    )
