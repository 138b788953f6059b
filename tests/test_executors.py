"""Sweeps on several processes: the local process pool (``--executor local --jobs N``), the store's file lock
under two writers, the grid progress line, and probe flags given to sweep for every point (overrides)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import yaml

from subprobe.cli import main
from subprobe.errors import ConfigError
from subprobe.experiments.executors import LocalExecutor, SerialExecutor, make_executor, slurm_minutes
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import GridProgress, format_seconds, run_points
from tests.conftest import REPO

#: What a run computes, not how long it took: the values that must match whoever ran the point.
TIMINGS = ("wall_seconds",)


def stable(metrics: dict) -> dict:
    """metrics.json without its timings."""
    out = {k: v for k, v in metrics.items() if k not in TIMINGS}
    out["train"] = {k: v for k, v in metrics["train"].items() if k not in ("seconds", "words_per_second")}
    return out


def results_by_point(store: Store) -> dict[tuple, dict]:
    """Stable metrics of every finished run, by (probe, rank)."""
    return {(r["config"]["probe"], r["config"].get("rank")): stable({k: v for k, v in r.items() if k not in
            ("run_dir", "config")}) for r in store.results()}


@pytest.fixture()
def base(tiny_bert, tiny_ud):
    return {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32", "eval_every": 2}


POINTS = [{"probe": "linear"}, {"probe": "mlp", "rank": "2"}]


def test_progress_line_counts_and_eta():
    progress = GridProgress(total=10, skipped=3, slots=2)
    progress.started, progress.done, progress.failed = 4, 1, 1
    progress.began -= 20.0  # two points finished in 20 s: 10 s a point, 5 left (2 running, 3 to go)
    assert progress.line() == "grid: 4 done, 2 running, 1 failed, 3 to go (of 10); ETA 50s"
    fresh = GridProgress(total=2, skipped=0, slots=2)
    fresh.started = 2
    assert fresh.line() == "grid: 0 done, 2 running, 0 failed, 0 to go (of 2)"  # no pace yet: no ETA
    assert [format_seconds(s) for s in (45, 185, 7620)] == ["45s", "3m05s", "2h07m"]


def test_executor_choice_and_threads():
    assert isinstance(make_executor("local"), SerialExecutor)
    assert isinstance(make_executor("local", jobs=1, threads=3), SerialExecutor)
    pool = make_executor("local", jobs=2)
    assert isinstance(pool, LocalExecutor) and pool.slots == 2
    assert pool.threads == max(1, LocalExecutor(1).threads // 2)  # the CPUs divided among the workers
    assert make_executor("local", jobs=2, threads=3).threads == 3
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        make_executor("local", jobs=0)
    with pytest.raises(ConfigError, match="--ray-address only applies to --executor ray"):
        make_executor("local", ray_address="auto")
    with pytest.raises(ConfigError, match="--slurm-partition only apply to --executor slurm"):
        make_executor("ray", slurm={"partition": "gpu", "time": None})
    assert [slurm_minutes(t) for t in ("90", "1:30:00", "0:10:01", "2-00:00:00", "1:05")] == [90, 90, 11, 2880, 65]
    with pytest.raises(ConfigError, match="--slurm-time 'soon'"):
        slurm_minutes("soon")


@pytest.mark.slow
def test_a_pool_of_two_gives_the_serial_results(base, tmp_path):
    serial, pooled = Store(tmp_path / "serial"), Store(tmp_path / "pooled")
    assert run_points(POINTS, serial, base, echo=lambda *a, **k: None) == {"done": 2, "skipped": 0, "failed": 0}
    messages = []
    counts = run_points(POINTS, pooled, base, echo=lambda *a, **k: messages.append(a[0]),
                        executor=make_executor("local", jobs=2, threads=1))
    assert counts == {"done": 2, "skipped": 0, "failed": 0}
    assert results_by_point(pooled) == results_by_point(serial)  # the same numbers, point by point
    assert set(pooled.load_index()) == set(serial.load_index())  # the same keys
    lines = [m for m in messages if m.startswith("grid:")]
    assert lines[0].startswith("grid: 1 done, 1 running, 0 failed, 0 to go (of 2); ETA ")
    assert lines[1] == "grid: 2 done, 0 running, 0 failed, 0 to go (of 2)"  # nothing left: no ETA
    entries = pooled.load_index().values()
    assert {e["status"] for e in entries} == {"done"} and len({e["pid"] for e in entries}) >= 1
    assert all(e["pid"] != os.getpid() for e in entries)  # run in worker processes


WRITER = """
import sys
from subprobe.experiments.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.record(f"{sys.argv[2]}-{i}", {"status": "done", "n": i})
"""


def test_two_writers_on_one_index_lose_nothing(tmp_path):
    """Two sweeps record into one store at the same time: every entry of both is in index.json."""
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "store"), name, str(n)], cwd=REPO)
             for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    index = Store(tmp_path / "store").load_index()
    assert sorted(index) == sorted(f"{w}-{i}" for w in "ab" for i in range(n))
    assert index["b-59"]["n"] == 59


GRID = textwrap.dedent("""\
    name: small
    axes:
      probe:
        - {probe: linear}
        - {probe: mlp, rank: "2"}
    profiles:
      quick: {epochs: 2, batch_size: 8, precision: fp32, eval_every: 2}
