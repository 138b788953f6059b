"""``sweep --executor ray``: every point a Ray task on a real local Ray instance (``num_cpus=2``, started here):
the same keys and the same metrics.json values as the serial sweep, one torch thread per point in both."""

from __future__ import annotations

import os

import pytest

from subprobe.cli import main
from subprobe.experiments.executors import RayExecutor, make_executor, ray_gpu_request
from subprobe.experiments.store import Store
from tests.test_executors import GRID, results_by_point

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'subprobe[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module; the executor joins it instead of starting its own."""
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway local instance: no token file in $HOME
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024 * 1024)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.mark.slow
def test_ray_tasks_give_the_serial_results(local_ray, tiny_bert, tiny_ud, tmp_path, capsys):
    grid = tmp_path / "small.yaml"
    grid.write_text(GRID, encoding="utf-8")
    common = ["sweep", str(grid), "--model", str(tiny_bert), "--train", str(tiny_ud["train"]),
              "--dev", str(tiny_ud["dev"]), "--threads", "1"]
    assert main([*common, "--store", str(tmp_path / "serial")]) == 0
    capsys.readouterr()
    assert main([*common, "--store", str(tmp_path / "ray"), "--executor", "ray", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    serial, on_ray = Store(tmp_path / "serial"), Store(tmp_path / "ray")
    assert set(on_ray.load_index()) == set(serial.load_index()) and len(serial.load_index()) == 2
    assert results_by_point(on_ray) == results_by_point(serial)
    assert "grid: 2 done, 0 running, 0 failed, 0 to go (of 2)" in printed
    assert all(e["pid"] != os.getpid() for e in on_ray.load_index().values())  # ran in Ray workers
    assert ray.is_initialized()  # the executor joined the test's instance and left it running
    # a second call finds every point finished: nothing is submitted
    assert main([*common, "--store", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert "sweep small: 0 done, 2 skipped, 0 failed" in capsys.readouterr().out


def test_ray_requests_follow_threads_and_device():
    executor = make_executor("ray", threads=2, device="cuda:0", ray_address="ray://head:10001")
    assert isinstance(executor, RayExecutor)
    assert (executor.cpus, executor.device, executor.threads, executor.address) == (2, "cuda:0", 2, "ray://head:10001")
    assert make_executor("ray").cpus == 1


@pytest.mark.parametrize("device, cluster_gpus, expected", [
    ("cuda:1", 4, (1.0, "cuda")),  # the task's one visible GPU is cuda, whichever the cluster granted
    ("cuda", 4, (1.0, "cuda")),
    (None, 2, (1.0, None)),  # auto on a GPU cluster: a GPU per task, and the task's auto picks it
    ("auto", 0, (0.0, "auto")),
    ("cpu", 8, (0.0, "cpu")),
])
def test_ray_gpu_requests_follow_the_resolved_device(device, cluster_gpus, expected):
    assert ray_gpu_request(device, cluster_gpus) == expected
