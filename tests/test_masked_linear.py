"""Every fast path of MaskedLinear equals the materialised reference F.linear(x, W * M), values and gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.masking.layouts import expand_mask
from subprobe.masking.masked_linear import MaskedLinear, masked_linear
from tests import oracle

CASES = [
    # (out, in, block) -> path chosen for max_row_groups=16
    (12, 8, (12, 1)),  # one row group, per column: columns
    (12, 8, (12, 4)),  # one row group, column groups: columns
    (24, 8, (6, 1)),  # 4 row groups: row_groups
    (24, 8, (6, 2)),  # row groups with column groups
    (24, 8, (1, 1)),  # per weight: materialise
    (24, 8, (2, 4)),  # 12 row groups: row_groups
]


@pytest.mark.parametrize("layout", ["strided", "contiguous"])
@pytest.mark.parametrize("out_f,in_f,block", CASES)
def test_paths_match_materialised_reference(layout, out_f, in_f, block):
    torch.manual_seed(0)
    linear = nn.Linear(in_f, out_f)
    module = MaskedLinear(linear, block, layout)
    with torch.no_grad():
        module.log_alpha.normal_()
    module.mask_mode = "soft"
    x = torch.randn(3, 5, in_f, requires_grad=True)

    y = module(x)
    ref_la = module.log_alpha.detach().clone().requires_grad_(True)
    ref_mask = oracle.soft_mask_tensor(ref_la)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = F.linear(x_ref, linear.weight.detach() * expand_mask(ref_mask, block, layout), linear.bias.detach())
    assert torch.allclose(y, y_ref, atol=1e-5)

    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert torch.allclose(module.log_alpha.grad, ref_la.grad, atol=1e-4)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert ref_mask.shape == module.log_alpha.shape


def test_path_selection():
    lin = nn.Linear(8, 24)
    assert MaskedLinear(lin, (24, 1), "strided").path == "columns"
    assert MaskedLinear(lin, (6, 1), "strided").path == "row_groups"
    assert MaskedLinear(lin, (1, 1), "strided").path == "materialise"
    assert MaskedLinear(lin, (6, 1), "strided", max_row_groups=2).path == "materialise"


@pytest.mark.parametrize("path", ["columns", "row_groups", "materialise"])
def test_explicit_paths_agree_on_column_masks(path):
    torch.manual_seed(1)
    w, b = torch.randn(16, 8), torch.randn(16)
    x = torch.randn(4, 8)
    mask = torch.rand(1, 8)
    ref = F.linear(x, w * expand_mask(mask, (16, 1), "strided"), b)
    assert torch.allclose(masked_linear(x, w, b, mask, (16, 1), "strided", path), ref, atol=1e-5)


def test_weights_are_frozen_and_only_mask_trains():
    module = MaskedLinear(nn.Linear(4, 4), (4, 1), "strided")
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable == ["log_alpha"]


def test_mask_modes():
    module = MaskedLinear(nn.Linear(4, 4), (1, 1), "strided")
    with torch.no_grad():
        module.log_alpha.fill_(-5.0)
    x = torch.randn(2, 4)
    module.mask_mode = "hard"
    assert torch.allclose(module(x), module.bias.expand(2, 4))  # everything pruned
    module.mask_mode = "none"
    assert torch.allclose(module(x), F.linear(x, module.weight, module.bias))


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_hard_and_soft_modes_use_their_own_mask(mode):
    torch.manual_seed(2)
    module = MaskedLinear(nn.Linear(8, 12), (3, 2), "strided")
    with torch.no_grad():  # values around the threshold: soft masks in (0, 1), hard masks a mix of 0 and 1
        module.log_alpha.copy_(torch.linspace(-1.5, 1.5, module.log_alpha.numel()).reshape(module.log_alpha.shape))
    module.mask_mode = mode
    la = module.log_alpha.detach()
    mask = oracle.hard_mask_tensor(la) if mode == "hard" else oracle.soft_mask_tensor(la)
    assert 0 < float(mask.mean()) < 1 and (mode == "hard") == bool(((mask == 0) | (mask == 1)).all())
    x = torch.randn(5, 8)
    expected = F.linear(x, module.weight * expand_mask(mask, (3, 2), "strided"), module.bias)
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-6)
