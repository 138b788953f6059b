"""Packed products and packed random streams (subprobe.masking.packed, subprobe.models.streams): every packed path
gives each run what its own MaskedLinear gives it alone -- values, input gradients and mask gradients -- and each
run's random numbers are the ones its generator gives it alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.masking.masked_linear import MaskedLinear
from subprobe.masking.packed import kind, packed_linear
from subprobe.masking.shared import SharedMask, SharedMaskedLinear
from subprobe.models import streams
from subprobe.models.dropout import dropout_mask, fast_dropout

OUT, IN = 24, 8
#: (block, layout) -> the packed kind on a 24 x 8 matrix (max 16 row groups)
SPECS = [
    ((24, 1), "strided", "columns"),  # neuron on a d x d matrix: one row group
    ((24, 4), "contiguous", "columns"),  # column groups
    ((6, 8), "strided", "rows"),  # a head's rows: one column group, 4 row groups
    ((1, 8), "contiguous", "rows"),  # FFN-in rows of head granularity: 24 row groups
    ((6, 1), "strided", "row_groups"),  # strided FFN-in of neuron: 4 row groups, each with its column mask
    ((6, 2), "contiguous", "row_groups"),
    ((1, 1), "strided", "blocks"),  # per weight
    ((2, 4), "contiguous", "row_groups"),  # 12 row groups
    ((1, 2), "strided", "blocks"),  # 24 row groups: past max_row_groups
]


def matrices(specs, seed=0):
    """One MaskedLinear per spec over the same frozen Linear, each with its own random mask logits (soft masks:
    deterministic, so solo and packed see the same mask)."""
    torch.manual_seed(seed)
    linear = nn.Linear(IN, OUT)
    out = []
    for block, layout, _ in specs:
        m = MaskedLinear(linear, block, layout)
        with torch.no_grad():
            m.log_alpha.normal_(0, 2)
        m.mask_mode = "soft"
        out.append(m)
    return linear, out


def solo_and_packed(runs: list[MaskedLinear], rows_per_run: list[int]):
    """Each run's output and gradients computed alone, and packed (the first run's module as host)."""
    torch.manual_seed(1)
    xs = [torch.randn(n, 5, IN) for n in rows_per_run]
    grads = [torch.randn(n, 5, OUT) for n in rows_per_run]
    solo = []
    for m, x, g in zip(runs, xs, grads):
        x = x.clone().requires_grad_(True)
        m.log_alpha.grad = None
        y = m(x)
        y.backward(g)
        solo.append((y.detach(), x.grad, m.log_alpha.grad.clone()))
        m.log_alpha.grad = None
    host = runs[0]
    host.pack_siblings = runs
    x = torch.cat(xs).requires_grad_(True)
    gens = tuple(torch.Generator() for _ in runs)
    with streams.use(streams.Streams(tuple(range(len(runs))), tuple(rows_per_run), gens)):
        y = host(x)
    y.backward(torch.cat(grads))
    host.pack_siblings = None
    packed = [(yk.detach(), xk, m.log_alpha.grad) for yk, xk, m in
              zip(y.split(rows_per_run), x.grad.split(rows_per_run), runs)]
    return solo, packed


def assert_close(solo, packed, atol=1e-5):
    for (y0, gx0, gm0), (y1, gx1, gm1) in zip(solo, packed):
        assert torch.allclose(y0, y1, atol=atol), (y0 - y1).abs().max()
        assert torch.allclose(gx0, gx1, atol=atol), (gx0 - gx1).abs().max()
        assert torch.allclose(gm0, gm1, atol=1e-4), (gm0 - gm1).abs().max()


def test_kinds_of_the_specs():
    _, runs = matrices(SPECS)
    assert [kind((OUT, IN), (m.block, m.layout, m.path)) for m in runs] == [k for _, _, k in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=[f"{b[0]}x{b[1]}-{lay}-{k}" for b, lay, k in SPECS])
def test_each_kind_packed_equals_each_run_alone(spec):
    _, runs = matrices([spec] * 3)
    solo, packed = solo_and_packed(runs, [2, 2, 2])
    assert_close(solo, packed)


def test_a_pack_of_every_kind_at_once_puts_each_run_back_in_its_place():
    _, runs = matrices(SPECS)
    solo, packed = solo_and_packed(runs, [2] * len(SPECS))
    assert_close(solo, packed)


def test_runs_with_different_row_counts_go_run_by_run():
    _, runs = matrices(SPECS[:3])
    solo, packed = solo_and_packed(runs, [1, 3, 2])
    assert_close(solo, packed, atol=0)  # each run through its own path: the same numbers


def test_a_pack_of_one_is_the_run_alone_to_the_bit():
    for spec in SPECS:
        _, runs = matrices([spec])
        solo, packed = solo_and_packed(runs, [3])
        for a, b in zip(solo[0], packed[0]):
            assert torch.equal(a, b)


def test_packed_product_without_bias_and_in_bf16():
    torch.manual_seed(0)
    w = torch.randn(OUT, IN)
    masks = [torch.rand(1, IN), torch.rand(4, 1)]
    specs = [((24, 1), "strided", "columns"), ((6, 8), "strided", "rows")]
    x = torch.randn(2, 3, IN)
    y = packed_linear(x, w, None, masks, specs)
    assert torch.allclose(y[0], x[0] @ (w * masks[0]).T, atol=1e-5)
    assert torch.allclose(y[1], x[1] @ (w * masks[1].repeat(6, IN)).T, atol=1e-5)
    y16 = packed_linear(x.bfloat16(), w.bfloat16(), None, masks, specs)
    assert y16.dtype == torch.bfloat16 and torch.allclose(y16.float(), y, atol=0.1)


def test_mask_samples_come_from_each_runs_generator():
    """Training masks: run k's sample is the one its generator draws (its solo run's, when the states agree)."""
    _, runs = matrices(SPECS[:2])
    for m in runs:
        m.mask_mode = None  # sample while training
        m.train()
    gens = (torch.Generator().manual_seed(5), torch.Generator().manual_seed(6))
    expected = [m.current_mask(torch.Generator().manual_seed(s)) for m, s in zip(runs, (5, 6))]
    host = runs[0]
    host.pack_siblings = runs
    seen = []
    real = MaskedLinear.current_mask

    def spy(self, generator=None):
        mask = real(self, generator)
        seen.append(mask)
        return mask

    MaskedLinear.current_mask = spy
    try:
        with streams.use(streams.Streams((0, 1), (2, 2), gens)):
            host(torch.randn(4, IN))
    finally:
        MaskedLinear.current_mask = real
        host.pack_siblings = None
    assert all(torch.equal(a, b) for a, b in zip(seen, expected))


def test_shared_masks_in_a_pack_use_the_samples_drawn_for_their_run():
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT)
    runs = []
    for _ in range(2):
        shared = SharedMask(4)
        with torch.no_grad():
            shared.log_alpha.normal_()
        runs.append(SharedMaskedLinear(linear, (6, IN), shared, "g"))  # Q rows of 4 heads of 6
    for m, seed in zip(runs, (1, 2)):
        m.train()
        m.shared.resample(True, torch.Generator().manual_seed(seed))
    x = torch.randn(4, IN)
    alone = [F.linear(x[2 * k : 2 * k + 2], linear.weight * m.shared.sample.repeat_interleave(6)[:, None],
                      linear.bias) for k, m in enumerate(runs)]
    runs[0].pack_siblings = runs
    with streams.use(streams.Streams((0, 1), (2, 2), (torch.Generator(), torch.Generator()))):
        y = runs[0](x)
    assert torch.allclose(y, torch.cat(alone), atol=1e-6)


# -- dropout -------------------------------------------------------------------------------------------------------


def test_dropout_from_a_runs_generator_is_what_the_default_generator_draws_from_the_same_state():
    x = torch.randn(3, 7, 16)
    torch.manual_seed(11)
    alone = fast_dropout(x, 0.25)
    torch.manual_seed(11)
    generator = streams.generator_now(torch.device("cpu"))
    torch.manual_seed(999)  # the default generator elsewhere: not used inside the streams
    with streams.use(streams.one(0, generator)):
        packed = fast_dropout(x, 0.25)
    assert torch.equal(alone, packed)


def test_packed_dropout_draws_each_runs_rows_from_its_generator_at_its_own_length():
    x = torch.randn(5, 6, 4)  # run 0: 2 sentences of 4 subwords (padded to 6), run 1: 3 sentences of 6
    g0, g1 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    with streams.use(streams.Streams((0, 1), (2, 3), (g0, g1), (4, 6))):
        y = fast_dropout(x, 0.5)
    m0 = dropout_mask((2, 4, 4), 0.5, torch.float32, torch.Generator().manual_seed(1))
    m1 = dropout_mask((3, 6, 4), 0.5, torch.float32, torch.Generator().manual_seed(2))
    assert torch.equal(y[:2, :4], x[:2, :4] * m0) and torch.equal(y[:2, 4:], torch.zeros(2, 2, 4))
    assert torch.equal(y[2:], x[2:] * m1)
    weights = torch.rand(5, 2, 6, 6)  # attention weights: both sequence dimensions at the run's own length
    g0.manual_seed(3)
    with streams.use(streams.Streams((0, 1), (2, 3), (g0, g1), (4, 6))):
        out = fast_dropout(weights, 0.5)
    m = dropout_mask((2, 2, 4, 4), 0.5, torch.float32, torch.Generator().manual_seed(3))
    assert torch.equal(out[:2, :, :4, :4], weights[:2, :, :4, :4] * m)


def test_a_model_that_does_not_keep_sentences_along_the_first_dimension_is_refused():
    with streams.use(streams.Streams((0, 1), (2, 2), (torch.Generator(), torch.Generator()))):
        with pytest.raises(ValueError, match="first dimension"):
            fast_dropout(torch.randn(1, 9, 4), 0.1)


def test_checkpointed_generator_state_continues_either_kind_of_run():
    from subprobe.training.checkpoint import rng_state, set_rng_state

    generator = torch.Generator().manual_seed(7)
    torch.rand(5, generator=generator)  # somewhere along its stream
    state = rng_state(generator)
    following = torch.rand(3, generator=generator)
    other = torch.Generator().manual_seed(0)
    set_rng_state(state, other)  # a packed run resumes its stream
    assert torch.equal(torch.rand(3, generator=other), following)
    set_rng_state(state)  # a run alone resumes a packed run's checkpoint from the default generator
    assert torch.equal(torch.rand(3), following)
