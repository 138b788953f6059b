"""The sweep store under failure: a point that raises a bug (error.txt, the grid goes on), the ``running`` state,
an interrupted grid, and atomic writes of index.json / metrics.json when the process dies mid-write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import subprobe.api
from subprobe.config import ProbeConfig
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import run_points
from subprobe.runs import run_status, write_json
from subprobe.training.checkpoint import load_checkpoint
from tests.conftest import REPO

POINTS = [{"probe": "linear", "seed": s} for s in range(3)]
#: these tests plant faults in ``subprobe.api.probe``, which runs a point alone: ``pack=1`` keeps every point there
#: (tests/test_packed_sweep.py plants them in packs)
ALONE = 1


@pytest.fixture()
def base(tiny_bert, tiny_ud):
    return {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32"}


def statuses(store: Store) -> dict[int, str]:
    """Status by seed of every point in the index."""
    return {e["config"]["seed"]: e["status"] for e in store.load_index().values()}


def test_a_point_that_raises_a_bug_is_kept_with_its_traceback_and_the_grid_goes_on(base, tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    real_probe = subprobe.api.probe
    seen = []

    def probe(config: ProbeConfig, **kwargs):
        seen.append((config.seed, statuses(store)))  # what the index says while this point runs
        if config.seed == 1:
            raise RuntimeError("planted bug in point 2")
        return real_probe(config, **kwargs)

    monkeypatch.setattr(subprobe.api, "probe", probe)
    messages = []
    counts = run_points(POINTS, store, base, echo=lambda *a, **k: messages.append(a[0]), pack=ALONE)
    assert counts == {"done": 2, "skipped": 0, "failed": 1}
    # while a point runs, the index says so; points before it are done
    assert seen == [(0, {0: "running"}), (1, {0: "done", 1: "running"}), (2, {0: "done", 1: "failed", 2: "running"})]
    index = store.load_index()
    failed = next(e for e in index.values() if e["config"]["seed"] == 1)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: planted bug in point 2"
    error = (store.resolve(failed["run_dir"]) / "error.txt").read_text()
    assert error.startswith("Traceback") and "in probe" in error
    assert error.rstrip().endswith("RuntimeError: planted bug in point 2")
    assert any("failed with RuntimeError: planted bug in point 2" in m and "error.txt" in m for m in messages)
    assert len(store.results()) == 2
    # a restart skips the finished points and retries the failed one
    monkeypatch.setattr(subprobe.api, "probe", real_probe)
    assert run_points(POINTS, store, base, echo=lambda *a, **k: None, pack=ALONE) == {"done": 1, "skipped": 2,
                                                                                      "failed": 0}
    assert statuses(store) == {0: "done", 1: "done", 2: "done"}
    assert not (store.resolve(failed["run_dir"]) / "error.txt").exists()  # the old traceback is not left behind


def test_an_interrupted_grid_leaves_the_point_running_and_a_restart_finishes_it(base, tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    real_probe = subprobe.api.probe

    def probe(config: ProbeConfig, **kwargs):
        if config.seed == 1:
            raise KeyboardInterrupt
        return real_probe(config, **kwargs)

    monkeypatch.setattr(subprobe.api, "probe", probe)
    with pytest.raises(KeyboardInterrupt):
        run_points(POINTS, store, base, echo=lambda *a, **k: None, pack=ALONE)
    assert statuses(store) == {0: "done", 1: "running"}  # the third point never started
    monkeypatch.setattr(subprobe.api, "probe", real_probe)
    assert run_points(POINTS, store, base, echo=lambda *a, **k: None, pack=ALONE) == {"done": 2, "skipped": 1,
                                                                                      "failed": 0}
    assert statuses(store) == {0: "done", 1: "done", 2: "done"}


def crash_on(name: str, real_replace=os.replace):
    """An ``os.replace`` that fails (as a crash would) when it is about to put ``name`` in place."""

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            raise RuntimeError(f"crash while writing {name}")
        return real_replace(src, dst, *args, **kwargs)

    return replace


def test_a_crash_while_writing_json_keeps_the_old_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    store.record("a", {"status": "done", "run_dir": "runs/a"})
    before = (tmp_path / "store" / "index.json").read_text()
    monkeypatch.setattr(os, "replace", crash_on("index.json"))
    with pytest.raises(RuntimeError, match="crash while writing index.json"):
        store.record("b", {"status": "running", "run_dir": "runs/b"})
    assert (tmp_path / "store" / "index.json").read_text() == before
    assert list(store.load_index()) == ["a"]
    assert [p.name for p in (tmp_path / "store").iterdir() if p.name.endswith(".tmp")] == []  # none left behind

    def fsync(fd):
        raise OSError(5, "Input/output error")  # the disk fails after the new text went to the temporary file

    monkeypatch.undo()
    target = tmp_path / "metrics.json"
    write_json(target, {"dev": {"accuracy": 0.5}})
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(Exception, match="metrics.json: cannot write file"):
        write_json(target, {"dev": {"accuracy": 0.9}})
    assert json.loads(target.read_text()) == {"dev": {"accuracy": 0.5}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "store"]


def test_a_kill_in_the_middle_of_writing_the_index_leaves_the_old_index(tmp_path):
    """A real process death (``os._exit``: no cleanup runs) after the new index went to its temporary file."""
    root = tmp_path / "store"
    script = textwrap.dedent(f"""
        import os
        from subprobe.experiments.store import Store
        store = Store({str(root)!r})
        store.record("a", {{"status": "done", "run_dir": "runs/a"}})
        os.replace = lambda src, dst: os._exit(9)
        store.record("b", {{"status": "running", "run_dir": "runs/b"}})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", script], env=env, timeout=60).returncode == 9
    store = Store(root)
    assert list(store.load_index()) == ["a"]  # the old index, whole
    leftovers = [p for p in root.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".index.json.")  # the new one never replaced it
    assert list(json.loads(leftovers[0].read_text())) == ["a", "b"]
    store.record("c", {"status": "done", "run_dir": "runs/c"})  # the store goes on
    assert list(store.load_index()) == ["a", "c"]


