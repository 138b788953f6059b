"""Accuracy against density (``reproduce density``): the table and curves of subnetworks at target densities."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest

from subprobe.config import ProbeConfig
from subprobe.experiments.grids import load_grid
from subprobe.report import figures, plots
from subprobe.report.density import density_report, density_rows, density_table
from subprobe.report.render import markdown

MODEL = "models/tiny"


def run(task: str, target: float | None, seed: int, value: float, *, density: float | None = None,
        before: float | None = None, mask_params: int = 1000, **extra) -> dict:
    """A finished run as load_results gives it (metrics.json + run_dir + config), by hand."""
    metric = {"upos": "accuracy", "dep": "las", "ner": "f1"}[task]
    config = {"task": task, "probe": "subnetwork", "setting": "pretrained", "granularity": "neuron",
              "seed": seed, "target_density": target, "max_train_samples": 1500, **extra.pop("config", {})}
    m = {"task": task, "probe": "subnetwork", "setting": "pretrained", "model": MODEL, "primary_metric": metric,
         "dev": {metric: value}, "test": {metric: value - 0.05}, "mask_params": mask_params,
         "bits": {"lower": mask_params, "upper": mask_params}, "mask_source": "learnt", "target_density": target,
         "run_dir": f"/runs/{task}-p{target}-s{seed}", "config": config}
    if density is not None:
        m["density"] = density
    if before is not None:
        m["density_before_projection"] = before
        m["projected_units"] = 3
    m.update(extra)
    return m


def synthetic() -> list[dict]:
    return [
        run("dep", 0.1, 0, 0.60, density=0.1002, before=0.0950, mask_params=500),
        run("upos", 0.1, 0, 0.80, density=0.1010, before=0.1200),
        run("upos", 0.1, 1, 0.90, density=0.0990, before=0.1000),
        run("upos", 0.05, 0, 0.70, density=0.0500),  # no projection facts: "–" before rounding
        # none of these is a density run:
        run("upos", None, 0, 0.99, density=0.3),  # a penalty-weight run
        run("upos", 0.1, 2, 0.10, density=0.1, mask_source="random-like"),  # a control mask
        run("upos", 0.1, 3, 0.20, density=0.1, control=True),  # a control task
        run("upos", 0.1, 4, 0.30, density=0.1, dev={}),  # not scored on dev
        {**run("upos", 0.1, 5, 0.40), "probe": "mlp"},
    ]


def test_the_table_has_one_row_per_target_with_mean_and_std_over_seeds() -> None:
    rows = density_rows(density_report(synthetic()))
    # upos before dep (the paper's order), targets ascending; upos 0.1: (0.80 + 0.90) / 2 = 85.00,
    # std sqrt(2 * 0.05^2 / 1) = 7.07, t interval 85 -+ 12.7062 x 7.07 / sqrt(2) clipped to [0, 100];
    # densities (0.1010 + 0.0990) / 2, (0.1200 + 0.1000) / 2
    assert rows == [
        ["upos", MODEL, "pretrained", "neuron", "0.05", "0.0500", "–", "accuracy", "70.00", 1, "1000"],
        ["upos", MODEL, "pretrained", "neuron", "0.1", "0.1000", "0.1100", "accuracy", "85.00 ± 7.07 [21.47, 100.00]",
         2, "1000"],
        ["dep", MODEL, "pretrained", "neuron", "0.1", "0.1002", "0.0950", "las", "60.00", 1, "500"],
    ]
    test_rows = density_rows(density_report(synthetic(), "test"))
    # on test the run without dev scores counts too: 0.75, 0.85, 0.25 -> 61.67, std sqrt(0.206667 / 2) = 32.15
    assert test_rows[1][8:10] == ["61.67 ± 32.15 [0.00, 100.00]", 3]
    table = density_table(density_report(synthetic()))
    assert table.header[8] == "dev (%)" and table.id == "density"
    assert ("| upos | models/tiny | pretrained | neuron | 0.1 | 0.1000 | 0.1100 | accuracy "
            "| 85.00 ± 7.07 [21.47, 100.00] | 2 | 1000 |") in markdown(table)


def test_lines_that_differ_in_another_setting_are_named_and_kept_apart() -> None:
    results = [run("upos", 0.1, 0, 0.80, density=0.1, config={"multiplier_lr": 0.1}),
               run("upos", 0.1, 0, 0.60, density=0.1, config={"multiplier_lr": 0.3}),
               {**run("upos", 0.1, 0, 0.50, density=0.1), "setting": "reset-encoder",
                "config": {**run("upos", 0.1, 0, 0.5)["config"], "setting": "reset-encoder", "multiplier_lr": 0.1}}]
    rows = density_rows(density_report(results))
    assert [(r[2], r[8]) for r in rows] == [("pretrained (multiplier_lr=0.1)", "80.00"),
                                            ("pretrained (multiplier_lr=0.3)", "60.00"),
                                            ("reset-encoder (multiplier_lr=0.1)", "50.00")]


def test_no_density_runs_says_how_to_get_them() -> None:
    table = density_table(density_report([run("upos", None, 0, 0.9, density=0.3)]))
    assert table.rows == [] and markdown(table).startswith("No subnetwork runs with --target-density")


def test_write_density_writes_numbers_and_one_plot_per_task(tmp_path, monkeypatch) -> None:
    drawn = {}
    save = plots._save

    def capture(fig, stem):
        ax = fig.axes[0]
        drawn[stem.name] = {"xscale": ax.get_xscale(), "x": list(ax.lines[0].get_xdata()),
                            "y": [round(float(y), 6) for y in ax.lines[0].get_ydata()]}
        return save(fig, stem)

    monkeypatch.setattr(plots, "_save", capture)
    written = figures.write_density(synthetic(), tmp_path)
    assert sorted(written["images"]) == ["figures/density-dep.png", "figures/density-dep.svg",
                                         "figures/density-upos.png", "figures/density-upos.svg"]
    for image in written["images"]:
        assert (tmp_path / image).stat().st_size > 1000
    # x: achieved density (mean over seeds), y: the dev metric in % (mean over seeds), log x
    assert drawn["density-upos"] == {"xscale": "log", "x": [0.05, 0.1], "y": [70.0, 85.0]}
    assert drawn["density-dep"] == {"xscale": "log", "x": [0.1002], "y": [60.0]}
    rows = list(csv.reader(io.StringIO((tmp_path / "density.csv").read_text())))
    assert rows[0][:5] == ["task", "model", "setting", "granularity", "target density"]
    assert rows[2] == ["upos", MODEL, "pretrained", "neuron", "0.1", "0.1000", "0.1100", "accuracy",
                       "85.00 ± 7.07 [21.47, 100.00]", "2", "1000"]
    report = json.loads((tmp_path / "density.json").read_text())
    point = report[0]["lines"][0]["points"][1]
    assert point["target"] == 0.1 and point["n"] == 2 and point["values"] == [0.8, 0.9]
    assert point["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert (tmp_path / "density.md").read_text() == written["markdown"]


def test_the_density_grid_has_21_points_with_a_target_and_no_lambda() -> None:
    grid = load_grid("density")
    points = grid.points("quick")
    targets = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
    assert len(points) == 21
    assert Counter((p["task"], p["target_density"]) for p in points) == {
        (t, d): 1 for t in ("upos", "dep", "ner") for d in targets}
    for p in points:
        assert "lambda_max" not in p and p["probe"] == "subnetwork" and p["granularity"] == "neuron"
        assert p["setting"] == "pretrained"
        ProbeConfig(**p)  # --target-density with the default lambda_max is valid
    quick = {k: v for k, v in points[0].items() if k in load_grid("selectivity").profiles["quick"]}
    assert quick == load_grid("selectivity").profiles["quick"]
    assert grid.profiles["paper"] == {}


def test_reproduce_density_end_to_end(tiny_bert, tiny_data_root, tmp_path) -> None:
    from subprobe.cli import build_parser
    from subprobe.experiments.reproduce import reproduce

    assert build_parser().parse_args(["reproduce", "density", "--tasks", "upos"]).what == "density"
    out = tmp_path / "store"
    overrides = {"epochs": 1, "batch_size": 8, "eval_every": 3, "precision": "fp32", "max_train_samples": 16}
    result = reproduce("density", model=str(tiny_bert), tasks=["upos"], data_dir=str(tiny_data_root), out=str(out),
                       overrides=overrides, echo=lambda *a: None)
    assert result["counts"] == {"done": 7, "skipped": 0, "failed": 0}
    rows = result["rows"]
    assert [r[4] for r in rows] == ["0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "0.7"]
    metrics = {}
    for path in (out / "runs").glob("*/metrics.json"):
        m = json.loads(path.read_text())
        metrics[f"{m['target_density']:g}"] = m
    assert len(metrics) == 7
    for r in rows:  # every cell is its run's metrics.json
        m = metrics[r[4]]
        assert r[0] == "upos" and r[3] == "neuron" and r[9] == 1
        assert r[5] == f"{m['density']:.4f}" and r[8] == f"{m['dev']['accuracy'] * 100:.2f}"
        assert r[10] == f"{m['mask_params']:.0f}"
    assert (out / "density.md").read_text() == result["markdown"]
    for name in ("density.json", "density.csv", "density.md", "figures/density-upos.png", "figures/density-upos.svg"):
        assert (out / name).is_file(), name
    assert len((out / "density.csv").read_text().splitlines()) == 8
    again = reproduce("density", model=str(tiny_bert), tasks=["upos"], data_dir=str(tiny_data_root), out=str(out),
                      overrides=overrides, echo=lambda *a: None)
    assert again["counts"] == {"done": 0, "skipped": 7, "failed": 0}


def test_the_html_report_shows_the_density_table_and_curve(tmp_path) -> None:
    from subprobe.cli import main
    from subprobe.experiments.store import Store
    from tests.synthetic_runs import add_run

    store = Store(tmp_path / "store")
    base = {"task": "upos", "model": "tiny", "probe": "subnetwork"}
    for target, acc in ((0.1, 0.7), (0.3, 0.8)):
        path = add_run(store, {**base, "target_density": target},
                       {"dev": {"accuracy": acc}, "mask_params": 512, "density": target + 0.001})
        metrics = json.loads((path / "metrics.json").read_text())
        metrics.update(target_density=target, density_before_projection=target + 0.02, projected_units=4)
        (path / "metrics.json").write_text(json.dumps(metrics))
    add_run(store, base, {"dev": {"accuracy": 0.9}, "mask_params": 512, "density": 0.5})  # lambda: not a point
    out = tmp_path / "report"
    assert main(["report", str(store.root), "--report-dir", str(out)]) == 0
    assert (out / "density.csv").read_text().splitlines()[1:] == [
        "upos,tiny,pretrained,neuron,0.1,0.1010,0.1200,accuracy,70.00,1,512",
        "upos,tiny,pretrained,neuron,0.3,0.3010,0.3200,accuracy,80.00,1,512",
    ]
    page = (out / "index.html").read_text()
    assert '<table id="density">' in page and 'src="figures/density-upos.png"' in page
    assert "![upos: accuracy vs density](figures/density-upos.png)" in (out / "report.md").read_text()
    assert (out / "figures" / "density-upos.svg").is_file()
