"""``sweep --executor slurm``: the points as one submitit job array. Here the array runs on submitit's local
executor (real subprocesses, no SLURM needed) through the same code path: the same keys and metrics.json
values as the serial sweep, submitit's logs in the store."""

from __future__ import annotations

import pytest

from subprobe.cli import build_parser
from subprobe.experiments.executors import SlurmExecutor
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import run_points
from tests.test_executors import POINTS, results_by_point

pytest.importorskip("submitit", reason="the [slurm] extra is not installed (pip install 'subprobe[slurm]')")


def slurm_executor(argv: list[str]):
    """The executor ``subprobe sweep GRID ARGV`` would use."""
    from subprobe.cli import _executor

    return _executor(build_parser().parse_args(["sweep", "grid.yaml", *argv]))


def test_slurm_flags_become_submitit_parameters(tmp_path):
    executor = slurm_executor(["--executor", "slurm", "--store", str(tmp_path), "--slurm-partition", "gpu",
                               "--slurm-time", "1:30:00", "--slurm-gpus-per-task", "1", "--slurm-cpus-per-task", "4",
                               "--slurm-array-parallelism", "8"])
    assert isinstance(executor, SlurmExecutor)
    assert executor.parameters == {"timeout_min": 90, "cpus_per_task": 4, "slurm_gpus_per_task": 1,
                                   "slurm_partition": "gpu", "slurm_array_parallelism": 8}
    assert executor.threads == 4 and executor.folder == tmp_path / "slurm"  # logs land in the store
    plain = slurm_executor(["--executor", "slurm", "--jobs", "3", "--threads", "2"])
    assert plain.parameters == {"cpus_per_task": 2, "slurm_array_parallelism": 3}


@pytest.mark.slow
def test_a_job_array_on_submitits_local_executor_gives_the_serial_results(tiny_bert, tiny_ud, tmp_path):
    base = {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32", "eval_every": 2}
    serial, arrayed = Store(tmp_path / "serial"), Store(tmp_path / "slurm")
    assert run_points(POINTS, serial, base, echo=lambda *a, **k: None) == {"done": 2, "skipped": 0, "failed": 0}
    executor = slurm_executor(["--executor", "slurm", "--store", str(arrayed.root), "--slurm-cpus-per-task", "1",
                               "--slurm-time", "10"])
    executor.cluster, executor.poll_seconds = "local", 0.5  # submitit's local executor instead of sbatch
    messages = []
    counts = run_points(POINTS, arrayed, base, echo=lambda *a, **k: messages.append(a[0]), executor=executor)
    assert counts == {"done": 2, "skipped": 0, "failed": 0}, messages
    assert set(arrayed.load_index()) == set(serial.load_index())
    assert results_by_point(arrayed) == results_by_point(serial)
    logs = sorted(p.name for p in (arrayed.root / "slurm").rglob("*.out"))
    assert len(logs) == 2 and all(name.endswith("_log.out") for name in logs)  # one log per point, in the store
    assert "grid: 2 done, 0 running, 0 failed, 0 to go (of 2)" in messages


@pytest.mark.slow
def test_a_pack_is_one_job_of_the_array_and_gives_the_serial_packs_results(tiny_bert, tiny_ud, tmp_path):
    """--pack on SLURM: two subnetwork points that pack are one array job (one log), and their metrics are those of
    the same pack run in this process."""
    base = {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32", "eval_every": 2, "probe": "subnetwork"}
    points = [{"lambda_max": 1.0}, {"lambda_max": 5.0}]
    serial, arrayed = Store(tmp_path / "serial"), Store(tmp_path / "slurm")
    assert run_points(points, serial, base, echo=lambda *a, **k: None, pack=2)["done"] == 2
    executor = slurm_executor(["--executor", "slurm", "--out", str(arrayed.root), "--slurm-cpus-per-task", "1",
                               "--slurm-time", "10"])
    executor.cluster, executor.poll_seconds = "local", 0.5
    messages = []
    counts = run_points(points, arrayed, base, echo=lambda *a, **k: messages.append(a[0]), executor=executor, pack=2)
    assert counts == {"done": 2, "skipped": 0, "failed": 0}, messages
    assert set(arrayed.load_index()) == set(serial.load_index())  # every point under its own key, as without packs
    logs = sorted(p.name for p in (arrayed.root / "slurm").rglob("*.out"))
    assert len(logs) == 1  # one job for the pack

    def dev(store):
        return {r["config"]["lambda_max"]: r["dev"] for r in store.results()}

    for lam, scores in dev(serial).items():
        assert dev(arrayed)[lam] == pytest.approx(scores, abs=1e-6)
