"""Where the subnetworks are (Figure 2): kept weights per layer, matrix type and attention head.

Everything is read from the hard masks (a mask unit is kept iff its deterministic value is >= 0.5)
and counted in *weights*: a mask unit governing a block of ``rows x cols`` weights counts that many.

* per layer: kept weights / masked weights of the layer's six matrices;
* per layer x matrix type (q, k, v, o, ffn_in, ffn_out): the same per matrix type;
* per layer x attention head: over the weights of Q, K and V rows ``r`` with ``r // head_dim == h``
  and of O columns ``c`` with ``c // head_dim == h`` (with grouped K/V heads, a K/V head counts for
  every query head of its group); the weight-level masks come from
  :func:`subprobe.masking.layouts.expand_mask`, so the strided and contiguous layouts are both right;
* centre of mass over layers: ``sum_l l * kept_l / sum_l kept_l`` with 0-based layers and ``kept_l``
  the number of kept weights of layer l; normalised by ``L - 1`` (0 = first layer, 1 = last) so that
  models of different depths compare.

Beside ours, the paper's Figure 2 statistic (``paper``): per layer the mean *soft* (deterministic)
mask value over the attention matrices Q, K and V (weight-weighted, so any granularity or layout
gives the same number), normalised over layers to sum to 1; and the centre of mass of that profile.
It ignores the FFN matrices, which hold two thirds of a block's weights and dominate our count.

The paper's selection rule for Figure 2: per task and model setting, the largest lambda_max whose
accuracy is within 10% (relative) of fine-tuning accuracy, ``acc >= 0.9 * finetune_acc``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from functools import lru_cache

import torch

from subprobe.errors import SubprobeError
from subprobe.masking import counting
from subprobe.masking import hard_concrete as hc
from subprobe.models.loading import num_attention_heads
from subprobe.models.targets import ROLES
from subprobe.report import render
from subprobe.report.loading import family, settings
from subprobe.report.mask_sources import is_lambda_subnetwork
from subprobe.report.render import Table
from subprobe.runs import RunDir

#: The lambda_max values of the paper's Table 2 / Figure 2.
PAPER_LAMBDAS = (1.0, 5.0, 25.0, 125.0)
ATTENTION_ROLES = ("q", "k", "v", "o")


def localise(sub, num_heads: int | None = None) -> dict:
    """Kept fractions of ``sub`` (a :class:`~subprobe.masking.subnetwork.Subnetwork`) by layer, type and head.

    ``num_heads`` None leaves the per-head table out (``heads`` is None).
    """
    n_layers = max((e.layer for e in sub.entries), default=-1) + 1
    kept = [0] * n_layers
    total = [0] * n_layers
    role_kept: dict[tuple[int, str], int] = defaultdict(int)
    role_total: dict[tuple[int, str], int] = defaultdict(int)
    for e in sub.entries:
        n = counting.kept_weights(e.log_alpha, e.block)
        size = counting.masked_weights(e.log_alpha, e.block)
        kept[e.layer] += n
        total[e.layer] += size
        role_kept[(e.layer, e.role)] += n
        role_total[(e.layer, e.role)] += size
    roles = [r for r in ROLES if any(k[1] == r for k in role_total)]
    roles += sorted({k[1] for k in role_total} - set(roles))
    matrix = [[role_kept[(layer, r)] / role_total[(layer, r)] if role_total.get((layer, r)) else None for r in roles]
              for layer in range(n_layers)]
    com = centre_of_mass(kept)
    paper = paper_profile(sub, n_layers)
    return {
        "layers": list(range(n_layers)),
        "layer": {"kept": kept, "total": total, "fraction": [k / t if t else None for k, t in zip(kept, total)]},
        "matrix_types": roles,
        "layer_matrix": matrix,
        "heads": head_fractions(sub, num_heads) if num_heads else None,
        "density": sum(kept) / max(1, sum(total)),
        "centre_of_mass": com,
        "centre_of_mass_normalised": None if com is None or n_layers < 2 else com / (n_layers - 1),
        "paper": paper,
    }


#: The matrices of the paper's Figure 2 statistic.
PAPER_ROLES = ("q", "k", "v")


def paper_profile(sub, n_layers: int) -> dict:
    """The paper's Figure 2 statistic: mean soft Q/K/V mask per layer, normalised over layers, and its centre
    of mass (``None`` values when the subnetwork has no Q/K/V matrix or keeps nothing of them)."""
    mass = [0.0] * n_layers
    size = [0] * n_layers
    for e in sub.entries:
        if e.role in PAPER_ROLES:
            mass[e.layer] += float(hc.soft_mask(e.log_alpha).double().sum()) * e.weights_per_mask
            size[e.layer] += e.shape[0] * e.shape[1]
    mean = [m / n if n else None for m, n in zip(mass, size)]
    total = sum(v for v in mean if v is not None)
    normalised = [None if v is None or total <= 0 else v / total for v in mean]
    com = centre_of_mass([v or 0.0 for v in normalised]) if total > 0 else None
    return {
        "mean_soft_qkv": mean,
        "normalised": normalised,
        "centre_of_mass": com,
        "centre_of_mass_normalised": None if com is None or n_layers < 2 else com / (n_layers - 1),
    }


def centre_of_mass(kept: list[float]) -> float | None:
    """``sum_l l * kept_l / sum_l kept_l`` (0-based layers); None when nothing is kept."""
    mass = sum(kept)
    if mass <= 0:
        return None
    return sum(layer * k for layer, k in enumerate(kept)) / mass


def head_fractions(sub, num_heads: int) -> dict:
    """Fraction of Q/K/V/O weights kept per (layer, attention head)."""
    if num_heads < 1:
        raise SubprobeError(f"the number of attention heads must be positive, got {num_heads}")
    n_layers = max((e.layer for e in sub.entries), default=-1) + 1
    kept = torch.zeros(n_layers, num_heads, dtype=torch.float64)
    total = torch.zeros(n_layers, num_heads, dtype=torch.float64)
    head_dim = None
    for e in sub.entries:
        if e.role in ("q", "o"):
            width = e.shape[1] if e.role == "o" else e.shape[0]
            if width % num_heads:
                raise SubprobeError(
                    f"{e.name}: {width} {'columns' if e.role == 'o' else 'rows'} do not split into {num_heads} heads; "
                    "check the number of attention heads"
                )
            head_dim = width // num_heads
    if head_dim is None:
        raise SubprobeError("the subnetwork has no Q or O matrices: cannot find the attention heads")
    for e in sub.entries:
        if e.role not in ATTENTION_ROLES:
            continue
        weights = counting.kept_weight_mask(e.log_alpha, e.block, sub.layout).to(torch.float64)
        if tuple(weights.shape) != tuple(e.shape):
            raise SubprobeError(f"{e.name}: the expanded mask has shape {tuple(weights.shape)}, not {e.shape}")
        if e.role == "o":
            per_head = weights.reshape(e.shape[0], num_heads, head_dim).sum(dim=(0, 2))
            kept[e.layer] += per_head
            total[e.layer] += e.shape[0] * head_dim
            continue
        groups = e.shape[0] // head_dim
        if groups == 0 or e.shape[0] % head_dim or num_heads % groups:
            raise SubprobeError(f"{e.name}: {e.shape[0]} rows are not whole heads of {head_dim}")
        per_group = weights.reshape(groups, head_dim, e.shape[1]).sum(dim=(1, 2))
        per_head = per_group.repeat_interleave(num_heads // groups)  # grouped K/V heads serve several queries
        kept[e.layer] += per_head
        total[e.layer] += head_dim * e.shape[1]
    fraction = torch.where(total > 0, kept / total.clamp(min=1), torch.full_like(total, float("nan")))
    return {
        "num_heads": num_heads,
        "head_dim": head_dim,
        "fraction": [[None if v != v else float(v) for v in row] for row in fraction.tolist()],
    }


@lru_cache(maxsize=32)
def heads_from_model(model: str) -> int | None:
    """``num_attention_heads`` of a model's config, read offline (None when it cannot be read)."""
    try:
        from transformers import AutoConfig

        from subprobe.models.loading import resolve_model_path

        path = resolve_model_path(model)
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception:  # no such model, not cached, not importable: the caller says so
        return None
    return num_attention_heads(config)


