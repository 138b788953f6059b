"""Faults during a run, for real (issue 28, item 2): a full disk, damaged files, SIGKILL and SIGTERM at random
steps of a run, of a two-worker local sweep and of a Ray sweep, and two sweeps on one store at once.

After each: a clear line, no half-written file read as whole, and a re-run that finishes with the same metrics
(and masks and head) as an undisturbed run. Real child processes (``python -m subprobe ...``) are disturbed with
real signals and a real file-size limit (``RLIMIT_FSIZE``: a write past it fails with EFBIG, as one on a full
disk fails with ENOSPC). Signals arrive at a chosen training step through ``tests/fault_hook/sitecustomize.py``,
which every Python process of a test loads (pool workers and Ray workers too): ``SUBPROBE_FAULT=SIGNAL@STEP@WHO``
sends SIGNAL to the process itself or to its parent just before its STEP-th step. The steps are drawn from a
seeded generator, so every CI run disturbs the same steps.

Every child runs one torch thread, as this process does (conftest), so the arithmetic is the same everywhere and
"the same metrics" means equal to the last bit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from subprobe.cli import main
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import run_points
from subprobe.training import checkpoint as ckpt
from tests.conftest import REPO
from tests.test_resume import argv_for, assert_same_run, comparable_metrics

HOOK = Path(__file__).resolve().parent / "fault_hook"
#: 24 training sentences / batch 4 = 6 steps an epoch, 3 epochs: 18 steps, a dev check and checkpoint every 3
STEPS = 18
DRAW = random.Random(28)  # the random steps, the same in every run of the suite


def child_env(fault: str | None = None, once: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBPROBE_FAULT")}
    env.update({"PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", "RAY_AUTH_MODE": "disabled"})
    if fault:
        env["SUBPROBE_FAULT"] = fault
    if once:
        env["SUBPROBE_FAULT_ONCE"] = str(once)
    return env


def subprobe(args, *, fault: str | None = None, once: Path | None = None, fsize: int | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m subprobe ARGS`` in a new session (its process group is killed afterwards, whatever it
    started), optionally with a fault and a file-size limit."""

    def limits() -> None:
        if fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    process = subprocess.Popen([sys.executable, "-m", "subprobe", *map(str, args)], env=child_env(fault, once),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=limits)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        kill_group(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a child's session (pool workers, Ray's processes)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def error_line(err: str) -> str:
    """The last line of stderr, checked to be the one-line user error (no traceback)."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("subprobe: error: "), err
    return line


def no_temporaries(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def reference(tiny_bert, tiny_ud, tmp_path_factory) -> Path:
    """The undisturbed run (in this process, one torch thread): 18 steps, dev checks and checkpoints every 3."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(argv_for(tiny_bert, tiny_ud, out)) == 0
    return out


# -- one run ---------------------------------------------------------------------------------------------------


