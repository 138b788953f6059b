"""``subprobe reproduce table1|table2|figure1|figure2|selectivity|density|mdl``: run the paper's grids (and the
selectivity, density and MDL grids) into a store and write the tables, or the figures' numbers and plots."""

from __future__ import annotations

from pathlib import Path

from subprobe.errors import ConfigError
from subprobe.experiments.grids import load_grid
from subprobe.experiments.sweep import check_overrides, default_store, point_values, run_points, seeds_axis
from subprobe.runs import write_json, write_text

TABLES = ("table1", "table2")
FIGURES = ("figure1", "figure2")
#: Grids of the probing literature beyond the paper, each written as one report table.
EXTRAS = ("selectivity", "density", "mdl")


def reproduce(
    what: str,
    *,
    profile: str = "quick",
    model: str | None = None,
    tasks: list[str] | None = None,
    seeds: int = 1,
    out: str | None = None,
    data_dir: str | None = None,
    echo=print,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    overrides: dict | None = None,
    executor=None,
) -> dict:
    """Run (or resume) the grid of ``what`` and write its table files into the store root.

    ``overrides``: configuration values for every point (not an axis of the grid; part of each point's key),
    e.g. ``{"max_train_samples": 300, "epochs": 1}``. ``executor``: where the points run
    (:func:`subprobe.experiments.executors.make_executor`; default one after another in this process)."""
    from subprobe.report import tables
    from subprobe.report.claims import all_claims

    if what not in TABLES + FIGURES + EXTRAS:
        raise ConfigError(f"reproduce {what!r} is not known here; use one of {', '.join(TABLES + FIGURES + EXTRAS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    grid = load_grid(what)
    points = seeds_axis(grid.points(profile, task=tasks), seeds)
    base = {k: v for k, v in (("model", model), ("data_dir", data_dir)) if v}
    if device:  # where the runs compute; not part of a run's key (see store.NON_RESULT_FIELDS)
        base["device"] = device
    if gradient_checkpointing:
        base["gradient_checkpointing"] = True
    check_overrides(overrides or {}, grid, seeds)
    if what == "mdl":  # every point becomes its online code's block runs (each a whole configuration)
        from subprobe.complexity.mdl import expand_points

        points, base, overrides = expand_points([point_values(p, base, overrides) for p in points]), {}, {}
    store = default_store(out)
    counts = run_points(points, store, base, echo=echo, overrides=overrides, executor=executor)
    model_name = model or "all-MiniLM-L6-v2"
    wanted = {store.run_dir(_config(point_values(p, base, overrides)))[1].name for p in points}
    results = [r for r in store.results() if Path(r["run_dir"]).name in wanted]
    if what in FIGURES:
        return _figure(what, wanted, store, counts, echo)
    if what == "selectivity":
        return _selectivity(wanted, store, counts, echo)
    if what == "density":
        return _density(wanted, store, counts, echo)
    if what == "mdl":
        return _mdl(wanted, store, counts, echo)
    build = tables.table1 if what == "table1" else tables.table2
    markdown, csv_text = build(results, "dev", model_name)
    test_md, _ = build(results, "test", model_name)
    claims = all_claims(results, "dev")
    root = Path(store.root)
    write_text(root / f"{what}.md", markdown + "\n" + test_md)
    write_text(root / f"{what}.csv", csv_text)
    write_json(root / f"{what}-claims.json", claims)
    echo(markdown)
    if what == "table1" and claims["table1"]:
        echo("The paper's claims on this model (dev; p: paired bootstrap over dev sentences; table1-claims.json):\n"
             + tables.claims_text(claims["table1"]))
    echo(f"{what}: {counts['done']} run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; tables in {root}")
    return {"counts": counts, "claims": claims, "markdown": markdown}


def _config(values: dict):
    from subprobe.config import ProbeConfig

    return ProbeConfig(**values)


def _selectivity(wanted: set[str], store, counts: dict, echo) -> dict:
    """The selectivity table (task - control task per probe) into the store root."""
    from subprobe.report import render, selectivity
    from subprobe.report.loading import load_results

    root = Path(store.root)
    results = [r for r in load_results(root) if Path(r["run_dir"]).name in wanted]
    table = selectivity.selectivity_table(results)
    markdown = render.markdown(table)
    write_text(root / "selectivity.md", markdown)
    write_text(root / "selectivity.csv", render.to_csv(table))
    echo(markdown)
    echo(f"selectivity: {counts['done']} run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; table in {root}")
    return {"counts": counts, "rows": table.rows, "markdown": markdown}


def _density(wanted: set[str], store, counts: dict, echo) -> dict:
    """Accuracy against density (subnetworks at target densities): numbers and plots into the store root."""
    from subprobe.report import figures
    from subprobe.report.loading import load_results

    root = Path(store.root)
    results = [r for r in load_results(root) if Path(r["run_dir"]).name in wanted]
    written = figures.write_density(results, root)
    echo(written["markdown"])
    echo(f"density: {counts['done']} run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; density.{{md,csv,json}} and figures/density-<task>.{{png,svg}} in {root}")
    return {"counts": counts, "report": written["report"], "rows": written["table"].rows,
            "markdown": written["markdown"], "images": written["images"]}


def _mdl(wanted: set[str], store, counts: dict, echo) -> dict:
    """MDL's online codes (every point's block runs assembled): mdl.{json,md,csv} and codelength-vs-data plots."""
    from subprobe.report import figures
    from subprobe.report.loading import load_results

    root = Path(store.root)
    results = [r for r in load_results(root) if Path(r["run_dir"]).name in wanted]
    written = figures.write_mdl(results, root)
    echo(written["markdown"])
    echo(f"mdl: {counts['done']} block run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; mdl.{{md,csv,json}} and figures/mdl-<task>.{{png,svg}} in {root}")
    return {"counts": counts, "report": written["report"], "rows": written["table"].rows,
            "markdown": written["markdown"], "images": written["images"]}


def _figure(what: str, wanted: set[str], store, counts: dict, echo) -> dict:
    """Figure 1 (Pareto curves) or Figure 2 (localisation): numbers and plots into the store root."""
    from subprobe.report import figures
    from subprobe.report.loading import load_results

    root = Path(store.root)
    results = [r for r in load_results(root) if Path(r["run_dir"]).name in wanted]
    if what == "figure1":
        written = figures.write_figure1(results, root)
    else:
        written = figures.write_figure2(results, root)
    echo(written["markdown"])
    echo(f"{what}: {counts['done']} run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; numbers and plots in {root} (HTML: subprobe report {root} --out DIR)")
    return {"counts": counts, "report": written["report"], "markdown": written["markdown"]}
