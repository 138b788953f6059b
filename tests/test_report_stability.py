"""The report's stability table: mean pairwise IoU over seeds of one point, by hand."""

from __future__ import annotations

import pytest
import torch

from subprobe.cli import main
from subprobe.experiments.store import Store
from subprobe.masking.subnetwork import MaskEntry, Subnetwork
from subprobe.report.loading import load_results
from subprobe.report.stability import stability_rows
from tests.synthetic_runs import add_run, parse

K, D = 60.0, -60.0


def _sub(keep: list[int]) -> Subnetwork:
    la = torch.tensor([[K if k else D for k in keep[:2]], [K if k else D for k in keep[2:]]])
    return Subnetwork((MaskEntry("m", "q", 0, (2, 2), (1, 1), la),), "strided", "weight", "tiny")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("stability"))
    base = {"task": "upos", "model": "tiny", "probe": "subnetwork", "granularity": "weight"}
    metrics = {"dev": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}
    # three seeds of lambda_max 1: seeds 0 and 2 keep the same two weights, seed 1 shares one of them
    for seed, keep in ((0, [1, 1, 0, 0]), (1, [1, 0, 1, 0]), (2, [1, 1, 0, 0])):
        add_run(store, {**base, "seed": seed}, metrics, _sub(keep))
    add_run(store, {**base, "lambda_max": 5.0}, metrics, _sub([1, 0, 0, 0]))  # one seed: no row
    add_run(store, {**base, "probe": "mlp", "seed": 1}, {**metrics, "bits": {"lower": 1, "upper": 32}})  # no masks
    return store


def test_mean_pairwise_iou_by_hand(store) -> None:
    rows = stability_rows(load_results(store.root))
    assert len(rows) == 1
    # IoU: (0,1) 1/3, (0,2) 1, (1,2) 1/3; agreement: 1/2, 1, 1/2
    assert rows[0][1:] == ["upos", "pretrained", "weight", 1.0, 3, "0.5556", "0.3333", "1.0000", "0.6667", "0.5000"]


def test_report_shows_the_stability_table(store, tmp_path) -> None:
    assert main(["report", str(store.root), "--report-dir", str(tmp_path)]) == 0
    page = parse((tmp_path / "index.html").read_text(encoding="utf-8"))
    assert page.rows["stability"] == 1
    assert "## Stability across seeds" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "stability.csv").read_text().splitlines()[1].endswith("0.5556,0.3333,1.0000,0.6667,0.5000")


def test_a_seed_run_twice_counts_once(store, tmp_path) -> None:
    import shutil
    from pathlib import Path

    results = load_results(store.root)
    seed0 = next(r for r in results if r["probe"] == "subnetwork" and r["config"]["seed"] == 0
                 and r["config"].get("lambda_max") == 1.0)
    other = next(r for r in results if r["config"].get("lambda_max") == 5.0)  # its masks: [1, 0, 0, 0]
    rerun = tmp_path / "zz-rerun-of-seed-0"  # sorts after the store's run directories: the first run is kept
    shutil.copytree(other["run_dir"], rerun)
    assert str(seed0["run_dir"]) < str(rerun) and Path(seed0["run_dir"]).exists()
    rows = stability_rows([*results, {**seed0, "run_dir": str(rerun)}])
    assert rows[0][5:] == [3, "0.5556", "0.3333", "1.0000", "0.6667", "0.5000"]  # as without the rerun


def test_a_target_density_point_shows_its_target_not_lambda(store) -> None:
    results = [{**r, "config": {**r["config"], "target_density": 0.1}} for r in load_results(store.root)]
    rows = stability_rows(results)
    assert [row[4] for row in rows] == ["p=0.1"]


def test_seed_replicas_of_sweep_seeds_group_into_one_point(tmp_path) -> None:
    """``--seeds N`` varies the seed and the reset seed (every replica field, ``replica=True`` in the config):
    the replicas of one point are one row of the stability and the selectivity tables, not N rows."""
    from subprobe.experiments.sweep import seeds_axis
    from subprobe.report.selectivity import selectivity_rows

    store = Store(tmp_path / "store")
    base = {"task": "upos", "model": "tiny", "probe": "subnetwork", "granularity": "weight", "setting": "reset-all"}
    keeps = ([1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0])
    for point, keep, acc in zip(seeds_axis([base], 3), keeps, (0.6, 0.7, 0.8)):
        assert point["reset_seed"] == point["seed"]
        add_run(store, point, {"dev": {"accuracy": acc}, "test": {"accuracy": acc}}, _sub(keep))
    control = {**base, "control": True}
    for point in seeds_axis([control], 2):
        add_run(store, point, {"dev": {"accuracy": 0.2}, "test": {"accuracy": 0.2}}, _sub([1, 0, 0, 0]))
    results = load_results(store.root)
    rows = stability_rows([r for r in results if not r["config"].get("control")])
    assert len(rows) == 1 and rows[0][5:8] == [3, "0.5556", "0.3333"]
    (row,) = selectivity_rows(results)
    # mean ± sd [t interval]: 70 ± 10 [70 -+ 4.3027 x 10 / sqrt(3)], 20 ± 0 (two equal replicas)
    assert row[6:] == ["70.00 ± 10.00 [45.16, 94.84]", "20.00 ± 0.00 [20.00, 20.00]", "50.00", 3, 2]