def test_sigkill_then_sigterm_at_random_steps_then_resume_gives_the_undisturbed_run(tiny_bert, tiny_ud, tmp_path,
                                                                                   reference, capsys):
    out = tmp_path / "run"
    kill_at = DRAW.randint(4, STEPS - 1)  # after the first checkpoint (step 3)
    killed = subprobe(argv_for(tiny_bert, tiny_ud, out), fault=f"SIGKILL@{kill_at}@self")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "metrics.json").exists()
    kept = ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"]  # a whole checkpoint, never a cut one
    assert kept == (kill_at - 1) // 3 * 3, (kill_at, kept)
    # SIGTERM a few steps into the resumed run: a clean stop that keeps the last checkpoint and says how to go on
    term_at = DRAW.randint(1, STEPS - kept - 1)
    stopped = subprobe(["probe", "--resume", out, "--no-progress"], fault=f"SIGTERM@{term_at}@self")
    assert stopped.returncode == 143, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert lines[-2:] == [f"interrupted; continue with: subprobe probe --resume {out}", "subprobe: stopped by SIGTERM"]
    assert "Traceback" not in stopped.stderr
    now = ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"]
    assert now == (kept + term_at - 1) // 3 * 3 and not (out / "metrics.json").exists(), (kept, term_at, now)
    assert no_temporaries(out) == []
    capsys.readouterr()
    assert main(["probe", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference, out)
    env = json.loads((out / "env.json").read_text())
    assert [r["from_step"] for r in env["resumes"]] == [kept, now]


def test_a_full_disk_while_checkpointing_is_one_line_and_the_resumed_run_is_whole(tiny_bert, tiny_ud, tmp_path,
                                                                                 reference, capsys):
    """Files of 16 KiB at most: config, vocabularies and log are written, the 39 KB checkpoint is not."""
    out = tmp_path / "run"
    full = subprobe(argv_for(tiny_bert, tiny_ud, out), fsize=16 * 1024)
    assert full.returncode == 2
    assert error_line(full.stderr) == (
        f"subprobe: error: {out / 'checkpoint.pt'}: cannot write file: File too large (nothing was written there; "
        f"free disk space or fix permissions, then continue with `subprobe probe --resume {out}`)")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "env.json", "log.jsonl", "vocab.json"]
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [3]  # whole lines
    capsys.readouterr()
    assert main(["probe", "--resume", str(out), "--no-progress"]) == 0  # as the line says, with space again
    assert "no checkpoint was written yet; training again from the beginning" in capsys.readouterr().err
    assert_same_run(reference, out)


