"""Tables 1 and 2 of the paper from a results store, beside the paper's bert-base numbers."""

from __future__ import annotations

import statistics
from collections import defaultdict
from functools import cache

from subprobe.probes.family import ProbeFamily
from subprobe.probes.registry import families
from subprobe.report import intervals, render, significance
from subprobe.report.loading import family, run_label, settings
from subprobe.report.mask_sources import is_lambda_subnetwork
from subprobe.report.render import Table
from subprobe.tasks.base import Task
from subprobe.tasks.registry import find_task, task_order

SETTINGS = ("pretrained", "reset-encoder", "reset-all")
SETTING_TITLES = {"pretrained": "Pre-trained ↑", "reset-encoder": "Reset encoder ↓", "reset-all": "Reset all ↓"}


@cache
def task_facts(name: str) -> Task | None:
    """What the report shows of the task ``name`` (its title, metrics, the paper's numbers); None when this version
    has no such task."""
    return find_task(name)


def task_title(name: str) -> str:
    facts = task_facts(name)
    return facts.title if facts is not None else name


def metric_title(name: str) -> str:
    """How plots name the task's primary metric."""
    facts = task_facts(name)
    return facts.metric_title if facts is not None else "accuracy"


def paper_metric(task: str, primary: str) -> str:
    """The ``metrics.json`` key of the value the paper reports for ``task`` (the primary metric if it has none)."""
    facts = task_facts(task)
    return (facts.paper_metric if facts is not None else None) or primary


def paper_row(task: str, title: str) -> tuple[float, float, float] | None:
    """The paper's Table 1 numbers of ``task`` for the probe the paper calls ``title`` (None: not in the paper)."""
    facts = task_facts(task)
    return None if facts is None else facts.paper_table1.get(title)


def paper_lambda_row(task: str, lam: float) -> tuple[float, float, float] | None:
    """The paper's Table 2 numbers of ``task`` for neuron subnetworks at lambda_max ``lam``."""
    facts = task_facts(task)
    return None if facts is None or lam != int(lam) else facts.paper_table2.get(int(lam))


def tasks_in(cells: dict) -> list[str]:
    """The tasks of ``cells`` (keyed by task first) in the registry's order."""
    return sorted({k[0] for k in cells}, key=task_order)


#: What each kind of value is, for table notes and the claims file.
VALUE_KINDS = {
    "paper_comparable": "the paper's metric (UPOS sentence-macro accuracy, dep LAS with argmax heads and labels "
    "from the gold head, sentence-macro; NER entity F1) with the soft mask, as the paper reports",
    "headline": "our headline (UPOS token-micro accuracy, dep LAS of MST trees, token-micro; NER entity F1) with "
    "the hard (binarised) mask",
}


def paper_comparable(m: dict, split: str) -> float | None:
    """The run's value measured as the paper measured it (soft mask for subnetworks; see :func:`paper_metric`)."""
    key, metric = value_source(m, split, "paper_comparable")
    return (m.get(key) or {}).get(metric)


def value_source(m: dict, split: str, kind: str) -> tuple[str, str]:
    """Where a run's value of ``kind`` (:data:`VALUE_KINDS`) is: the scores key (``dev``, ``dev_soft``, ...) and
    the metric."""
    if kind == "headline":
        return split, m["primary_metric"]
    key = f"{split}_soft" if m.get(f"{split}_soft") else split
    return key, paper_metric(m["task"], m["primary_metric"])


def paper_families() -> list[ProbeFamily]:
    """The probe families of the paper's Tables 1 and 2, in the registry's order."""
    return [f for f in families() if f.in_paper_tables]


def _paper_pair() -> tuple[ProbeFamily, ProbeFamily]:
    """The two probes the paper's claims compare: the one that learns masks and the one with an adapter (MLP-1)."""
    paper = paper_families()
    return next(f for f in paper if f.masks), next(f for f in paper if f.adapter)


def _row_key(m: dict) -> str | None:
    """The run's row of Tables 1 and 2 (its family's ``table_row``: e.g. neuron masks by lambda_max, full-rank
    MLP-1), None when it is not one: other units, and masks that are controls or held at a --target-density."""
    found = family(m)
    if found is None or (found.masks and not is_lambda_subnetwork(m)):
        return None
    return found.table_row(settings(m))


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


