"""The one hard-mask counting helper: live masked modules and saved mask entries count the same weights."""

import torch
from torch import nn

from subprobe.masking import counting
from subprobe.masking.masked_linear import MaskedLinear
from subprobe.masking.subnetwork import MaskEntry, Subnetwork

KEEP, DROP = 3.0, -3.0  # hard mask 1 and 0


def _masked(layout: str) -> MaskedLinear:
    m = MaskedLinear(nn.Linear(8, 6), (2, 4), layout, name="m", role="q", layer=0)  # mask (3, 2), 8 weights per unit
    with torch.no_grad():
        m.log_alpha.copy_(torch.tensor([[KEEP, DROP], [DROP, DROP], [KEEP, KEEP]]))
    return m


def test_counts_by_hand():
    for layout in ("strided", "contiguous"):
        m = _masked(layout)
        assert counting.kept_units(m.log_alpha) == 3
        assert counting.kept_weights(m.log_alpha, m.block) == 3 * 8
        assert counting.masked_weights(m.log_alpha, m.block) == 48
        assert counting.count([m]) == (24, 48) and counting.density([m]) == 0.5
        weight_mask = counting.kept_weight_mask(m.log_alpha, m.block, layout)
        assert weight_mask.shape == (6, 8) and int(weight_mask.sum()) == 24
        sub = Subnetwork.from_modules([m], "2,4")
        assert sub.kept_weights() == 24 and sub.density() == 0.5 and sub.num_masked_weights == 48


def test_entries_grouped_by_role_and_layer():
    entries = [
        MaskEntry("q", "q", 0, (8, 8), (4, 1), torch.tensor([[KEEP] * 8, [DROP] * 8])),  # 8 units x 4 = 32 of 64
        MaskEntry("k", "k", 0, (4, 8), (1, 1), torch.tensor([[KEEP] * 8] * 1 + [[DROP] * 8] * 3)),  # 8 of 32
        MaskEntry("o", "o", 1, (8, 8), (8, 8), torch.tensor([[KEEP]])),  # the whole matrix: 64 of 64
    ]
    assert counting.count_by(entries, lambda e: e.layer) == {0: (40, 96), 1: (64, 64)}
    sub = Subnetwork(tuple(entries), "strided", "mixed")
    assert sub.density_by("role") == {"q": 0.5, "k": 0.25, "o": 1.0}
    assert sub.density_by("layer") == {"0": 40 / 96, "1": 1.0}
    assert sub.kept_weights() == 104 and sub.density() == 104 / 160


def test_bf16_logits_count_exactly():
    log_alpha = torch.full((1, 257), KEEP, dtype=torch.bfloat16)  # a bf16 sum would round 257 to 256
    assert counting.kept_units(log_alpha) == 257