@pytest.mark.slow  # several child processes (pools, Ray): CI runs it (the whole suite)
def test_a_full_disk_in_report_export_and_sweep(reference, tiny_bert, tiny_ud, tmp_path, capsys):
    """Each command under an 8 KiB file-size limit: one line, no half-written file, and the re-run is whole."""
    # report: the figures (PNG, SVG) are over the limit
    report = subprobe(["report", reference.parent, "--report-dir", tmp_path / "report"], fsize=8 * 1024)
    assert report.returncode == 2 and "cannot write file: File too large" in error_line(report.stderr)
    assert no_temporaries(tmp_path / "report") == []
    assert main(["report", str(reference.parent), "--report-dir", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").read_text().startswith("<!DOCTYPE html>")
    # export: model.safetensors is over the limit; --out is left as it was (here: absent)
    export = subprobe(["export", reference, "--model-dir", tmp_path / "export"], fsize=8 * 1024)
    assert error_line(export.stderr) == (
        f"subprobe: error: {tmp_path / 'export'}: cannot write file: File too large (nothing was written there; "
        "free disk space or fix permissions, then run the command again)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert main(["export", str(reference), "--model-dir", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "model.safetensors").is_file()
    # sweep: the point fails with the line (in the index too), the store stays readable, the re-run finishes it
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: one\naxes:\n  probe: [subnetwork]\nprofiles:\n  quick: {epochs: 3, batch_size: 4, "
                    "eval_every: 3, patience: 0, precision: fp32}\n")
    sweep = ["sweep", grid, "--store", tmp_path / "store", "--model", tiny_bert, "--train", tiny_ud["train"],
             "--dev", tiny_ud["dev"], "--test", tiny_ud["test"]]
    failed = subprobe(sweep, fsize=16 * 1024)
    assert failed.returncode == 1 and "checkpoint.pt: cannot write file: File too large" in failed.stderr
    (entry,) = Store(tmp_path / "store").load_index().values()
    assert entry["status"] == "failed" and "File too large" in entry["error"]
    capsys.readouterr()
    assert main([str(a) for a in sweep]) == 0
    (entry,) = Store(tmp_path / "store").load_index().values()
    run = Store(tmp_path / "store").resolve(entry["run_dir"])
    assert comparable_metrics(run) == comparable_metrics(reference)


# -- damaged files --------------------------------------------------------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def copy_run(reference: Path, where: Path) -> Path:
    shutil.copytree(reference, where)
    return where


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", ["masks.safetensors", "head.safetensors", "metrics.json", "vocab.json"])
def test_a_damaged_file_of_a_finished_run_is_one_line_for_every_reader(name, reference, tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    truncate(run / name)
    text = tmp_path / "in.txt"
    text.write_text("the dog runs .\n")
    readers = [["predict", run, "--input", text, "--output", tmp_path / "p.txt"]]
    if name in ("masks.safetensors", "metrics.json"):  # what export reads
        readers.append(["export", run, "--model-dir", tmp_path / "x"])
    if name == "masks.safetensors":
        readers.append(["compare", run, reference])
    for argv in readers:
        code, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        line = error_line(err)
        assert line.startswith(f"subprobe: error: {run / name}: cannot be read ("), line
        assert f"subprobe probe --config {run / 'config.yaml'} --out {run} --overwrite" in line, line
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / "x").exists()
    # as the line says: train the run again from its own config.yaml; it is the undisturbed run
    retrain = ["probe", "--config", run / "config.yaml", "--out", run, "--overwrite", "--no-progress"]
    code, err = run_cli(retrain, capsys)
    assert code == 0, err
    assert_same_run(reference, run)


def test_damaged_sentence_statistics_are_one_line(reference, tmp_path):
    """sentence-stats.npz (what the report's paired tests resample) cut short: one line naming it, never a pickle."""
    from subprobe.errors import DamagedFileError
    from subprobe.runs import RunDir

    run = copy_run(reference, tmp_path / "run")
    assert set(RunDir(run).read_sentence_stats()) >= {"dev", "test"}
    truncate(run / "sentence-stats.npz")
    with pytest.raises(DamagedFileError) as info:
        RunDir(run).read_sentence_stats()
    assert str(info.value).startswith(f"{run / 'sentence-stats.npz'}: cannot be read (")
    assert "\n" not in str(info.value) and "--overwrite" in str(info.value)


def test_a_damaged_checkpoint_then_resume_as_the_line_says(tiny_bert, tiny_ud, tmp_path, reference, capsys):
    out = tmp_path / "run"
    killed = subprobe(argv_for(tiny_bert, tiny_ud, out), fault="SIGKILL@8@self")
    assert killed.returncode == -signal.SIGKILL
    truncate(out / "checkpoint.pt", 0.3)
    # a half-written temporary file beside it (a kill during a write) is never read, and is removed on resume
    (out / ".checkpoint.pt.0123abcd.tmp").write_bytes((out / "checkpoint.pt").read_bytes()[:100])
    code, err = run_cli(["probe", "--resume", out], capsys)
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"subprobe: error: {out / 'checkpoint.pt'}: the checkpoint cannot be read (")
    assert line.endswith(f"delete it and run `subprobe probe --resume {out}` to train again from the beginning")
    (out / "checkpoint.pt").unlink()
    code, err = run_cli(["probe", "--resume", out, "--no-progress"], capsys)
    assert code == 0, err
    assert_same_run(reference, out)
    assert no_temporaries(out) == []


def test_a_damaged_store_index_and_metrics_file(reference, tiny_bert, tiny_ud, tmp_path, capsys):
    """index.json cut short: the sweep says how to rebuild it, the report reads the runs without it; a damaged
    metrics.json in the store: the point fails with the line, the report leaves it out and says so."""
    base = {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]),
            "test": str(tiny_ud["test"]), "epochs": 3, "batch_size": 4, "eval_every": 3, "patience": 0,
            "precision": "fp32"}
    points = [{"probe": "subnetwork"}, {"probe": "linear"}]
    store = Store(tmp_path / "store")
    assert run_points(points, store, base, echo=lambda *a, **k: None)["done"] == 2
    before = {e["run_dir"]: e["config"] for e in store.load_index().values()}
    truncate(store.index_path)
    with pytest.raises(Exception, match="index.json: cannot be read") as info:
        store.load_index()
    assert f"mv {store.index_path} {store.index_path}.damaged" in str(info.value)
    code, err = run_cli(["report", store.root, "--report-dir", tmp_path / "report"], capsys)
    assert code == 0 and f"subprobe: note: {store.index_path}: cannot be read" in err
    store.index_path.rename(store.root / "index.json.damaged")  # as the line says
    assert run_points(points, store, base, echo=lambda *a, **k: None) == {"done": 0, "skipped": 2, "failed": 0}
    assert {e["run_dir"]: e["config"] for e in store.load_index().values()} == before  # rebuilt as it was
    # a damaged metrics.json in the store
    sub = next(store.resolve(e["run_dir"]) for e in store.load_index().values() if e["config"]["probe"] == "subnetwork")
    truncate(sub / "metrics.json")
    messages = []
    assert run_points(points, store, base, echo=lambda *a, **k: messages.append(a[0]))["failed"] == 1
    assert any(f"{sub / 'metrics.json'}: cannot be read" in m and f"move {sub} away" in m for m in messages)
    code, err = run_cli(["report", store.root, "--report-dir", tmp_path / "report2"], capsys)
    assert code == 0 and f"subprobe: note: {sub / 'metrics.json'}: cannot be read" in err
    shutil.move(sub, tmp_path / "moved")  # as the line says
    assert run_points(points, store, base, echo=lambda *a, **k: None)["done"] == 1
    assert comparable_metrics(sub) == comparable_metrics(reference)


