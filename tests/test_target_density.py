"""--target-density: the expected density, the Lagrangian and its ascent, the target's ramp, the flags, and a
tiny run that ends near the target."""

from __future__ import annotations

import json
import math

import pytest
import torch

from subprobe.cli import main
from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.masking import counting
from subprobe.masking import hard_concrete as hc
from subprobe.masking.constraint import DensityLagrangian, controlled_density, expected_density, project_to_density
from subprobe.resolve import resolve
from subprobe.training.schedules import constraint_ramp
from tests.conftest import probe_argv
from tests.test_subnetwork import HALF, _masked


def test_expected_density_is_weighted_by_the_weights_each_unit_governs() -> None:
    # 32 weights: 4 units of 8 weights with P = 1, 1/2, 1/2, 0 -> 16 expected kept weights
    # 64 weights: 16 units of 4 weights with P = 1/4 -> 16 expected kept weights
    small = _masked(8, 4, (8, 1), [60.0, HALF, HALF, -60.0])
    large = _masked(8, 8, (2, 2), [HALF - math.log(3)] * 16)
    assert expected_density([small, large]).item() == pytest.approx((16 + 16) / 96, abs=1e-6)
    # the paper's matrix-mean penalty would say (1/2 + 1/4) / 2 = 0.375: not a fraction of weights
    assert expected_density([small]).item() == pytest.approx(0.5, abs=1e-6)


def test_initial_expected_density() -> None:
    m = _masked(8, 8, (1, 1), [hc.INIT_LOG_ALPHA] * 64)
    # sigmoid(log 5 + (2/3) log 11) = 1 / (1 + 11^(-2/3) / 5)
    assert expected_density([m]).item() == pytest.approx(1 / (1 + 11 ** (-2 / 3) / 5), abs=1e-6)


def test_lagrangian_value_and_gradients_by_hand() -> None:
    lag = DensityLagrangian(0.5)
    with torch.no_grad():
        lag.l1.fill_(2.0)
        lag.l2.fill_(3.0)
    s = torch.tensor(0.7, requires_grad=True)
    term = lag(s, 0.5)
    assert term.item() == pytest.approx(2.0 * 0.2 + 3.0 * 0.04)
    term.backward()
    assert lag.l1.grad.item() == pytest.approx(0.2)  # d/dl1 = s - p
    assert lag.l2.grad.item() == pytest.approx(0.04)  # d/dl2 = (s - p)^2
    assert s.grad.item() == pytest.approx(2.0 + 2 * 3.0 * 0.2)  # d/ds = l1 + 2 l2 (s - p)


def test_controlled_density_has_the_hard_value_and_the_expected_gradient() -> None:
    # units: logit 60 (kept, P=1), HALF twice (P=1/2, soft mask 0.4 < 0.5: dropped), -60: hard density 8/32
    small = _masked(8, 4, (8, 1), [60.0, HALF, HALF, -60.0])
    s = controlled_density([small])
    assert s.item() == pytest.approx(0.25, abs=1e-6)  # hard: one unit of four, where the expected density says 1/2
    s.backward()
    reference = _masked(8, 4, (8, 1), [60.0, HALF, HALF, -60.0])
    expected_density([reference]).backward()
    assert torch.equal(small.log_alpha.grad, reference.log_alpha.grad)
    # dP/dlogit = P (1 - P) / 4 units: 1/16 for the two units at P = 1/2
    assert small.log_alpha.grad[0, 1].item() == pytest.approx(1 / 16, abs=1e-6)


def _logits(m) -> list[float]:
    return m.log_alpha.detach().reshape(-1).tolist()


def test_projection_flips_the_units_nearest_the_threshold_to_the_closest_count() -> None:
    # 10 units of 8 weights (80 weights); 6 kept (logits >= 0): density 0.6; target 0.3 -> keep the 3 highest
    m = _masked(8, 10, (8, 1), [5.0, 4.0, 3.0, 0.2, 0.1, 0.05, -0.1, -1.0, -2.0, -3.0])
    done = project_to_density([m], 0.3)
    assert done.before == pytest.approx(0.6) and done.after == pytest.approx(0.3) and done.flipped_units == 3
    assert counting.kept_units(m.log_alpha) == 3
    assert _logits(m)[:3] == [5.0, 4.0, 3.0]  # kept, untouched
    assert _logits(m)[3:6] == pytest.approx([-1e-3] * 3)  # dropped just below the threshold
    assert _logits(m)[6:] == pytest.approx([-0.1, -1.0, -2.0, -3.0])  # already dropped: untouched
    # too sparse: 0.1 -> 0.5 adds the two highest dropped units, just above the threshold
    m = _masked(8, 10, (8, 1), [5.0, -0.1, -0.2, -0.5, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0])
    done = project_to_density([m], 0.3)
    assert (done.before, done.after, done.flipped_units) == (pytest.approx(0.1), pytest.approx(0.3), 2)
    assert _logits(m)[:4] == pytest.approx([5.0, 1e-3, 1e-3, -0.5])
    assert project_to_density([m], 0.3).flipped_units == 0  # idempotent