def num_heads_for(result: dict, override: int | None = None) -> tuple[int | None, str]:
    """The head count for a run and where it came from: the override, metrics.json, or the model config."""
    if override:
        return override, "given"
    if result.get("num_attention_heads"):
        return int(result["num_attention_heads"]), RunDir.METRICS
    model = result.get("model") or result.get("config", {}).get("model")
    if model:
        heads = heads_from_model(str(model))
        if heads:
            return heads, f"config of model {model}"
    return None, (f"unknown: metrics.json has no num_attention_heads and the config of model {model!r} could not be "
                  "read offline; pass --num-heads")


def _lambda(m: dict) -> float:
    return float(settings(m).lambda_max)


def _mean_acc(runs: list[dict], split: str) -> float:
    return statistics.fmean(r[split][r["primary_metric"]] for r in runs)


def select_lambda(results: list[dict], split: str = "dev", tolerance: float = 0.10) -> list[dict]:
    """The paper's Figure 2 rule per (task, model, setting) over neuron subnetworks.

    The reference is fine-tuning accuracy in the same setting if there is such a run, else on the
    pretrained model. The largest lambda_max with ``acc >= (1 - tolerance) * reference`` is selected;
    when none qualifies (or there is no fine-tuning run) the smallest lambda_max is taken instead and
    ``rule_met`` says so (False, or None without a reference).
    """
    subnets: dict = defaultdict(lambda: defaultdict(list))
    finetune: dict = defaultdict(list)
    for m in results:
        if not m.get(split):
            continue
        found = family(m)
        if is_lambda_subnetwork(m) and settings(m).granularity == "neuron":
            subnets[(m["task"], m.get("series", m.get("model", "")), m["setting"])][_lambda(m)].append(m)
        elif found is not None and found.trains_encoder:
            finetune[(m["task"], m.get("series", m.get("model", "")), m["setting"])].append(m)
    out = []
    from subprobe.report.tables import SETTINGS
    from subprobe.tasks.registry import task_order

    setting_order = {s: i for i, s in enumerate(SETTINGS)}
    for (task, model, setting), by_lambda in sorted(
        subnets.items(), key=lambda kv: (task_order(kv[0][0]), kv[0][1], setting_order.get(kv[0][2], 99))
    ):
        ref_setting = setting if finetune.get((task, model, setting)) else "pretrained"
        ref_runs = finetune.get((task, model, ref_setting))
        reference = _mean_acc(ref_runs, split) if ref_runs else None
        threshold = None if reference is None else (1 - tolerance) * reference
        candidates = []
        for lam in sorted(by_lambda):
            runs = by_lambda[lam]
            acc = _mean_acc(runs, split)
            dens = [r["density"] for r in runs if "density" in r]
            candidates.append({
                "lambda_max": lam, "accuracy": acc, "density": statistics.fmean(dens) if dens else None,
                "within": None if threshold is None else acc >= threshold, "n": len(runs),
            })
        passing = [c["lambda_max"] for c in candidates if c["within"]]
        if passing:
            chosen, rule_met, note = max(passing), True, ""
        else:
            chosen = candidates[0]["lambda_max"]
            rule_met = None if threshold is None else False
            note = ("no fine-tuning run: the smallest lambda_max is shown" if threshold is None else
                    "no lambda_max is within the tolerance of fine-tuning: the smallest is shown")
        runs = sorted(by_lambda[chosen], key=lambda r: (settings(r).seed, r.get("run_dir", "")))
        out.append({
            "task": task, "model": model, "setting": setting,
            "reference": None if reference is None else {"setting": ref_setting, "accuracy": reference},
            "threshold": threshold, "tolerance": tolerance, "candidates": candidates,
            "selected_lambda": chosen, "rule_met": rule_met, "note": note,
            "run_dir": runs[0].get("run_dir"), "result": runs[0],
        })
    return out


