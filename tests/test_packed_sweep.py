"""Sweeps with packs (``--pack K``): how points are grouped into jobs, the progress line, every point of a pack in
the store's index as it ends, a bug in a packed step, the flag, and a local pool running packs."""

from __future__ import annotations

import pytest

from subprobe.cli import main
from subprobe.experiments.executors import LocalExecutor
from subprobe.experiments.point import PackJob, PointJob
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import GridProgress, pack_jobs, run_points
from subprobe.training import packed
from tests.test_executors import stable


@pytest.fixture()
def base(tiny_bert, tiny_ud):
    return {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 1,
            "batch_size": 8, "precision": "fp32", "eval_every": 2}


#: three subnetwork points (one pack), two MLP-1 ranks (one pack of cached features), one fine-tuning run (alone)
POINTS = [{"probe": "subnetwork", "lambda_max": lam} for lam in (1.0, 5.0, 25.0)] + [
    {"probe": "mlp", "rank": r} for r in ("1", "2")] + [{"probe": "finetune"}]


def job(number: int, values: dict) -> PointJob:
    return PointJob(number, 6, f"k{number}", values, f"/tmp/run{number}", "/tmp/store")


def test_points_that_pack_become_one_job_and_pack_one_keeps_every_point_alone(base):
    jobs = [job(i, {**base, **p}) for i, p in enumerate(POINTS, start=1)]
    work = pack_jobs(jobs, 4)
    assert [type(w).__name__ for w in work] == ["PackJob", "PackJob", "PointJob"]
    assert [[p.number for p in w.points] for w in work] == [[1, 2, 3], [4, 5], [6]]
    assert work[0].label == "[1,2,3/6] a pack of 3"
    assert pack_jobs(jobs, 1) == jobs
    assert [len(w.points) for w in pack_jobs(jobs, 2)] == [2, 1, 2, 1]  # 3 subnetworks: 2 + 1; 2 ranks: 2


def test_progress_line_says_how_many_points_share_a_process():
    progress = GridProgress(total=20, skipped=0, slots=2)
    packs = [PackJob(tuple(job(i, {}) for i in range(k, k + 4))) for k in (1, 5, 9)]
    for p in packs:
        progress.start(p)
    progress.done = 4
    progress.end(packs[0])
    # two packs of 4 run (the pool's two slots), one waits: 4 done, 8 running, 8 to go
    assert progress.line().startswith("grid: 4 done, 8 running (2 packs of 4), 0 failed, 8 to go (of 20); ETA ")
    mixed = GridProgress(total=6, skipped=0, slots=3)
    mixed.start(PackJob(tuple(job(i, {}) for i in (1, 2, 3))))
    mixed.start(PackJob(tuple(job(i, {}) for i in (4, 5))))
    mixed.start(job(6, {}))
    assert mixed.line() == "grid: 0 done, 6 running (2 packs: 3+2, 1 alone), 0 failed, 0 to go (of 6)"
    alone = GridProgress(total=3, skipped=0, slots=2)
    for i in (1, 2, 3):
        alone.start(job(i, {}))
    assert alone.line() == "grid: 0 done, 2 running, 0 failed, 1 to go (of 3)"  # no pack: as before


def test_a_packed_sweep_records_every_point_and_says_so(base, tmp_path):
    store = Store(tmp_path / "store")
    messages = []
    counts = run_points(POINTS[:5], store, base, echo=lambda *a, **k: messages.append(a[0]), pack=4)
    assert counts == {"done": 5, "skipped": 0, "failed": 0}
    assert sum("a pack of 3: running" in m for m in messages) == 1 and sum("a pack of 2" in m for m in messages) == 1
    assert messages[-1] == "grid: 5 done, 0 running, 0 failed, 0 to go (of 5)"
    index = store.load_index()
    assert len(index) == 5 and all(e["status"] == "done" and "seconds" in e for e in index.values())
    # the store's keys and run directories do not depend on the pack: the same points alone are all skipped
    assert run_points(POINTS[:5], store, base, echo=lambda *a, **k: None, pack=1) == {"done": 0, "skipped": 5,
                                                                                      "failed": 0}