# -- sweeps ---------------------------------------------------------------------------------------------------

GRID = """name: small
axes:
  probe:
    - {probe: subnetwork}
    - {probe: linear}
    - {probe: mlp, rank: 4}
profiles:
  quick: {epochs: 3, batch_size: 4, eval_every: 3, patience: 0, precision: fp32}
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "small.yaml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def serial(grid, tiny_bert, tiny_ud, tmp_path_factory) -> dict:
    """The undisturbed sweep (serial, in this process): stable metrics by point."""
    root = tmp_path_factory.mktemp("serial") / "store"
    assert main(sweep_argv(grid, tiny_bert, tiny_ud, root)) == 0
    return results(Store(root))


def sweep_argv(grid, tiny_bert, tiny_ud, root, *extra) -> list[str]:
    return ["sweep", str(grid), "--store", str(root), "--model", str(tiny_bert), "--train", str(tiny_ud["train"]),
            "--dev", str(tiny_ud["dev"]), "--test", str(tiny_ud["test"]), "--threads", "1", *map(str, extra)]


def results(store: Store) -> dict:
    out = {}
    for r in store.results():
        run = Path(r["run_dir"])
        out[run.name] = comparable_metrics(run)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def workers_gone(store: Store, timeout: float = 10) -> bool:
    pids = [e["pid"] for e in store.load_index().values() if "pid" in e]
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(alive(p) for p in pids)


@pytest.mark.slow  # several child processes (pools, Ray): CI runs it (the whole suite)
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_two_worker_sweep_stopped_at_a_random_step(sig, grid, serial, tiny_bert, tiny_ud, tmp_path, capsys):
    """A worker signals the sweep process at a random step of its point; the workers stop with it (SIGKILL: they
    see their parent gone; SIGTERM: the sweep stops them), and the same command finishes the grid."""
    root = tmp_path / "store"
    at = DRAW.randint(2, STEPS - 1)
    stopped = subprobe(sweep_argv(grid, tiny_bert, tiny_ud, root, "--jobs", 2), fault=f"{sig}@{at}@parent",
                       once=tmp_path / "fired")
    assert (tmp_path / "fired").exists(), stopped.stderr
    store = Store(root)
    assert workers_gone(store), "pool workers outlived the sweep"
    if sig == "SIGTERM":
        assert stopped.returncode == 143
        assert stopped.stderr.strip().splitlines()[-1] == (
            "subprobe: stopped by SIGTERM; run the same command again to continue (finished points are skipped, "
            "interrupted ones continue from their checkpoints)")
    else:
        assert stopped.returncode == -signal.SIGKILL
    assert {e["status"] for e in store.load_index().values()} <= {"running", "done"}
    for entry in store.load_index().values():
        run = store.resolve(entry["run_dir"])
        if (run / "checkpoint.pt").exists():  # whole (a worker stopped mid-write leaves a .tmp beside it, never read)
            ckpt.load_checkpoint(run / "checkpoint.pt")
    capsys.readouterr()
    assert main(sweep_argv(grid, tiny_bert, tiny_ud, root)) == 0  # the same grid (any executor computes the same)
    assert results(store) == serial
    assert no_temporaries(root / "runs") == []  # the re-run removed them


@pytest.mark.slow  # several child processes (pools, Ray): CI runs it (the whole suite)
def test_two_sweeps_on_one_store_at_once_share_the_points(grid, serial, tiny_bert, tiny_ud, tmp_path):
    """Each point is trained by exactly one of them (the point's lock), and each returns when the grid is done."""
    root = tmp_path / "store"
    argv = [sys.executable, "-m", "subprobe", *sweep_argv(grid, tiny_bert, tiny_ud, root)[0:]]
    first, second = (subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True) for _ in range(2))
    outputs = []
    for process in (first, second):
        try:
            outputs.append(process.communicate(timeout=240))
        finally:
            kill_group(process.pid)
    assert (first.returncode, second.returncode) == (0, 0), outputs
    store = Store(root)
    assert results(store) == serial
    done = [int(out.strip().splitlines()[-1].split(": ")[1].split(" done")[0]) for out, _ in outputs]
    assert sum(done) == 3, outputs  # every point trained once, by one of the two
    for entry in store.load_index().values():  # never continued from another process's checkpoint
        assert "resumes" not in json.loads((store.resolve(entry["run_dir"]) / "env.json").read_text())
        assert entry["status"] == "done"


