import math

import pytest
import torch

from subprobe.masking import hard_concrete as hc
from tests import oracle


def test_init_gives_soft_mask_09():
    la = torch.tensor([math.log(5.0)])
    # sigmoid(log 5) = 5/6; 5/6 * 1.2 - 0.1 = 0.9
    assert torch.allclose(hc.soft_mask(la), torch.tensor([0.9]))
    assert hc.hard_mask(la).item() == 1.0


def test_soft_and_hard_values_by_hand():
    la = torch.tensor([-10.0, -1.0, 0.0, -1e-3, 2.0, 2.5, 3.0])
    expected_soft = [oracle.soft_mask(a) for a in la.tolist()]
    assert torch.allclose(hc.soft_mask(la), torch.tensor(expected_soft), atol=1e-6)
    # 2.5 -> 1.2 * 0.924 - 0.1 = 1.009: clamped to 1; -10 -> clamped to 0
    assert hc.soft_mask(la)[0] == 0.0 and hc.soft_mask(la)[5] == 1.0
    assert hc.soft_mask(la)[1].item() == pytest.approx(1.2 / (1 + math.e) - 0.1)
    # 0.0 -> exactly 0.5 -> kept; -1e-3 -> just under 0.5 -> dropped
    assert hc.hard_mask(la).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    assert hc.hard_mask(la).tolist() == [oracle.hard_mask(a) for a in la.tolist()]


def test_expected_l0_by_hand():
    la = torch.tensor([-5.0, -1.6, 0.0, math.log(5.0), 3.0])
    expected = [oracle.expected_l0(a) for a in la.tolist()]
    assert torch.allclose(hc.expected_l0(la), torch.tensor(expected), atol=1e-6)
    # at la = 0: sigmoid((2/3) ln 11) = 11^(2/3) / (1 + 11^(2/3)) = 0.8317
    assert hc.expected_l0(torch.tensor(0.0)).item() == pytest.approx(11 ** (2 / 3) / (1 + 11 ** (2 / 3)), abs=1e-6)


def test_sample_matches_formula_with_same_noise():
    la = torch.tensor([0.3, -2.0, 1.5, 4.0])
    gen = torch.Generator().manual_seed(7)
    z = hc.sample_mask(la, generator=gen)
    u = torch.rand(4, generator=torch.Generator().manual_seed(7)).tolist()
    for value, a, ui in zip(z.tolist(), la.tolist(), u):
        assert abs(value - oracle.sample_mask(a, ui)) < 1e-5


def test_sample_is_differentiable_and_in_unit_interval():
    la = torch.zeros(1000, requires_grad=True)
    z = hc.sample_mask(la)
    assert (z >= 0).all() and (z <= 1).all()
    # a noticeable fraction is exactly 0 or 1 (the "hard" part of the distribution)
    assert ((z == 0) | (z == 1)).float().mean() > 0.1
    z.sum().backward()
    assert la.grad is not None and la.grad.abs().sum() > 0