def test_projection_weighs_units_by_the_weights_they_govern_across_matrices() -> None:
    # 32 weights in 4 units of 8 and 64 weights in 16 units of 4; all kept (density 1). Target 0.5 = 48 weights:
    # ranked by logit the four big units (9, 8, 7, 6) come first: 32 weights, then four small ones: 48.
    small = _masked(8, 4, (8, 1), [9.0, 8.0, 7.0, 6.0])
    large = _masked(8, 8, (2, 2), [float(x) for x in range(5, -11, -1)])  # 5, 4, ..., -10
    done = project_to_density([small, large], 0.5)
    assert counting.count([small, large]) == (48, 96)
    assert done.after == pytest.approx(0.5)
    assert counting.kept_units(small.log_alpha) == 4 and counting.kept_units(large.log_alpha) == 4
    # the closest count wins: 0.3 of 96 = 28.8 weights; cuts at 24 (3 big) or 32 (4 big): 32 is closer
    small = _masked(8, 4, (8, 1), [9.0, 8.0, 7.0, 6.0])
    large = _masked(8, 8, (2, 2), [float(x) for x in range(5, -11, -1)])
    assert project_to_density([small, large], 0.3).after == pytest.approx(32 / 96)


def _ascend(s_values: list[float], p: float) -> list[tuple[float, float]]:
    """The multipliers after each Adam ascent step (the optimiser group subprobe uses) at densities ``s_values``."""
    lag = DensityLagrangian(p)
    opt = torch.optim.Adam([{"params": lag.multipliers, "lr": 0.1, "maximize": True}])
    out = []
    for s in s_values:
        opt.zero_grad()
        lag(torch.tensor(s), p).backward()
        opt.step()
        out.append((lag.l1.item(), lag.l2.item()))
    return out


def test_multiplier_grows_while_the_density_is_above_the_target() -> None:
    steps = _ascend([0.9, 0.8, 0.7, 0.6], 0.5)
    l1 = [a for a, _ in steps]
    assert l1[0] == pytest.approx(0.1, abs=1e-6)  # Adam's first step is lr * sign(gradient)
    assert all(b > a for a, b in zip(l1, l1[1:]))
    assert all(b > a for a, b in zip([0.0] + [q for _, q in steps], [q for _, q in steps]))


def test_multiplier_falls_while_the_density_is_below_the_target() -> None:
    steps = _ascend([0.2, 0.3, 0.4], 0.5)
    l1 = [a for a, _ in steps]
    assert l1[0] == pytest.approx(-0.1, abs=1e-6)
    assert all(b < a for a, b in zip(l1, l1[1:]))
    assert all(q > 0 for _, q in steps)  # the quadratic multiplier grows with any violation


def test_the_constraint_pushes_mask_logits_down_when_too_dense() -> None:
    m = _masked(8, 4, (8, 1), [1.0, 2.0, 3.0, 4.0])
    lag = DensityLagrangian(0.5)
    with torch.no_grad():
        lag.l1.fill_(1.0)
    lag(expected_density([m]), 0.5).backward()
    assert (m.log_alpha.grad > 0).all()  # descent lowers every logit, so the density falls


def test_target_ramps_from_the_density_at_the_start_to_p() -> None:
    lag = DensityLagrangian(0.2)
    assert lag.target(torch.tensor(0.9), 0.0).item() == pytest.approx(0.9)
    assert lag.target(torch.tensor(0.4), 0.5).item() == pytest.approx(0.55)  # the start is kept: (0.9 + 0.2) / 2
    assert lag.target(torch.tensor(0.4), 1.0).item() == pytest.approx(0.2)
    assert lag.state_dict()["start_density"].item() == pytest.approx(0.9)  # checkpointed with the run


