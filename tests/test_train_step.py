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


def _step_on(tiny_bert, tiny_ud, indices: list[int], sub_batches: int, train: bool):
    """One TrainStep on ``indices`` with ``sub_batches``; returns the step's outcome and the trained parameters."""
    from subprobe.masking import hard_concrete as hc

    torch.manual_seed(0)
    task, encoder, _, splits, vocabs = tiny_upos_splits(tiny_bert, tiny_ud)
    cfg = ts.probe_config("fp32", batch_size=4, epochs=1, warmup=0.0, lambda_max=2.0, lambda_start=0.0,
                          lambda_end=0.0, sub_batches=sub_batches)
    runner = ts.SubprobeRunner(encoder, task, splits["train"], vocabs, 0, cfg)
    runner.model.train(train)
    draws = []
    original = hc.sample_mask

    def counting(log_alpha, generator=None):
        draws.append(log_alpha.shape)
        return original(log_alpha, generator)

    hc.sample_mask = counting
    try:
        taken = runner.train_step(indices, 0)
    finally:
        hc.sample_mask = original
    return taken, [p.detach().clone() for p in runner.train_step.trained], len(draws)


def test_sub_batches_accumulate_the_whole_batch_gradient(tiny_bert, tiny_ud):
    """Four 4-word sentences: in eval mode (soft masks, no dropout) two sub-batches of two give the step of one
    batch of four; in training each sub-batch draws its own mask sample (the paper's code: 4 x 8)."""
    task, _, _, splits, _ = tiny_upos_splits(tiny_bert, tiny_ud)
    four_words = [i for i, e in enumerate(splits["train"].encoded) if e.n_words == 4][:4]
    assert len(four_words) == 4
    whole, whole_params, _ = _step_on(tiny_bert, tiny_ud, four_words, 1, train=False)
    parts, part_params, _ = _step_on(tiny_bert, tiny_ud, four_words, 2, train=False)
    assert whole.words == parts.words == 16
    assert float(parts.loss.detach()) == pytest.approx(float(whole.loss.detach()), rel=1e-5)
    for a, b in zip(whole_params, part_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    _, _, one = _step_on(tiny_bert, tiny_ud, four_words, 1, train=True)
    _, _, two = _step_on(tiny_bert, tiny_ud, four_words, 2, train=True)
    assert one > 0 and two == 2 * one  # one sample per masked matrix per sub-batch


def test_random_batch_order_mixes_lengths_and_is_seeded(tiny_bert, tiny_ud):
    """--batch-order bucketed puts sentences of one length together; random (the paper's code) mixes them."""
    from subprobe.config import ProbeConfig
    from subprobe.resolve import resolve
    from subprobe.training.trainer import training_batches

    _, _, _, splits, _ = tiny_upos_splits(tiny_bert, tiny_ud)
    train = splits["train"]

    def spread(order: str) -> float:
        cfg = resolve(ProbeConfig(batch_size=4, batch_order=order))
        batches = training_batches(train, cfg, epoch=0)
        assert sorted(i for b in batches for i in b) == list(range(24))  # every sentence once
        assert batches == training_batches(train, cfg, epoch=0)  # seeded
        lengths = [[train.encoded[i].n_words for i in b] for b in batches]
        return sum(max(x) - min(x) for x in lengths) / len(lengths)

    assert spread("bucketed") == 0.0 and spread("random") > 1.0
    assert resolve(ProbeConfig()).batch_order == "bucketed"