""")


def test_sweep_flags_for_every_point_enter_the_key(base, tiny_ud, tmp_path, capsys):
    grid = tmp_path / "small.yaml"
    grid.write_text(GRID, encoding="utf-8")
    common = ["sweep", str(grid), "--model", base["model"], "--train", str(tiny_ud["train"]),
              "--dev", str(tiny_ud["dev"])]
    assert main([*common, "--store", str(tmp_path / "full")]) == 0
    assert main([*common, "--store", str(tmp_path / "smoke"), "--max-train-samples", "5", "--epochs", "1"]) == 0
    full, smoke = Store(tmp_path / "full"), Store(tmp_path / "smoke")
    assert len(smoke.load_index()) == 2 and not set(smoke.load_index()) & set(full.load_index())  # other keys
    for result in smoke.results():
        saved = yaml.safe_load((tmp_path / "smoke" / "runs" / result["run_dir"].split("/runs/")[1] /
                                "config.yaml").read_text())
        assert (saved["max_train_samples"], saved["epochs"], saved["batch_size"]) == (5, 1, 8)
        assert result["sentences"]["train"] == 5 and result["train"]["steps"] == 1  # ceil(5 / 8) x 1 epoch
        assert result["config"]["max_train_samples"] == 5
    for result in full.results():
        assert result["sentences"]["train"] == 24 and result["train"]["steps"] == 6  # ceil(24 / 8) x 2 epochs
    capsys.readouterr()
    assert main([*common, "--store", str(tmp_path / "smoke"), "--probe", "mlp"]) == 2
    assert capsys.readouterr().err.strip() == (
        "subprobe: error: --probe: an axis of grid small; a flag for every point cannot set it (edit the grid, or "
        "select the axis's values where the command offers it, e.g. --tasks)")
    assert main([*common, "--store", str(tmp_path / "x"), "--seeds", "2", "--seed", "3"]) == 2
    assert "--seed: an axis of grid small" in capsys.readouterr().err
    json.loads((tmp_path / "smoke" / "index.json").read_text())  # still valid


@pytest.mark.slow
def test_a_killed_pool_worker_leaves_its_point_resumable_and_the_pool_finishes_it(base, tmp_path):
    """SIGKILL the worker of a running point: a new pool takes the unfinished points, which continue."""
    store = Store(tmp_path / "store")
    long = {**base, "epochs": 30, "checkpoint_every": 1, "eval_every": 30}  # 90 steps: killed mid-training
    points = [{"probe": "subnetwork", "seed": 0}, {"probe": "linear", "seed": 0}]
    result, messages = {}, []
    worker = threading.Thread(target=lambda: result.update(run_points(
        points, store, long, echo=lambda *a, **k: messages.append(a[0]),
        executor=make_executor("local", jobs=2, threads=1))))
    worker.start()
    deadline, killed = time.time() + 240, None
    while killed is None and time.time() < deadline:
        for entry in store.load_index().values():
            run = store.resolve(entry.get("run_dir", ""))
            if entry["config"]["probe"] == "subnetwork" and (run / "checkpoint.pt").is_file():
                killed = entry["pid"]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    worker.join(timeout=600)
    assert killed is not None and not worker.is_alive()
    assert result == {"done": 2, "skipped": 0, "failed": 0}, messages
    index = store.load_index()
    assert {e["status"] for e in index.values()} == {"done"}
    sub = next(e for e in index.values() if e["config"]["probe"] == "subnetwork")
    assert sub["pid"] != killed  # finished by a worker of the new pool
    env = json.loads((store.resolve(sub["run_dir"]) / "env.json").read_text())
    assert len(env["resumes"]) == 1 and env["resumes"][0]["from_step"] >= 1  # continued from its checkpoint
    metrics = json.loads((store.resolve(sub["run_dir"]) / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 90


def test_reproduce_refuses_an_override_of_an_axis_before_running_anything(tmp_path, capsys):
    assert main(["reproduce", "figure1", "--granularity", "neuron", "--store", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.startswith("subprobe: error: --granularity: an axis of grid figure1;")
    assert main(["reproduce", "table1", "--task", "upos", "--store", str(tmp_path / "store")]) == 2
    assert "--task: an axis of grid table1" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