def test_constraint_ramp_follows_the_lambda_ramp() -> None:
    assert constraint_ramp(0, 100, 0.25, 0.75) is None
    assert constraint_ramp(24, 100, 0.25, 0.75) is None
    assert constraint_ramp(25, 100, 0.25, 0.75) == 0.0
    assert constraint_ramp(50, 100, 0.25, 0.75) == pytest.approx(0.5)
    assert constraint_ramp(75, 100, 0.25, 0.75) == 1.0
    assert constraint_ramp(99, 100, 0.25, 0.75) == 1.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"target_density": 0.5, "lambda_max": 5.0}, "--lambda-max does not apply"),
        ({"target_density": 0.0}, r"in \(0, 1\]"),
        ({"target_density": 1.5}, r"in \(0, 1\]"),
        ({"random_mask_like": "a", "complement_of": "b"}, "give one of them"),
        ({"target_density": 0.5, "complement_of": "b"}, "freezes the mask"),
        ({"mask_seed": 3}, "--mask-seed seeds"),
    ],
)
def test_flag_combinations_are_refused(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(ProbeConfig(**values))


def test_cli_refuses_target_density_with_lambda_max_in_one_line(tiny_bert, tiny_ud, tmp_path, capsys) -> None:
    argv = probe_argv(tiny_bert, tiny_ud, tmp_path / "run", "--target-density", "0.5", "--lambda-max", "5")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("subprobe: error: --target-density")
    assert not (tmp_path / "run").exists()


def test_tiny_run_holds_the_target_density_after_the_ramp(tiny_bert, tiny_ud, tmp_path) -> None:
    """180 steps on the tiny random BERT, constraint ramped over 10% .. 50% of training, then held by rounding.

    Here the Lagrangian overshoots (hard density 0.334 at the end of the ramp, single thread, seed 0; the bound
    below only says it was active and the rounding had work to do); from step 90 on every step is rounded to the
    closest kept count, so every dev check after it and the final mask keep exactly half of the masked weights
    (the tiny model's units all govern 32 weights: 0.5 is reachable).
    """
    out = tmp_path / "run"
    extra = ("--target-density", "0.5", "--lambda-start", "0.1", "--lambda-end", "0.5", "--patience", "0")
    assert main(probe_argv(tiny_bert, tiny_ud, out, *extra, epochs=30, eval_every=6)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target_density"] == 0.5 and metrics["mask_source"] == "learnt"
    assert metrics["density"] == 0.5
    assert 0.2 < metrics["density_before_projection"] < 0.8 and metrics["density_before_projection"] != 0.5
    assert metrics["projected_units"] > 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["target_density"] is None  # step 6 < 10% of 180: no constraint yet
    assert all(r["density"] == 0.5 for r in log if r["step"] > 90)  # the hold phase
    assert log[-1]["target_density"] == pytest.approx(0.5)
    held = [r["multipliers"] for r in log if r["step"] > 90]
    assert all(m == held[0] for m in held)  # the Lagrangian term is off while the rounding holds the density
    assert max(r["multipliers"][1] for r in log) > 0  # the quadratic multiplier rose: the constraint was active
    config = (out / "config.yaml").read_text()
    assert "target_density: 0.5" in config


def test_interrupted_target_density_run_resumes_exactly(tiny_bert, tiny_ud, tmp_path, monkeypatch, capsys) -> None:
    """The multipliers, their Adam state and the ramp's start density (set at step 2) come back from the checkpoint
    written at step 8."""
    from tests.test_resume import resumed_equals_uninterrupted

    extra = ("--target-density", "0.5", "--lambda-start", "0.1", "--lambda-end", "0.5", "--checkpoint-every", "4")
    out = resumed_equals_uninterrupted(tiny_bert, tiny_ud, tmp_path, monkeypatch, *extra)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["multipliers"][1] > 0


def test_projection_counts_a_shared_mask_once_over_the_matrices_it_gates() -> None:
    from torch import nn

    from subprobe.masking.shared import SharedMask, SharedMaskedLinear

    shared = SharedMask(2)
    with torch.no_grad():
        shared.log_alpha.copy_(torch.tensor([3.0, 1.0]))
    q = SharedMaskedLinear(nn.Linear(4, 8), (4, 4), shared, "g")  # two row units of 16 weights
    o = SharedMaskedLinear(nn.Linear(8, 4), (4, 4), shared, "g")  # two column units of 16 weights
    done = project_to_density([q, o], 0.5)  # each shared unit governs 32 of the 64 weights
    assert (done.before, done.after, done.flipped_units) == (1.0, 0.5, 1)
    assert shared.log_alpha.tolist() == pytest.approx([3.0, -1e-3])


@pytest.mark.parametrize("seed", range(6))
def test_projection_keeps_the_top_units_of_a_full_sort(seed) -> None:
    """Against an independent reference: sort every unit by logit, keep the prefix whose weights come closest to
    the target. Three matrices whose units govern 8, 4 and 2 weights, random logits and targets."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 12, (8, 1)), (8, 16, (2, 2)), (4, 16, (2, 1))]  # 12 units of 8, 32 of 4, 32 of 2 weights
    mats = [_masked(o, i, b, (torch.randn(o * i // (b[0] * b[1]), generator=g) * 2).tolist()) for o, i, b in shapes]
    target = float(torch.rand((), generator=g)) * 0.9 + 0.05
    logits = torch.cat([m.log_alpha.detach().reshape(-1) for m in mats])
    sizes = torch.cat([torch.full((m.log_alpha.numel(),), float(m.block[0] * m.block[1])) for m in mats])
    order = torch.argsort(logits, descending=True)
    prefix = torch.cat([torch.zeros(1), torch.cumsum(sizes[order], 0)]) / sizes.sum()
    best = int(torch.argmin((prefix - target).abs()))
    expected = torch.zeros(logits.numel(), dtype=torch.bool)
    expected[order[:best]] = True
    project_to_density(mats, target)
    got = torch.cat([hc.hard_mask(m.log_alpha.detach()).reshape(-1) > 0 for m in mats])
    assert torch.equal(got, expected)
    assert counting.density(mats) == pytest.approx(float(prefix[best]))