def localisation_report(results: list[dict], split: str = "dev", num_heads: int | None = None) -> dict:
    """Selection rule, localisation of each selected subnetwork, and centre of mass per task."""
    from subprobe.masking.subnetwork import Subnetwork

    entries = []
    for sel in select_lambda(results, split):
        result = sel.pop("result")
        entry = {**sel, "localisation": None, "heads_source": None}
        masks = RunDir(sel["run_dir"] or "").masks_path
        if not masks.is_file():
            entry["note"] = (entry["note"] + "; " if entry["note"] else "") + f"no masks file {masks}"
            entries.append(entry)
            continue
        heads, source = num_heads_for(result, num_heads)
        entry["localisation"] = localise(Subnetwork.load(masks), heads)
        entry["heads_source"] = source
        entries.append(entry)
    # keyed by task, or by "task (series)" when the runs hold several models or budgets
    several = len({e["model"] for e in entries}) > 1
    centre: dict = defaultdict(dict)
    by_series: dict = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        if e["localisation"]:
            loc = e["localisation"]
            row = {
                "model": e["model"], "lambda_max": e["selected_lambda"],
                "centre_of_mass": loc["centre_of_mass"], "normalised": loc["centre_of_mass_normalised"],
                "paper_centre_of_mass": loc["paper"]["centre_of_mass"],
                "paper_normalised": loc["paper"]["centre_of_mass_normalised"],
            }
            centre[f"{e['task']} ({e['model']})" if several else e["task"]][e["setting"]] = row
            by_series[e["model"]][e["setting"]][e["task"]] = (row["normalised"], row["paper_normalised"])
    orders: dict = {}
    orders_paper: dict = {}
    for model, per_setting in sorted(by_series.items()):
        for setting in sorted(per_setting):
            key = f"{setting}, {model}" if several else setting
            for i, found in ((0, orders), (1, orders_paper)):
                ranked = sorted((v[i], t) for t, v in per_setting[setting].items() if v[i] is not None)
                found[key] = " < ".join(t for _, t in ranked)
    return {"split": split, "selections": entries, "centre_of_mass": dict(centre), "order": orders,
            "order_paper": orders_paper}