def test_a_crash_writing_metrics_json_leaves_a_resumable_run(base, tmp_path, monkeypatch):
    """No metrics.json means the run is not finished: the checkpoint stays and a restart completes it."""
    values = {**base, "probe": "subnetwork", "epochs": 2, "eval_every": 4, "progress": False}  # 6 steps
    reference = subprobe.api.probe(ProbeConfig(**values, out=str(tmp_path / "reference")), echo=lambda *a, **k: None)
    store = Store(tmp_path / "store")
    monkeypatch.setattr(os, "replace", crash_on("metrics.json"))
    assert run_points([{"probe": "subnetwork"}], store, values, echo=lambda *a, **k: None)["failed"] == 1
    (entry,) = store.load_index().values()
    assert entry["status"] == "failed" and "crash while writing metrics.json" in entry["error"]
    run_dir = store.resolve(entry["run_dir"])
    assert run_status(run_dir) == "checkpoint" and not (run_dir / "metrics.json").exists()
    # README: a checkpoint is also written when training ends (step 6; the dev checks were at 4 and 6)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["progress"]["step"] == 6 and state["progress"]["finished"]
    # README: the mask logits (lr 0.2) and the head train with Adam (0.9, 0.999), eps 1e-8
    groups = {g["name"]: g for g in state["optimizer"]["param_groups"]}
    assert groups["masks"]["lr"] == 0.2 and groups["head"]["lr"] == 1e-3  # quick profile's head lr
    assert all(tuple(g["betas"]) == (0.9, 0.999) and g["eps"] == 1e-8 for g in groups.values())
    monkeypatch.undo()
    assert run_points([{"probe": "subnetwork"}], store, values, echo=lambda *a, **k: None)["done"] == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "error.txt").exists()
    for key in ("dev", "dev_soft", "density", "mask_params", "bits"):
        assert metrics[key] == reference.metrics[key], key
    assert metrics["train"]["steps"] == reference.metrics["train"]["steps"]
