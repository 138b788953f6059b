"""The training loop's lambda schedule and early stopping, on the tiny BERT (a second or two each).

The tiny train file has 24 sentences: batches of 4 give 6 steps per epoch, 24 steps in 4 epochs.
"""

from __future__ import annotations

import pytest

import subprobe
from subprobe.config import ProbeConfig
from subprobe.training.schedules import ramp_end_step
from subprobe.training.trainer import _converged
from tests import oracle

TOTAL = 24


def _run(tiny_bert, tiny_ud, tmp_path, **values):
    config = subprobe.ProbeConfig(
        task="upos", model=str(tiny_bert), train=str(tiny_ud["train"]), dev=str(tiny_ud["dev"]),
        batch_size=4, eval_every=1, precision="fp32", progress=False, out=str(tmp_path / "run"),
        **{"epochs": 4, **values},
    )
    return subprobe.probe(config, echo=lambda *a, **k: None)


@pytest.mark.parametrize("lambda_end", [0.75, 0.5])
def test_early_stopping_waits_for_lambda_max_then_fires(tiny_bert, tiny_ud, tmp_path, lambda_end):
    # every dev check agrees with the last one (tolerance huge): only the lambda rule holds the run back
    result = _run(tiny_bert, tiny_ud, tmp_path, patience=1, tolerance=1e9, lambda_end=lambda_end)
    ramp_done = ramp_end_step(TOTAL, lambda_end)
    assert ramp_done == int(TOTAL * lambda_end)
    train = result.metrics["train"]
    assert train["total_steps"] == TOTAL and train["stopped_early"] is True
    # patience 1 compares two dev checks, the first of them at the end of the ramp
    assert train["steps"] == ramp_done + 1
    assert [h["step"] for h in result.history] == list(range(1, ramp_done + 2))
    assert result.history[-1]["lambda"] == 1.0


def test_full_run_without_patience_logs_the_paper_lambda_schedule(tiny_bert, tiny_ud, tmp_path):
    # default ramp (25% -> 75%), lambda_max 5: the value logged at a check is the one of the step just taken
    result = _run(tiny_bert, tiny_ud, tmp_path, patience=0, tolerance=1e9, lambda_max=5.0)
    assert result.metrics["train"]["steps"] == TOTAL and result.metrics["train"]["stopped_early"] is False
    logged = [(h["step"], h["lambda"]) for h in result.history]
    assert [s for s, _ in logged] == list(range(1, TOTAL + 1))
    for step, lam in logged:
        assert lam == pytest.approx(oracle.lambda_at(step - 1, TOTAL, 5.0)), step
    assert [lam for _, lam in logged][6:9] == [0.0, pytest.approx(5.0 * (7 / 24 - 0.25) / 0.5),
                                               pytest.approx(5.0 * (8 / 24 - 0.25) / 0.5)]


def _history(*checks):
    """Dev checks as the trainer logs them: (step, accuracy, density)."""
    return [{"step": s, "dev": {"accuracy": a}, "density": d} for s, a, d in checks]


def _config(patience, tolerance=0.01):
    return ProbeConfig(patience=patience, tolerance=tolerance)


def test_convergence_window_is_the_last_patience_checks_after_the_ramp():
    flat = _history((8, 0.5, 0.9), (9, 0.5, 0.9), (10, 0.5, 0.9), (11, 0.5, 0.9))
    assert not _converged(flat, "accuracy", _config(1), ramp_done=11)  # one check after the ramp
    assert _converged(flat, "accuracy", _config(1), ramp_done=10)
    assert _converged(flat, "accuracy", _config(2), ramp_done=10)
    assert not _converged(flat, "accuracy", _config(3), ramp_done=10)  # checks at 8, 9 are before the ramp
    assert _converged(flat, "accuracy", _config(4), ramp_done=8)
    assert not _converged(flat, "accuracy", _config(0), ramp_done=0)  # patience 0: never
    assert not _converged(flat, "accuracy", _config(1, tolerance=0.0), ramp_done=0)  # a change < 0 is impossible


@pytest.mark.parametrize("field", ["accuracy", "density"])
def test_convergence_needs_both_the_metric_and_the_density_to_settle(field):
    moving = {"accuracy": (0.5, 0.52), "density": (0.9, 0.9)} if field == "accuracy" else \
        {"accuracy": (0.5, 0.5), "density": (0.9, 0.88)}
    checks = _history((10, moving["accuracy"][0], moving["density"][0]), (11, moving["accuracy"][1],
                                                                          moving["density"][1]))
    assert not _converged(checks, "accuracy", _config(2, tolerance=0.01), ramp_done=10)
    assert _converged(checks, "accuracy", _config(2, tolerance=0.03), ramp_done=10)
    # only the last `patience` checks count: an old change does not hold the run back
    older = _history((10, 0.1, 0.1)) + [{**c, "step": c["step"] + 1} for c in checks]
    assert _converged(older, "accuracy", _config(2, tolerance=0.03), ramp_done=10)


def test_the_penalty_is_weighted_by_lambda(tiny_bert, tiny_ud, tmp_path):
    # same seed, data and noise; only lambda_max differs. Adam moves every logit by about the learning rate per
    # step whatever the scale of its gradient, so lambda shows where it is weighed against the task loss:
    # a negligible lambda leaves the masks to the task, a large one prunes faster
    runs = {lam: _run(tiny_bert, tiny_ud, tmp_path / f"l{lam:g}", patience=0, lambda_max=lam, epochs=2)
            for lam in (1e-4, 25.0)}
    final = {lam: r.history[-1] for lam, r in runs.items()}
    assert final[1e-4]["lambda"] == 1e-4 and final[25.0]["lambda"] == 25.0
    assert final[25.0]["penalty"] < final[1e-4]["penalty"] - 0.03
    assert runs[25.0].metrics["density"] < runs[1e-4].metrics["density"]
