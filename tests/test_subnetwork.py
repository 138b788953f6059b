"""The L0 penalty in both normalisations, mask initialisation, and the Subnetwork's counts, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError, SubprobeError
from subprobe.heads.tagger import TaggerHead
from subprobe.masking.masked_linear import MaskedLinear
from subprobe.masking.subnetwork import MaskEntry, Subnetwork, l0_penalty
from subprobe.models.loading import load_encoder
from subprobe.probes.registry import build_probe
from subprobe.resolve import resolve
from tests import oracle

#: log-alpha at which P(z > 0) = 1/2: la = beta * log(-gamma / zeta) = -(2/3) ln 11
HALF = -(2 / 3) * math.log(11)


def _masked(out_f: int, in_f: int, block: tuple[int, int], values: list[float]) -> MaskedLinear:
    module = MaskedLinear(nn.Linear(in_f, out_f), block, "strided")
    with torch.no_grad():
        module.log_alpha.copy_(torch.tensor(values).reshape(module.log_alpha.shape))
    return module


def _two_sizes() -> list[MaskedLinear]:
    # 4 units with P(z > 0) = 1, 1/2, 1/2, 0 (mean 1/2); 16 units at 1/4 (mean 1/4)
    small = _masked(8, 4, (8, 1), [60.0, HALF, HALF, -60.0])
    large = _masked(8, 8, (2, 2), [HALF - math.log(3)] * 16)
    return [small, large]


def test_penalty_normalisations_by_hand() -> None:
    masked = _two_sizes()
    assert l0_penalty(masked, "matrix-mean").item() == pytest.approx((1 / 2 + 1 / 4) / 2, abs=1e-6)
    assert l0_penalty(masked, "param-mean").item() == pytest.approx((2 + 16 / 4) / 20, abs=1e-6)
    assert l0_penalty(masked).item() == pytest.approx(0.375, abs=1e-6)  # matrix-mean is the default


@pytest.mark.parametrize("mode", ["matrix-mean", "param-mean"])
def test_penalty_matches_the_oracle_on_random_logits(mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    masked = [_masked(o, i, b, (torch.randn(o // b[0] * (i // b[1]), generator=gen) * 3).tolist())
              for o, i, b in ((8, 4, (8, 1)), (16, 8, (1, 1)), (8, 8, (4, 2)))]
    expected = oracle.l0_penalty([m.log_alpha.detach() for m in masked], mode)
    penalty = l0_penalty(masked, mode)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    penalty.backward()
    assert all(m.log_alpha.grad is not None and (m.log_alpha.grad > 0).all() for m in masked)


def test_unknown_penalty_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--penalty"):
        l0_penalty(_two_sizes(), "weight-mean")


def _subnetwork_probe(tiny_bert, **values):
    cfg = resolve(ProbeConfig(model=str(tiny_bert), probe="subnetwork", precision="fp32", **values))
    encoder, _ = load_encoder(str(tiny_bert))
    return build_probe(cfg, encoder, TaggerHead(32, 5))


def test_masks_start_at_log_5_and_the_probe_uses_the_configured_penalty(tiny_bert) -> None:
    matrix = _subnetwork_probe(tiny_bert)
    assert len(matrix.masked) == 12
    for m in matrix.masked:
        assert torch.equal(m.log_alpha.detach(), torch.full_like(m.log_alpha, oracle.INIT_LOG_ALPHA))
    assert oracle.soft_mask(oracle.INIT_LOG_ALPHA) == pytest.approx(0.9)
    param = _subnetwork_probe(tiny_bert, penalty="param-mean")
    for probe in (matrix, param):  # one constant per matrix; matrices differ in size (32 or 64 units)
        with torch.no_grad():
            for i, m in enumerate(probe.masked):
                m.log_alpha.fill_(-2.0 + 0.5 * i)
    logits = [m.log_alpha.detach() for m in matrix.masked]
    expected = {mode: oracle.l0_penalty(logits, mode) for mode in ("matrix-mean", "param-mean")}
    assert abs(expected["matrix-mean"] - expected["param-mean"]) > 1e-3
    assert matrix.penalty().item() == pytest.approx(expected["matrix-mean"], rel=1e-5)
    assert param.penalty().item() == pytest.approx(expected["param-mean"], rel=1e-5)


# --- Subnetwork counts -------------------------------------------------------------------------

K, D = 3.0, -3.0  # a kept and a dropped mask unit


def _entry(name, role, layer, shape, block, log_alpha) -> MaskEntry:
    return MaskEntry(name, role, layer, shape, block, torch.tensor(log_alpha))


def _hand_built(l1_q=((K, D, K, D), (D, D, D, K), (D, D, D, D), (D, D, D, D))) -> Subnetwork:
    return Subnetwork((
        _entry("l0.q", "q", 0, (4, 4), (4, 1), [[K, K, D, D]]),  # 2 units x 4 weights = 8 of 16
        _entry("l0.ffn_in", "ffn_in", 0, (8, 4), (4, 1), [[K, D, K, D], [D, D, K, D]]),  # 3 x 4 = 12 of 32
        _entry("l1.q", "q", 1, (4, 4), (1, 1), [list(r) for r in l1_q]),  # 3 x 1 = 3 of 16
        _entry("l1.ffn_in", "ffn_in", 1, (8, 4), (8, 4), [[K]]),  # 1 x 32 = 32 of 32
    ), "strided", "mixed")


def test_counts_density_and_density_by_layer_and_role_by_hand() -> None:
    sub = _hand_built()
    assert sub.num_mask_params == 4 + 8 + 16 + 1
    assert sub.num_masked_weights == 16 + 32 + 16 + 32
    assert sub.kept_weights() == 8 + 12 + 3 + 32 == oracle.kept_weights(sub.entries)
    assert sub.density() == pytest.approx(55 / 96)
    assert sub.density_by("layer") == pytest.approx({"0": 20 / 48, "1": 35 / 48})
    assert sub.density_by("role") == pytest.approx({"q": 11 / 32, "ffn_in": 44 / 64})
    for key in ("layer", "role"):
        assert sub.density_by(key) == pytest.approx(oracle.density_by(sub.entries, key))


def test_density_counts_hard_masks_not_soft_values() -> None:
    # soft values 0.9 and 0.55 are both kept whole; 0.45 is dropped whole
    la = [math.log(5.0), math.log(0.65 / 0.55), math.log(0.55 / 0.65)]
    sub = Subnetwork((_entry("m", "v", 0, (2, 3), (2, 1), [la]),), "strided", "neuron")
    assert [oracle.soft_mask(a) for a in la] == pytest.approx([0.9, 0.55, 0.45])
    assert sub.kept_weights() == 4 and sub.density() == pytest.approx(4 / 6)


def test_agreement_of_two_different_subnetworks_by_hand() -> None:
    a = _hand_built()
    # three units differ (two in l1.q, one flipped off, one on); a fourth differs in value only (both kept)
    b = _hand_built(l1_q=((0.5, D, D, D), (D, K, D, K), (D, D, D, D), (D, D, D, K)))
    assert a.agreement(b) == pytest.approx(26 / 29)
    assert b.agreement(a) == pytest.approx(26 / 29)
    assert a.agreement(b) == pytest.approx(oracle.agreement(a.entries, b.entries))
    assert a.agreement(a) == 1.0


def test_agreement_refuses_different_layouts_of_masks() -> None:
    a = _hand_built()
    other = Subnetwork((_entry("l0.q", "q", 0, (4, 4), (1, 1), [[K] * 4] * 4),), "strided", "weight")
    with pytest.raises(SubprobeError, match="l0.q"):
        a.agreement(other)