@pytest.mark.slow  # several child processes (pools, Ray): CI runs it (the whole suite)
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra is not installed")
def test_a_ray_sweep_survives_a_killed_worker_and_stops_on_sigterm(grid, serial, tiny_bert, tiny_ud, tmp_path, capsys):
    """A Ray worker is SIGKILLed at a random step: Ray retries the task, which continues from the point's checkpoint.
    Then the driver gets SIGTERM: it cancels the tasks in flight and stops with the line; the re-run finishes."""
    root = tmp_path / "store"
    at = DRAW.randint(4, STEPS - 1)
    argv = [sys.executable, "-m", "subprobe",
            *sweep_argv(grid, tiny_bert, tiny_ud, root, "--executor", "ray", "--jobs", 2)]
    # 0.1 s a step: the points are still running when the driver gets SIGTERM
    driver = subprocess.Popen(argv, env=child_env(f"SIGKILL@{at}@self@0.1", tmp_path / "fired"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    store = Store(root)
    try:
        deadline, resumed = time.monotonic() + 180, None
        while resumed is None and time.monotonic() < deadline and driver.poll() is None:
            for env in root.glob("runs/*/env.json"):
                if "resumes" in env.read_text():
                    resumed = env.parent
            time.sleep(0.2)
        assert resumed is not None, "no retried task continued from its checkpoint"
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=120)
    finally:
        kill_group(driver.pid)
    assert (tmp_path / "fired").exists()
    assert driver.returncode == 143, err
    assert any(line.startswith("subprobe: stopped by SIGTERM; run the same command again")
               for line in err.splitlines()), err
    assert "Traceback" not in err
    assert json.loads((resumed / "env.json").read_text())["resumes"][0]["from_step"] % 3 == 0
    capsys.readouterr()
    assert main(sweep_argv(grid, tiny_bert, tiny_ud, root)) == 0  # the same grid, finished by any executor
    assert results(store) == serial
