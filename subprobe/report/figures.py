"""Figures 1 and 2 (and the accuracy-against-density curve) as files: numbers (JSON, CSV, Markdown) and plots (PNG,
SVG) in one output directory."""

from __future__ import annotations

import re
from pathlib import Path

from subprobe.report import density, localisation, mdl, pareto, render
from subprobe.runs import write_json, write_text

FIGURES_DIR = "figures"


def slug(*parts: str) -> str:
    """A file-name-safe name from ``parts`` (letters, digits, dot, dash, underscore)."""
    text = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _model_suffix(model: str, models: set[str]) -> str:
    return slug(Path(model).name) if len(models) > 1 else ""


def _plot_each(report: list[dict], out: Path, kind: str, plot, images: list[str]) -> None:
    """``plot(entry, stem)`` for every entry (one task and model) into figures/<kind>-<task>[-<model>]; each
    entry's ``images`` (relative to ``out``) are set and added to ``images``."""
    models = {e["model"] for e in report}
    for entry in report:
        stem = out / FIGURES_DIR / slug(kind, entry["task"], _model_suffix(entry["model"], models))
        entry["images"] = [str(p.relative_to(out)) for p in plot(entry, stem)]
        images.extend(entry["images"])


def write_figure1(results: list[dict], out: str | Path, split: str = "dev", plots: bool = True) -> dict:
    """pareto.json, pareto-points.csv, pareto-dominance.csv, pareto.md and figures/pareto-<task>.{png,svg}."""
    out = Path(out)
    report = pareto.pareto_report(results, split)
    images: list[str] = []
    if plots:
        from subprobe.report import plots as plotting

        _plot_each(report, out, "pareto", plotting.pareto_plot, images)
    write_json(out / "pareto.json", report)
    write_text(out / "pareto-points.csv", render.to_csv(pareto.points_table(report)))
    write_text(out / "pareto-dominance.csv", render.to_csv(pareto.dominance_table(report)))
    summary = pareto.summary_table(report)
    markdown = render.markdown(summary)
    write_text(out / "pareto.md", markdown)
    return {"report": report, "summary": summary, "markdown": markdown, "images": images}


def write_mdl(results: list[dict], out: str | Path, plots: bool = True) -> dict:
    """mdl.json (every MDL point's online code), mdl.csv, mdl.md and figures/mdl-<task>.{png,svg}: codelength
    against data (:mod:`subprobe.report.mdl`)."""
    out = Path(out)
    report = mdl.mdl_report(results)
    by_task: dict[tuple[str, str], list[dict]] = {}
    for e in report:
        by_task.setdefault((e["task"], e["model"]), []).append(e)
    entries = [{"task": task, "model": model, "points": points} for (task, model), points in by_task.items()]
    images: list[str] = []
    if plots and entries:
        from subprobe.report import plots as plotting

        _plot_each(entries, out, "mdl", plotting.mdl_plot, images)
    table = mdl.mdl_table(report)
    markdown = render.markdown(table)
    write_json(out / "mdl.json", [{k: v for k, v in e.items() if k != "row"} for e in report])
    write_text(out / "mdl.csv", render.to_csv(table))
    write_text(out / "mdl.md", markdown)
    return {"report": report, "entries": entries, "table": table, "markdown": markdown, "images": images}


def write_density(results: list[dict], out: str | Path, split: str = "dev", plots: bool = True) -> dict:
    """density.json, density.csv, density.md and figures/density-<task>.{png,svg}: accuracy against density of
    the subnetworks trained to a --target-density (:mod:`subprobe.report.density`)."""
    out = Path(out)
    report = density.density_report(results, split)
    images: list[str] = []
    if plots:
        from subprobe.report import plots as plotting

        _plot_each(report, out, "density", plotting.density_plot, images)
    table = density.density_table(report, split)
    markdown = render.markdown(table)
    write_json(out / "density.json", report)
    write_text(out / "density.csv", render.to_csv(table))
    write_text(out / "density.md", markdown)
    return {"report": report, "table": table, "markdown": markdown, "images": images}


def write_figure2(results: list[dict], out: str | Path, split: str = "dev", num_heads: int | None = None,
                  plots: bool = True) -> dict:
    """localisation.json, localisation-{layers,matrix,heads,selection}.csv, localisation.md and the plots:
    figures/layers-<task>, figures/matrix-<task>-<setting>, figures/heads-<task>-<setting> (PNG and SVG)."""
    out = Path(out)
    report = localisation.localisation_report(results, split, num_heads)
    models = {e["model"] for e in report["selections"]}
    images: list[str] = []
    report["layer_images"] = {}
    report["layer_images_paper"] = {}
    if plots:
        from subprobe.report import plots as plotting

        by_task: dict[tuple[str, str], dict[str, list]] = {}
        by_task_paper: dict[tuple[str, str], dict[str, list]] = {}
        for e in report["selections"]:
            loc = e["localisation"]
            if not loc:
                continue
            legend = f"{e['setting']} (λmax={e['selected_lambda']:g})"
            by_task.setdefault((e["task"], e["model"]), {})[legend] = loc["layer"]["fraction"]
            by_task_paper.setdefault((e["task"], e["model"]), {})[legend] = loc["paper"]["normalised"]
            name = [e["task"], e["setting"], _model_suffix(e["model"], models)]
            label = f"{e['task']}, {e['setting']}, λmax={e['selected_lambda']:g}"
            e["images"] = {}
            paths = plotting.heatmap(loc["layer_matrix"], loc["layers"], loc["matrix_types"],
                                     f"{label}: kept weights per matrix type", "matrix", out / FIGURES_DIR /
                                     slug("matrix", *name))
            e["images"]["matrix"] = [str(p.relative_to(out)) for p in paths]
            if loc["heads"]:
                heads = loc["heads"]
                paths = plotting.heatmap(heads["fraction"], loc["layers"], list(range(heads["num_heads"])),
                                         f"{label}: kept Q/K/V/O weights per head", "head",
                                         out / FIGURES_DIR / slug("heads", *name))
                e["images"]["heads"] = [str(p.relative_to(out)) for p in paths]
            images.extend(p for ps in e["images"].values() for p in ps)
        for (task, model), by_setting in by_task.items():
            paths = plotting.layer_bars(task, by_setting, out / FIGURES_DIR /
                                        slug("layers", task, _model_suffix(model, models)))
            report["layer_images"][f"{task}|{model}"] = [str(p.relative_to(out)) for p in paths]
            images.extend(report["layer_images"][f"{task}|{model}"])
            paths = plotting.layer_bars(
                task, by_task_paper[(task, model)],
                out / FIGURES_DIR / slug("layers-paper", task, _model_suffix(model, models)),
                what="paper's statistic: mean soft Q/K/V mask, normalised over layers", ylabel="share of the total (%)",
            )
            report["layer_images_paper"][f"{task}|{model}"] = [str(p.relative_to(out)) for p in paths]
            images.extend(report["layer_images_paper"][f"{task}|{model}"])
    write_json(out / "localisation.json", report)
    write_text(out / "localisation-layers.csv", render.to_csv(localisation.layers_table(report)))
    write_text(out / "localisation-matrix.csv", render.to_csv(localisation.matrix_table(report)))
    write_text(out / "localisation-heads.csv", render.to_csv(localisation.heads_table(report)))
    write_text(out / "localisation-selection.csv", render.to_csv(localisation.selection_table(report)))
    summary = localisation.summary_table(report)
    markdown = render.markdown(summary)
    write_text(out / "localisation.md", markdown)
    return {"report": report, "summary": summary, "markdown": markdown, "images": images}
