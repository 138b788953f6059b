"""The one optimiser step: warm-up and the lambda ramp of the run, shared by the trainer and the benchmark."""

from __future__ import annotations

import pytest
import torch

from benchmarks import train_speed as ts
from tests.conftest import tiny_upos_splits


@pytest.fixture(scope="module")
def runner(tiny_bert, tiny_ud):
    torch.manual_seed(0)
    task, encoder, _, splits, vocabs = tiny_upos_splits(tiny_bert, tiny_ud)
    # 24 training sentences, batches of 4, 2 epochs: 12 steps; warm-up over int(0.25 * 12) = 3 steps
    cfg = ts.probe_config("fp32", batch_size=4, epochs=2, warmup=0.25, lambda_max=2.0, mask_lr=0.1)
    return ts.SubprobeRunner(encoder, task, splits["train"], vocabs, 0, cfg)


def test_benchmark_steps_with_the_runs_warmup_and_lambda(runner):
    step = runner.train_step
    assert step.total_steps == 12 and len(runner.train_set.encoded) == 24
    # lambda: 0 before 25% of training (step 3), linear to lambda_max at 75% (step 9)
    assert [step.lam(s) for s in (0, 2, 3, 6, 9, 11)] == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    mask_group = step.optimizer.param_groups[0]
    for expected in (1 / 3, 2 / 3, 1.0, 1.0):
        runner.step()
        assert mask_group["lr"] == pytest.approx(0.1 * expected, rel=1e-12)
    assert runner.steps == 4
