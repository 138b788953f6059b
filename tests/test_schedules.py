import pytest

from subprobe.training.schedules import lambda_at, warmup_factor


@pytest.mark.parametrize("frac,expected", [(0.0, 0.0), (0.25, 0.0), (0.5, 0.5), (0.75, 1.0), (1.0, 1.0), (0.375, 0.25)])
def test_lambda_ramp(frac, expected):
    total = 1000
    assert lambda_at(int(frac * total), total, 1.0) == pytest.approx(expected)


def test_lambda_scales_with_max():
    assert lambda_at(500, 1000, 25.0) == pytest.approx(12.5)
    assert lambda_at(900, 1000, 25.0) == 25.0


def test_warmup_linear_then_flat():
    assert warmup_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert warmup_factor(4, 100, 0.1) == pytest.approx(0.5)
    assert warmup_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert warmup_factor(50, 100, 0.1) == 1.0
    assert warmup_factor(0, 100, 0.0) == 1.0


def test_quick_profile_task_adjustment_and_explicit_flag_wins():
    from subprobe.config import ProbeConfig

    assert ProbeConfig(task="ner").resolved().head_lr == 3e-3
    assert ProbeConfig(task="ner").resolved().epochs == 4
    assert ProbeConfig(task="upos").resolved().epochs == 3
    assert ProbeConfig(task="ner", epochs=2).resolved().epochs == 2
    assert ProbeConfig(task="upos").resolved().head_lr == 1e-3
    assert ProbeConfig(task="ner", head_lr=5e-4).resolved().head_lr == 5e-4
    assert ProbeConfig(task="ner", profile="paper").resolved().head_lr == 5e-5