def layers_table(report: dict) -> Table:
    """Per selected run and layer: our kept-weight count and fraction, and the paper's statistic."""
    rows = []
    for e in report["selections"]:
        loc = e["localisation"]
        if loc:
            paper = loc["paper"]
            for layer, k, t, f, ps, pn in zip(loc["layers"], loc["layer"]["kept"], loc["layer"]["total"],
                                              loc["layer"]["fraction"], paper["mean_soft_qkv"], paper["normalised"]):
                rows.append([*_selection_key(e), layer, k, t, _num(f), _num(ps), _num(pn)])
    header = ["task", "model", "setting", "lambda_max", "layer", "kept", "total", "fraction", "paper_mean_soft_qkv",
              "paper_normalised"]
    return Table("localisation-layers", "", header, rows)


def _selection_key(e: dict) -> list:
    """The first cells of a per-selection row: task, model, setting and the selected lambda_max."""
    return [e["task"], e["model"], e["setting"], f"{e['selected_lambda']:g}"]


def _fraction_grid(report: dict, name: str, column: str, grid) -> Table:
    """One row per selected run, layer and ``column`` value: ``grid(localisation)`` gives the column labels and
    the per-layer rows of fractions (None: the run has no such grid)."""
    rows = []
    for e in report["selections"]:
        found = grid(e["localisation"] or {})
        if found:
            labels, layers, fractions = found
            for layer, row in zip(layers, fractions):
                rows.extend([*_selection_key(e), layer, label, _num(f)] for label, f in zip(labels, row))
    return Table(name, "", ["task", "model", "setting", "lambda_max", "layer", column, "fraction"], rows)


def matrix_table(report: dict) -> Table:
    """Per selected run, layer and matrix type: the kept fraction."""
    return _fraction_grid(report, "localisation-matrix", "matrix", lambda loc: loc and (
        loc["matrix_types"], loc["layers"], loc["layer_matrix"]))


def heads_table(report: dict) -> Table:
    """Per selected run, layer and attention head: the kept fraction of its Q/K/V/O weights."""
    def grid(loc: dict):
        heads = loc.get("heads")
        return heads and (range(heads["num_heads"]), range(len(heads["fraction"])), heads["fraction"])

    return _fraction_grid(report, "localisation-heads", "head", grid)


def selection_table(report: dict) -> Table:
    """Every lambda_max candidate of the selection rule, with its reference and whether it was selected."""
    rows = []
    for e in report["selections"]:
        ref = e["reference"] or {}
        for c in e["candidates"]:
            within = "" if c["within"] is None else int(c["within"])
            rows.append([e["task"], e["model"], e["setting"], f"{c['lambda_max']:g}", _num(c["accuracy"]),
                         _num(c["density"]), ref.get("setting", ""), _num(ref.get("accuracy")), within,
                         int(c["lambda_max"] == e["selected_lambda"])])
    header = ["task", "model", "setting", "lambda_max", "accuracy", "density", "reference_setting",
              "reference_accuracy", "within_tolerance", "selected"]
    return Table("localisation-selection", "", header, rows)


def layers_csv(report: dict) -> str:
    return render.to_csv(layers_table(report))


def matrix_csv(report: dict) -> str:
    return render.to_csv(matrix_table(report))


def heads_csv(report: dict) -> str:
    return render.to_csv(heads_table(report))


def selection_csv(report: dict) -> str:
    return render.to_csv(selection_table(report))