def _series_tables(results: list[dict], split: str, model: str, prefix: str, header: list[str], rows_of,
                   notes: list[str], title: str = "in %") -> tuple[list[Table], list[list]]:
    """One display table per series of ``results`` (ids ``PREFIX-SPLIT``, ``PREFIX-SPLIT-2``, ...; ``notes`` under
    the last) and the data rows of all of them. ``rows_of(group)``: a series' display rows and data rows (the
    data rows get the split and the series appended)."""
    shown: list[Table] = []
    data_rows: list[list] = []
    groups = by_series(results, model)
    for i, (series, group) in enumerate(groups):
        block, data = rows_of(group)
        data_rows += [[*row, split, series] for row in data]
        shown.append(Table(_series_id(f"{prefix}-{split}", i), f"Ours ({series or 'model'}, {split}, {title})", header,
                           block, notes if i == len(groups) - 1 else []))
    return shown, data_rows


def table1_tables(results: list[dict], split: str = "dev", model: str = "") -> tuple[list[Table], Table]:
    """Table 1 (rows: probe per task), one display table per series (ids ``table1-SPLIT``, ``table1-SPLIT-2``,
    ...), and the same cells as one data table (the CSV: task keys, setting columns, split and series).

    Per setting three columns: ours measured as the paper measured (:func:`paper_comparable`), the paper's
    bert-base number, and our headline (primary metric, hard mask).
    """
    rows = [(f, f.paper_row()) for f in paper_families()]
    columns = []
    for s in SETTINGS:
        columns += [f"{SETTING_TITLES[s]} ours (paper's metric)", "paper", "ours (headline)"]

    def rows_of(group: list[dict]) -> tuple[list[list], list[list]]:
        cells = collect(group, split)
        block, data = [], []
        for task in tasks_in(cells):
            for probe, row in rows:
                ref = paper_row(task, probe.title)
                vals = []
                for j, s in enumerate(SETTINGS):
                    key = (task, row, s)
                    vals += [_cell(cells, key, "paper"), f"{ref[j]:.2f}" if ref else "–", _cell(cells, key)]
                block.append([task_title(task), probe.title, *vals])
                data.append([task, probe.title, *vals])
        return block, data

    note = ("Paper: bert-base-uncased, Cao et al. 2021, Table 1 (dev). ↑: higher is better (the probe finds the "
            "property); ↓: lower is better (the probe should not learn the task on a random model). "
            f"Ours (paper's metric): {VALUE_KINDS['paper_comparable']}. Ours (headline): {VALUE_KINDS['headline']}.")
    shown, data_rows = _series_tables(results, split, model, "table1", ["task", "probe", *columns], rows_of,
                                      [note, intervals.NOTE])
    data_header = ["task", "probe"] + [f"{s}_{k}" for s in SETTINGS for k in ("comparable", "paper", "headline")]
    return shown, Table(f"table1-{split}-data", "", [*data_header, "split", "series"], data_rows)


def table1(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 1 (see :func:`table1_tables`)."""
    shown, data = table1_tables(results, split, model)
    return render.markdown(shown), render.to_csv(data)


def _table2_entries(task: str, cells: dict) -> list[tuple[str, str, tuple | None, bool]]:
    """Table 2's rows of ``task``: ``(row key, label, the paper's numbers, has masks)``; the masks family's rows
    by lambda_max, then the other probes of the paper's tables."""
    entries = []
    for probe in paper_families():
        if not probe.masks:
            entries.append((probe.paper_row(), probe.title, paper_row(task, probe.title), False))
            continue
        prefix = f"{probe.name}@"
        lambdas = sorted({float(k[1].split("@")[1]) for k in cells if k[0] == task and k[1].startswith(prefix)})
        entries += [(f"{probe.name}@{lam:g}", f"{probe.title} λmax={lam:g}", paper_lambda_row(task, lam), True)
                    for lam in lambdas]
    return entries