def test_a_bug_in_a_packed_step_fails_every_point_of_the_pack_and_the_grid_goes_on(base, tmp_path, monkeypatch):
    def broken(self, runs, indices):
        raise RuntimeError("planted bug in the packed step")

    monkeypatch.setattr(packed.PackedStep, "__call__", broken)
    store = Store(tmp_path / "store")
    messages = []
    points = POINTS[:3] + [{"probe": "linear"}]
    counts = run_points(points, store, base, echo=lambda *a, **k: messages.append(a[0]), pack=3)
    assert counts == {"done": 1, "skipped": 0, "failed": 3}  # the linear probe runs alone: no packed step
    failed = [e for e in store.load_index().values() if e["config"]["probe"] == "subnetwork"]
    assert len(failed) == 3
    for entry in failed:
        assert entry["status"] == "failed" and entry["error"] == "RuntimeError: planted bug in the packed step"
        error = (store.resolve(entry["run_dir"]) / "error.txt").read_text()
        assert error.startswith("Traceback") and "planted bug" in error
    monkeypatch.undo()
    assert run_points(points, store, base, echo=lambda *a, **k: None, pack=3) == {"done": 3, "skipped": 1,
                                                                                  "failed": 0}


def test_pack_flag_is_checked_in_one_line(capsys, tmp_path):
    for command in (["sweep", "figure1"], ["reproduce", "figure1"]):
        assert main([*command, "--pack", "0", "--store", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("subprobe: error: --pack must be at least 1, got 0")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_pool_of_two_runs_packs_and_gives_the_serial_results(base, tmp_path):
    serial, pool = Store(tmp_path / "serial"), Store(tmp_path / "pool")
    assert run_points(POINTS[:5], serial, base, echo=lambda *a, **k: None)["done"] == 5
    messages = []
    counts = run_points(POINTS[:5], pool, base, echo=lambda *a, **k: messages.append(a[0]),
                        executor=LocalExecutor(2, threads=1), pack=4)
    assert counts == {"done": 5, "skipped": 0, "failed": 0}
    assert any("(2 packs: 3+2)" in m or "(1 pack of" in m for m in messages if m.startswith("grid:"))

    def by_point(store):
        return {(r["config"]["probe"], r["config"].get("rank"), r["config"].get("lambda_max")):
                stable({k: v for k, v in r.items() if k not in ("run_dir", "config")}) for r in store.results()}

    assert by_point(serial) == by_point(pool)


def test_points_that_cannot_pack_are_named_in_one_note(base, capsys):
    """A sweep says in one line which points train alone and why (here: fine-tuning, MLP-1 without cached features,
    and sub-batches) instead of leaving them out of packs silently."""
    points = POINTS + [{"probe": "mlp", "rank": "1", "cache_features": False},
                       {"probe": "subnetwork", "lambda_max": 2.0, "sub_batches": 2}]
    jobs = [job(i, {**base, **p}) for i, p in enumerate(points, start=1)]
    lines = []
    work = pack_jobs(jobs, 4, echo=lambda text, **kw: lines.append(text))
    assert [len(w.points) if isinstance(w, PackJob) else 1 for w in work] == [3, 2, 1, 1, 1]
    assert lines == ["subprobe: note: 3 points train alone, not packed: 1 with --probe finetune (it does not pack); 1 "
                     "with --probe mlp without --cache-features (features recomputed at every step); 1 with "
                     "--sub-batches 2 (a mask sample per sub-batch; the paper profile's default)"]
    quiet = []
    pack_jobs(jobs[:5], 4, echo=lambda text, **kw: quiet.append(text))
    assert quiet == []  # every point packs: nothing to say
    assert packed.alone_note([]) is None
