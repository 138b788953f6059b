"""Checkpoints and --resume: a run interrupted at any point ends exactly as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import subprobe
from subprobe.cli import main
from subprobe.errors import SubprobeError
from subprobe.runs import RunDir
from subprobe.training import checkpoint as ckpt
from tests.conftest import probe_argv

TIMING = {"wall_seconds"}
TRAIN_TIMING = {"seconds", "words_per_second"}


def argv_for(tiny_bert, tiny_ud, out, *extra, epochs=3, batch_size=4, eval_every=3):
    return probe_argv(
        tiny_bert, tiny_ud, out, "--patience", "0", *extra, epochs=epochs, batch_size=batch_size, eval_every=eval_every
    )


def comparable_metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    for key in TIMING:
        m.pop(key, None)
    m["train"] = {k: v for k, v in m["train"].items() if k not in TRAIN_TIMING}
    return m


def log_records(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("words_per_s")
    return records


def assert_same_run(a: Path, b: Path) -> None:
    assert comparable_metrics(a) == comparable_metrics(b)
    for name in ("masks.safetensors", "head.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys()
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    ra, rb = log_records(a), log_records(b)
    assert [r["step"] for r in rb] == sorted({r["step"] for r in rb})  # no duplicate lines
    assert ra == rb


def resumed_equals_uninterrupted(model, data, tmp_path, monkeypatch, *extra: str, at: int = 10) -> Path:
    """Run ``extra`` once uninterrupted and once interrupted before batch ``at`` then resumed; assert the two
    runs are the same; returns the resumed run's directory."""
    from subprobe.cli import main

    reference, out = tmp_path / "reference", tmp_path / "run"
    assert main(argv_for(model, data, reference, *extra)) == 0
    interrupt = Interrupt(monkeypatch, at)
    assert main(argv_for(model, data, out, *extra)) == 130
    monkeypatch.setattr("subprobe.training.step.collate", interrupt.original)
    assert main(["probe", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference, out)
    return out


class Interrupt:
    """Replace the training step's ``collate`` so that training raises KeyboardInterrupt before step ``at``."""

    def __init__(self, monkeypatch, at: int) -> None:
        from subprobe.training import step

        self.calls = 0
        self.at = at
        self.original = step.collate
        monkeypatch.setattr(step, "collate", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.original(*args, **kwargs)


@pytest.fixture(scope="module")
def reference(tiny_bert, tiny_ud, tmp_path_factory):
    """An uninterrupted run: 3 epochs x 6 steps, dev checks every 3 steps, checkpoints every 4."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(argv_for(tiny_bert, tiny_ud, out, "--checkpoint-every", "4")) == 0
    return out


def test_interrupted_and_resumed_run_equals_uninterrupted(tiny_bert, tiny_ud, tmp_path, reference, capsys, monkeypatch):
    """Interrupt before any checkpoint, then mid-epoch between two dev checks, then at an epoch boundary."""
    out = tmp_path / "run"
    first = argv_for(tiny_bert, tiny_ud, out, "--checkpoint-every", "4")
    resume = ["probe", "--resume", str(out), "--no-progress"]
    # (argv, collate call that raises, checkpoint step left behind); checkpoints at 4, 8, 12, 16
    plan = [(first, 2, None), (resume, 10, 8), (resume, 5, 12)]
    for argv, stop_at, kept in plan:
        interrupt = Interrupt(monkeypatch, stop_at)
        assert main(argv) == 130
        assert f"continue with: subprobe probe --resume {out}" in capsys.readouterr().err
        assert not (out / "metrics.json").exists()
        if kept is None:
            assert not (out / "checkpoint.pt").exists()
        else:
            assert ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"] == kept
        monkeypatch.setattr("subprobe.training.step.collate", interrupt.original)
    assert main(resume) == 0
    assert_same_run(reference, out)
    assert not (out / "checkpoint.pt").exists()  # removed once metrics.json is written
    env = json.loads((out / "env.json").read_text())
    assert [r["from_step"] for r in env["resumes"]] == [8, 12]


def test_finished_run_is_only_reported(reference, capsys):
    before = (reference / "metrics.json").read_bytes()
    assert main(["probe", "--resume", str(reference)]) == 0
    printed = capsys.readouterr().out
    assert "already finished" in printed and "dev  accuracy hard mask" in printed
    assert (reference / "metrics.json").read_bytes() == before


def test_python_api_resume_semantics_for_sweeps(tiny_bert, tiny_ud, tmp_path):
    config = subprobe.ProbeConfig(
        task="upos",
        model=str(tiny_bert),
        train=str(tiny_ud["train"]),
        dev=str(tiny_ud["dev"]),
        epochs=1,
        batch_size=8,
        out=str(tmp_path / "point"),
        progress=False,
        precision="fp32",
    )
    quiet = dict(echo=lambda *a, **k: None)
    first = subprobe.probe(config, resume=True, **quiet)  # missing directory: a new run
    again = subprobe.probe(config, resume=True, **quiet)  # finished: returned as it is, nothing trained
    assert again.metrics == first.metrics and again.history == first.history
    assert again.subnetwork.agreement(first.subnetwork) == 1.0
    with pytest.raises(SubprobeError, match="different configuration"):
        subprobe.probe(subprobe.ProbeConfig(**{**config.__dict__, "seed": 1}), resume=True, **quiet)


@pytest.mark.slow
def test_kill_and_resume_subprocess_matches_uninterrupted_run(tiny_bert, tiny_ud, tmp_path, capsys):
    """SIGKILL a real `python -m subprobe probe` midway, resume it, compare with an uninterrupted run."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    # 24 sentences / batch 2 = 12 steps per epoch, 4 epochs = 48 steps; dev check + checkpoint every 5
    args = argv_for(tiny_bert, tiny_ud, killed, "--checkpoint-every", "5", epochs=4, batch_size=2, eval_every=5)
    # one thread, as in this process (fixture one_thread): the same arithmetic in both processes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # the run to kill sleeps 100 ms per step (outside the computation) so that it can be killed midway
    slow = (
        "import sys, time; from subprobe.training import step; collate = step.collate\n"
        "def slow(*a, **k):\n    time.sleep(0.1)\n    return collate(*a, **k)\n"
        "step.collate = slow\nfrom subprobe.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    victim = subprocess.Popen([sys.executable, "-c", slow, *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and victim.poll() is None:
        if (killed / "checkpoint.pt").exists() and (killed / "log.jsonl").exists():
            lines = (killed / "log.jsonl").read_text().splitlines()
            if lines and lines[-1].endswith("}") and json.loads(lines[-1])["step"] >= 15:
                break
        time.sleep(0.02)
    assert victim.poll() is None, f"the run ended before it could be killed: {victim.stderr.read()}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    state = ckpt.load_checkpoint(killed / "checkpoint.pt")  # never a broken checkpoint
    # the log line of a dev check is written just before its checkpoint, so the log may be one check ahead:
    # the resumed run truncates it to the checkpoint's step and writes the later lines once
    assert 10 <= state["progress"]["step"] < 48 and state["progress"]["step"] % 5 == 0
    # resume it with the CLI (in this process: same thread count, so the same arithmetic as the killed process)
    assert main(["probe", "--resume", str(killed), "--no-progress"]) == 0
    assert f"resuming from the checkpoint at step {state['progress']['step']}" in capsys.readouterr().err
    # the uninterrupted run of the same configuration
    reference_args = [a if a != str(killed) else str(whole) for a in args]
    assert main(reference_args) == 0
    assert_same_run(whole, killed)
    assert comparable_metrics(killed)["train"]["steps"] == 48


# -- atomic checkpoint writes -------------------------------------------------------------------


def _payload(value: float) -> dict:
    return {"format": ckpt.FORMAT_VERSION, "weights": torch.full((1000,), value)}


def test_failed_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / RunDir.CHECKPOINT
    ckpt.save_checkpoint(path, _payload(1.0))

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", no_rename)
    with pytest.raises(SubprobeError, match="previous file is kept.*--resume"):
        ckpt.save_checkpoint(path, _payload(2.0))
    assert torch.equal(ckpt.load_checkpoint(path)["weights"], torch.full((1000,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == [RunDir.CHECKPOINT]  # temporary file removed


def test_kill_during_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / RunDir.CHECKPOINT
    ckpt.save_checkpoint(path, _payload(1.0))
    real_save = torch.save

    def half_written(obj, fh):
        real_save(obj, fh)
        fh.truncate(100)  # the process dies in the middle of writing the temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", half_written)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, _payload(2.0))
    assert torch.equal(ckpt.load_checkpoint(path)["weights"], torch.full((1000,), 1.0))
    # a SIGKILL leaves the temporary file behind: it is never read, and removed on resume
    (tmp_path / f".{RunDir.CHECKPOINT}.dead.tmp").write_bytes(b"garbage")
    ckpt.remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [RunDir.CHECKPOINT]


def test_truncated_checkpoint_gives_one_line_error(tmp_path):
    path = tmp_path / RunDir.CHECKPOINT
    ckpt.save_checkpoint(path, _payload(1.0))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SubprobeError, match="cannot be read.*delete it") as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_rng_states_round_trip():
    import random

    import numpy as np

    state = ckpt.rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123), random.seed(5), np.random.seed(7)
    ckpt.set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


# -- non-finite loss or masks -------------------------------------------------------------------


def _poison_loss(monkeypatch, from_call: int):
    from subprobe.tasks.upos import UposTask

    original = UposTask.loss
    calls = {"n": 0}

    def loss(self, head, output, batch):
        calls["n"] += 1
        value = original(self, head, output, batch)
        return value * float("nan") if calls["n"] >= from_call else value

    monkeypatch.setattr(UposTask, "loss", loss)
    return original


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    original = _poison_loss(monkeypatch, from_call=5)  # step 5 is the first bad one
    assert main(argv_for(tiny_bert, tiny_ud, out, epochs=2)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "training diverged at step 6: the loss is nan" in err
    assert "last good checkpoint (step 3) is kept" in err
    assert f"subprobe probe --resume {out} --mask-lr 0.05 --head-lr" in err
    assert ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"] == 3
    # continue from the good checkpoint with a lower learning rate, as the message says
    from subprobe.tasks.upos import UposTask

    monkeypatch.setattr(UposTask, "loss", original)
    assert main(["probe", "--resume", str(out), "--mask-lr", "0.05", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 12
    env = json.loads((out / "env.json").read_text())
    assert env["resumes"][0]["changed"] == {"mask_lr": [0.2, 0.05]}
    assert "mask_lr: 0.05" in (out / "config.yaml").read_text()
    assert [r["step"] for r in log_records(out)] == [3, 6, 9, 12]


def test_non_finite_state_is_never_checkpointed(tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _poison_loss(monkeypatch, from_call=5)
    # a checkpoint every step, dev checks every 3: the bad step 5 is caught before its checkpoint
    assert main(argv_for(tiny_bert, tiny_ud, out, "--checkpoint-every", "1", epochs=2)) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 5" in err and "last good checkpoint (step 4)" in err
    assert ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"] == 4


def test_non_finite_mask_logits_are_reported(tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    from subprobe.masking.masked_linear import MaskedLinear

    out = tmp_path / "run"
    original = MaskedLinear.current_mask
    calls = {"n": 0}

    def poisoned(self):
        calls["n"] += 1
        if calls["n"] == 12 * 4 + 1:  # first forward of step 5 (12 masked matrices): the optimiser step 4 is done
            with torch.no_grad():
                self.log_alpha[0, 0] = float("inf")
        return original(self)

    monkeypatch.setattr(MaskedLinear, "current_mask", poisoned)
    assert main(argv_for(tiny_bert, tiny_ud, out, "--eval-every", "100", "--checkpoint-every", "1", epochs=1)) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 5: the mask logits of" in err and "are not finite" in err
    assert "last good checkpoint (step 4)" in err
    state = ckpt.load_checkpoint(out / "checkpoint.pt")
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())