def table2_tables(results: list[dict], split: str = "dev", model: str = "") -> tuple[list[Table], Table]:
    """Table 2 (subnetworks by lambda_max with density, then MLP-1 and fine-tuning): display tables per series
    (ids ``table2-SPLIT``, ``table2-SPLIT-2``, ...) and one data table (the CSV).

    The three setting columns are ours measured as the paper measured (:func:`paper_comparable`); then the
    paper's bert-base numbers and our headline values (primary metric, hard mask), each as three values.
    """
    order = ("reset-all", "reset-encoder", "pretrained")
    triple = " / ".join(order)
    header = ["task", "probe", *order, f"paper ({triple})", f"ours, headline ({triple})", "density (pretrained)"]

    def rows_of(group: list[dict]) -> tuple[list[list], list[list]]:
        cells = collect(group, split)
        block, data = [], []
        for task in tasks_in(cells):
            for row, label, ref, masks in _table2_entries(task, cells):
                comparable = [_cell(cells, (task, row, s), "paper") for s in order]
                headline = [_cell(cells, (task, row, s)) for s in order]
                paper = [f"{v:.2f}" for v in reversed(ref)] if ref else ["–"] * 3
                dens = _cell(cells, (task, row, "pretrained"), "density", scale=1.0) if masks else ""
                block.append([task_title(task), label, *comparable, " / ".join(paper), " / ".join(headline), dens])
                data.append([task, label, *comparable, *paper, *headline, dens])
        return block, data

    note = ("Density: fraction of masked weights kept by the hard mask on the pretrained model. "
            f"Ours (setting columns): {VALUE_KINDS['paper_comparable']}. Headline: {VALUE_KINDS['headline']}. "
            "Paper: bert-base-uncased, Cao et al. 2021, Table 2.")
    shown, data_rows = _series_tables(results, split, model, "table2", header, rows_of, [note, intervals.NOTE])
    data_header = ["task", "probe", *(f"{s}_comparable" for s in order), *(f"{s}_paper" for s in order),
                   *(f"{s}_headline" for s in order), "density_pretrained", "split", "series"]
    return shown, Table(f"table2-{split}-data", "", data_header, data_rows)


def table2(results: list[dict], split: str = "dev", model: str = "") -> tuple[str, str]:
    """Markdown and CSV of Table 2 (see :func:`table2_tables`)."""
    shown, data = table2_tables(results, split, model)
    return render.markdown(shown), render.to_csv(data)


def tasks_tables(results: list[dict], split: str = "dev", model: str = "", name: str = "tasks"
                 ) -> tuple[list[Table], Table]:
    """The runs of any grid by task: one row per task and probe (the family's title and unit), one column per model
    setting, the primary metric (hard mask) in %, mean ± std over runs; a display table per series (ids
    ``NAME-SPLIT``, ``NAME-SPLIT-2``, ...) and one data table (the CSV). Control tasks, mask controls and
    --target-density runs are other experiments and left out."""
    kept = [m for m in results if m.get(split) and not m.get("control") and family(m) is not None
            and (not family(m).masks or is_lambda_subnetwork(m))]
    settings_seen = sorted({m["setting"] for m in kept}, key=lambda s: (SETTINGS.index(s) if s in SETTINGS else 99, s))
    order = {f.name: i for i, f in enumerate(families())}

    def rows_of(group: list[dict]) -> tuple[list[list], list[list]]:
        cells: dict = defaultdict(lambda: defaultdict(list))
        for m in group:
            label = family(m).title + (f" ({run_label(m)})" if run_label(m) else "")
            cells[(m["task"], order[m["probe"]], label)][m["setting"]].append(m[split][m["primary_metric"]])
        block, data = [], []
        for key in sorted(cells, key=lambda k: (task_order(k[0]), k[1], k[2])):
            task, _, label = key
            values = [mean_std(cells[key][s]) for s in settings_seen]
            block.append([task_title(task), label, *values])
            data.append([task, label, *values])
        return block, data

    header = ["task", "probe", *settings_seen]
    note = "Hard mask; mean ± standard deviation over runs (seeds)."
    shown, data_rows = _series_tables(kept, split, model, name, header, rows_of, [note, intervals.NOTE],
                                      "primary metric in %")
    return shown, Table(f"{name}-{split}-data", "", [*header, "split", "series"], data_rows)


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
        for task in tasks_in(cells):
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

    subnetwork, mlp = (f.paper_row() for f in _paper_pair())
    pre = (mean(subnetwork, "pretrained"), mean(mlp, "pretrained"))
    if pre == (None, None):
        return None
    resets = [(mean(subnetwork, s), mean(mlp, s)) for s in ("reset-encoder", "reset-all")]
    holds = {
        CLAIMS[0]: None if None in pre else pre[0] > pre[1],
        CLAIMS[1]: None if any(None in r for r in resets) else all(a < b for a, b in resets),
    }
    # the claims as "a above b" pairs: sub > MLP-1 pretrained; MLP-1 > sub on each reset model
    pairs = {CLAIMS[0]: [(subnetwork, mlp, "pretrained")],
             CLAIMS[1]: [(mlp, subnetwork, s) for s in ("reset-encoder", "reset-all")]}

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