def summary_table(report: dict) -> Table:
    """Selected lambda_max, density and centre of mass per task and setting (id ``localisation-summary``)."""
    several = len({e["model"] for e in report["selections"]}) > 1
    header = ["task", *(["series"] if several else []), "setting", "λmax selected", "rule met", "accuracy (%)",
              "fine-tuning ref. (%)", "density", "centre of mass (layer)", "normalised",
              "paper's statistic: centre of mass", "normalised"]
    rows = []
    for e in report["selections"]:
        chosen = next(c for c in e["candidates"] if c["lambda_max"] == e["selected_lambda"])
        loc = e["localisation"] or {}
        ref = e["reference"]
        ref_text = "–" if ref is None else f"{ref['accuracy'] * 100:.2f} ({ref['setting']})"
        met = {True: "yes", False: "no", None: "–"}[e["rule_met"]]
        com, norm = loc.get("centre_of_mass"), loc.get("centre_of_mass_normalised")
        paper = loc.get("paper") or {}
        pcom, pnorm = paper.get("centre_of_mass"), paper.get("centre_of_mass_normalised")
        acc = chosen["accuracy"] * 100
        rows.append([e["task"], *([e["model"]] if several else []), e["setting"], f"{e['selected_lambda']:g}", met,
                     f"{acc:.2f}", ref_text, _num(loc.get("density"), 4) or "–", _num(com, 2) or "–",
                     _num(norm, 3) or "–", _num(pcom, 2) or "–", _num(pnorm, 3) or "–"])
    bullets = [f"order of tasks by centre of mass of kept weights, all six matrices ({setting}): {order or '–'}"
               for setting, order in report["order"].items()]
    bullets += [f"order of tasks by centre of mass of the paper's statistic, mean soft Q/K/V mask ({setting}): "
                f"{order or '–'}" for setting, order in report.get("order_paper", {}).items()]
    return Table("localisation-summary", "", header, rows, bullets=bullets,
                 empty="No neuron subnetwork runs: nothing to localise.")


def summary_markdown(report: dict) -> str:
    """``localisation.md``: :func:`summary_table` as Markdown."""
    return render.markdown(summary_table(report))


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


def centre_of_mass_table(report: dict) -> Table:
    """Centre of mass per task and setting, of the kept weights and of the paper's statistic (id
    ``centre-of-mass``): ``layer (normalised)``."""
    from subprobe.report.tables import SETTINGS

    com = report["centre_of_mass"]
    settings = sorted({s for per in com.values() for s in per}, key=lambda s: SETTINGS.index(s)
                      if s in SETTINGS else 99)
    rows = []
    for task, per in com.items():
        row = [task]
        for s in settings:
            c = per.get(s)
            for key, norm in (("centre_of_mass", "normalised"), ("paper_centre_of_mass", "paper_normalised")):
                value = (c or {}).get(key)
                row.append("–" if value is None else
                           f"{value:.2f} ({c[norm]:.3f})" if c.get(norm) is not None else f"{value:.2f}")
        rows.append(row)
    header = ["task"] + [f"{s}: {kind}" for s in settings for kind in ("kept weights", "paper's statistic")]
    return Table("centre-of-mass", "", header, rows)


def task_tables(selections: list[dict], key: str) -> list[Table]:
    """The page's tables of one task's selections: the lambda_max candidates (id ``selection-KEY``) and, when
    any selection has masks, the kept fraction per layer (``layers-KEY``)."""
    rows = [[e["setting"], f"{c['lambda_max']:g}", _pct(c["accuracy"]),
             "–" if c["density"] is None else f"{c['density']:.4f}",
             {True: "yes", False: "no", None: "–"}[c["within"]],
             "selected" if c["lambda_max"] == e["selected_lambda"] else ""]
            for e in selections for c in e["candidates"]]
    header = ["setting", "λmax", "accuracy (%)", "density", "within 10% of fine-tuning", "selected"]
    out = [Table(f"selection-{key}", "", header, rows)]
    with_loc = [e for e in selections if e["localisation"]]
    if with_loc:
        n_layers = max(len(e["localisation"]["layers"]) for e in with_loc)
        rows = [[layer] + [_pct(_at(e["localisation"]["layer"]["fraction"], layer)) for e in with_loc]
                for layer in range(n_layers)]
        out.append(Table(f"layers-{key}", "", ["layer"] + [f"{e['setting']} kept (%)" for e in with_loc], rows))
    return out


def _num(value, digits: int = 6) -> str:
    """``value`` with ``digits`` decimals; "" for None."""
    return "" if value is None else f"{value:.{digits}f}"
