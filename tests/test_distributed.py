"""One probe trained data-parallel on two real CPU processes (gloo): the gradient averaging equals the whole
batch's gradient; ``torchrun -m subprobe probe`` keeps the global batch, writes one run directory from rank 0,
and continues a run from its checkpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from subprobe.cli import main
from subprobe.training import checkpoint as ckpt
from subprobe.training.distributed import Ranks, average_gradients, shard
from tests.conftest import REPO, probe_argv
from tests.test_resume import Interrupt

X = torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0], [-1.5, 0.3, 0.2], [0.7, -0.7, 1.1], [2.0, 1.0, 0.0]])
Y = torch.tensor([0, 1, 1, 0, 1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _average_on_two_ranks(rank: int, port: int, rows: list[int], out: str) -> None:
    """Rank ``rank`` of 2: the gradient of its share of ``rows`` (a mean over its rows), averaged."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ranks = Ranks(rank, 2)
    mine = shard(rows, ranks)
    loss = torch.nn.functional.cross_entropy(model(X[mine]), Y[mine]) if mine else torch.zeros(())
    if mine:
        loss.backward()
    loss, words = average_gradients(list(model.parameters()), loss, len(mine), ranks)
    torch.save({"grads": [p.grad.clone() for p in model.parameters()], "loss": loss, "words": words},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4], [3]])  # 3 + 2 rows; one row (rank 1 has none)
def test_averaged_gradients_are_the_whole_batch_gradient(rows, tmp_path):
    assert (shard(list(range(7)), Ranks(0, 2)), shard(list(range(7)), Ranks(1, 2))) == ([0, 2, 4, 6], [1, 3, 5])
    torch.multiprocessing.spawn(_average_on_two_ranks, args=(free_port(), rows, str(tmp_path)), nprocs=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    loss = torch.nn.functional.cross_entropy(model(X[rows]), Y[rows])
    loss.backward()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["words"] == len(rows)
        assert torch.allclose(got["loss"], loss.detach(), atol=1e-6)
        for mine, whole in zip(got["grads"], (p.grad for p in model.parameters())):
            assert torch.allclose(mine, whole, atol=1e-6)


def torchrun(argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 -m subprobe ARGV`` on this machine's CPUs (gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "subprobe", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def steps_logged(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_one_probe_into_one_run_directory(tiny_bert, tiny_ud, tmp_path):
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--probe", "subnetwork", "--patience", "0", epochs=2, batch_size=8)
    done = torchrun(argv)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # the global batch stays 8 sentences: 24 training sentences -> 3 steps an epoch, 2 epochs
    assert metrics["sentences"]["train"] == 24 and metrics["train"]["steps"] == 6
    assert metrics["train"]["total_steps"] == 6
    assert steps_logged(out) == [3, 6]  # rank 0's log only: no record twice
    assert json.loads((out / "env.json").read_text())["processes"] == 2
    assert done.stdout.count("run directory") == 1  # one summary, from rank 0
    assert not (out / "checkpoint.pt").exists()  # removed once metrics.json is written
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "env.json", "head.safetensors", "log.jsonl",
                                                     "masks.safetensors", "metrics.json", "sentence-stats.npz",
                                                     "vocab.json"]


@pytest.mark.slow
def test_two_processes_continue_a_run_from_its_checkpoint(tiny_bert, tiny_ud, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--probe", "subnetwork", "--patience", "0", "--checkpoint-every", "2",
                      epochs=2, batch_size=8)
    interrupt = Interrupt(monkeypatch, 5)  # one process, stopped in step 5: the checkpoint of step 4 is left
    assert main(argv) == 130
    monkeypatch.setattr("subprobe.training.step.collate", interrupt.original)
    assert ckpt.load_checkpoint(out / "checkpoint.pt")["progress"]["step"] == 4
    done = torchrun(["probe", "--resume", str(out), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 6
    assert steps_logged(out) == [3, 6]  # step 3 from the first process, step 6 from the two
    assert [r["from_step"] for r in json.loads((out / "env.json").read_text())["resumes"]] == [4]
    assert not (out / "checkpoint.pt").exists()


def _train_with_disagreeing_ranks(rank: int, port: int, argv: list[str]) -> None:
    """Rank ``rank`` of 2, through ``subprobe probe``: rank 1's own early-stopping rule always says stop, rank 0's
    never does (as when dev scores differ in the last bit between GPUs)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"})
    from subprobe.training import trainer

    trainer._converged = lambda *args: rank == 1
    torch.set_num_threads(1)
    assert main(argv) == 0


def test_rank0_decides_early_stopping_for_every_process(tiny_bert, tiny_ud, tmp_path):
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--probe", "linear", "--patience", "1", epochs=3, batch_size=8,
                      eval_every=1)
    context = torch.multiprocessing.spawn(_train_with_disagreeing_ranks, args=(free_port(), argv), nprocs=2,
                                          join=False)
    try:
        for _ in range(240):
            if context.join(timeout=0.5):
                break
        else:
            raise AssertionError("a process is still waiting: the ranks did not take one early-stopping decision")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == metrics["train"]["total_steps"] == 9  # rank 0 never stopped: nor did 1
    assert not metrics["train"]["stopped_early"]
