import pytest

from subprobe.resolve import resolve
from subprobe.training.schedules import lambda_at, warmup_factor


@pytest.mark.parametrize("frac,expected", [(0.0, 0.0), (0.25, 0.0), (0.5, 0.5), (0.75, 1.0), (1.0, 1.0), (0.375, 0.25)])
def test_lambda_ramp(frac, expected):
    total = 1000
    assert lambda_at(int(frac * total), total, 1.0) == pytest.approx(expected)


def test_no_steps_means_lambda_max_from_the_start():
    from subprobe.training.schedules import ramp_end_step

    assert lambda_at(0, 0, 3.0) == 3.0
    assert ramp_end_step(0, 0.75) == 0


def test_lambda_scales_with_max():
    assert lambda_at(500, 1000, 25.0) == pytest.approx(12.5)
    assert lambda_at(900, 1000, 25.0) == 25.0


def test_warmup_linear_then_flat():
    assert warmup_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert warmup_factor(4, 100, 0.1) == pytest.approx(0.5)
    assert warmup_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert warmup_factor(10, 100, 0.1) == 1.0  # the first step after the warm-up: exactly 1, not 11/10
    assert warmup_factor(50, 100, 0.1) == 1.0
    assert warmup_factor(0, 100, 0.0) == 1.0


def test_quick_profile_task_adjustment_and_explicit_flag_wins():
    from subprobe.config import ProbeConfig

    assert resolve(ProbeConfig(task="ner")).head_lr == 3e-3
    assert resolve(ProbeConfig(task="ner")).epochs == 4
    assert resolve(ProbeConfig(task="upos")).epochs == 3
    assert resolve(ProbeConfig(task="ner", epochs=2)).epochs == 2
    assert resolve(ProbeConfig(task="upos")).head_lr == 1e-3
    assert resolve(ProbeConfig(task="ner", head_lr=5e-4)).head_lr == 5e-4
    assert resolve(ProbeConfig(task="ner", profile="paper")).head_lr == 5e-5


@pytest.mark.parametrize("end", [0.0, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0])
def test_ramp_end_step_is_the_first_step_at_lambda_max(end):
    from subprobe.training.schedules import ramp_end_step

    start = min(0.25, end)
    for total in range(1, 130):
        first = ramp_end_step(total, end)
        assert lambda_at(first, total, 2.0, start, end) == 2.0, (total, first)
        assert first == 0 or lambda_at(first - 1, total, 2.0, start, end) < 2.0, (total, first)
    assert ramp_end_step(3, 0.75) == 3  # 2/3 < 0.75: rounding 2.25 to 2 would be a step early
    assert ramp_end_step(22, 0.75) == 17  # round(16.5) is 16
    assert ramp_end_step(10, 0.7) == 7  # 0.7 * 10 = 7.000000000000001 in floating point


def test_lambda_ramp_against_the_oracle():
    from tests import oracle

    for total in (7, 24, 1000):
        for step in range(total + 1):
            assert lambda_at(step, total, 3.0) == pytest.approx(oracle.lambda_at(step, total, 3.0))
