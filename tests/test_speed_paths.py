"""The speed paths compute what the plain paths compute: masked linear, mask sampling, dropout, attention."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.masking import hard_concrete as hc
from subprobe.masking.hard_concrete import sample_mask
from subprobe.masking.layouts import expand_mask
from subprobe.masking.masked_linear import MaskedLinear, masked_linear
from subprobe.models.attention import ATTENTION_CHOICE, FAST_EAGER, attention_for, use_fast_eager
from subprobe.models.dropout import FastDropout, fast_dropout, use_fast_dropout
from subprobe.models.loading import load_encoder
from subprobe.probes.base import EncoderFeatures

CASES = [  # (out, in, block): columns (R == 1) and row groups, with few and many tokens
    (12, 8, (12, 1)),
    (12, 8, (12, 2)),
    (24, 8, (6, 1)),
    (24, 8, (12, 4)),
]


@pytest.mark.parametrize("layout", ["strided", "contiguous"])
@pytest.mark.parametrize("out_f,in_f,block", CASES)
@pytest.mark.parametrize("tokens", [3, 40])
@pytest.mark.parametrize("x_grad", [True, False])
def test_column_paths_match_reference_values_and_gradients(layout, out_f, in_f, block, tokens, x_grad):
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), torch.randn(out_f)
    rows, cols = block
    mask = torch.rand(out_f // rows, in_f // cols).requires_grad_(True)
    mask_ref = mask.detach().clone().requires_grad_(True)
    x = torch.randn(2, tokens, in_f).requires_grad_(x_grad)
    x_ref = x.detach().clone().requires_grad_(x_grad)
    path = "columns" if out_f // rows == 1 else "row_groups"
    y = masked_linear(x, w, b, mask, block, layout, path)
    y_ref = F.linear(x_ref, w * expand_mask(mask_ref, block, layout), b)
    assert torch.allclose(y, y_ref, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert torch.allclose(mask.grad, mask_ref.grad, atol=1e-4)
    if x_grad:
        assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)


@pytest.mark.parametrize("tokens", [8, 200])
def test_bf16_column_path_is_close_to_fp32(tokens):
    torch.manual_seed(0)
    linear = nn.Linear(64, 256)
    module = MaskedLinear(linear, (64, 1), "strided")  # 4 row groups
    module.mask_mode = "soft"
    with torch.no_grad():
        module.log_alpha.normal_()
    x = torch.randn(tokens, 64)
    y32 = module(x)
    y32.sum().backward()
    g32 = module.log_alpha.grad.clone()
    module.log_alpha.grad = None
    module.to(torch.bfloat16)
    module.log_alpha.data = module.log_alpha.data.float()  # mask logits stay fp32
    y16 = module(x.bfloat16())
    y16.float().sum().backward()
    assert module.log_alpha.grad.dtype == torch.float32
    assert (y16.float() - y32).abs().max() < 0.05 * y32.abs().max()
    assert (module.log_alpha.grad - g32).abs().max() < 0.05 * g32.abs().max()


def test_sample_mask_is_the_hard_concrete_sample():
    log_alpha = (torch.randn(4, 50, dtype=torch.float64) * 3).requires_grad_(True)
    ref = log_alpha.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    a = sample_mask(log_alpha)
    torch.manual_seed(3)
    b = hc.reference_sample(ref)
    assert torch.allclose(a, b, atol=1e-12)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    assert torch.allclose(log_alpha.grad, ref.grad, atol=1e-12)
    assert ((a == 0) | (a == 1)).any()  # the clamped region is reached (and its gradient is zero)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_statistics_reproducibility_and_gradient(dtype):
    x = torch.ones(200_000, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    y = fast_dropout(x, 0.1)
    torch.manual_seed(0)
    again = fast_dropout(x, 0.1)
    assert torch.equal(y, again)
    assert abs(float((y.detach() == 0).float().mean()) - 0.1) < 0.005
    kept = y.detach()[y != 0]
    assert torch.all(kept == kept[0]) and abs(float(kept[0]) - 1 / 0.9) < 0.01
    assert abs(float(y.detach().float().mean()) - 1.0) < 0.01
    y.backward(torch.full_like(y, 2.0))
    assert torch.equal(x.grad, 2.0 * y.detach())
    assert fast_dropout(x, 0.1, training=False) is x
    assert not torch.equal(fast_dropout(x, 0.1), y)  # a fresh draw each call


def test_use_fast_dropout_replaces_modules_and_keeps_their_state():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.3)))
    model[2].eval()
    assert use_fast_dropout(model) == 2
    assert isinstance(model[1], FastDropout) and model[1].p == 0.2 and model[1].training
    assert isinstance(model[2][0], FastDropout) and model[2][0].p == 0.3 and not model[2][0].training
    assert use_fast_dropout(model) == 0


def test_attention_choice_table():
    assert attention_for("cpu", "bf16") == ATTENTION_CHOICE[("cpu", "bf16")]
    assert attention_for("cpu", None) == ATTENTION_CHOICE[("cpu", "fp32")]
    assert attention_for("xpu", "fp32") == "eager"


def test_fast_eager_attention_matches_eager(tiny_bert):
    reference, tokenizer = load_encoder(str(tiny_bert), attn_implementation="eager")
    fast, _ = load_encoder(str(tiny_bert), attn_implementation="eager")
    assert use_fast_eager(fast) and fast.config._attn_implementation == FAST_EAGER
    assert not use_fast_eager(fast)  # only eager models are switched
    enc = tokenizer(["the dog runs", "a big red house in new york ."], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = reference(**enc).last_hidden_state
        b = fast(**enc).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
    fast.train()  # with dropout the fast path still runs and differs from eval
    with torch.no_grad():
        c = fast(**enc).last_hidden_state
    assert c.shape == a.shape and not torch.allclose(c, b)


def test_encoder_features_fast_kernels_do_not_change_eval_outputs(tiny_bert):
    from subprobe.data.batching import collate, encode_dataset
    from subprobe.data.records import Sentence

    slow_enc, tokenizer = load_encoder(str(tiny_bert))
    fast_enc, _ = load_encoder(str(tiny_bert))
    sentences = [Sentence(words=["the", "dog", "runs"]), Sentence(words=["mary", "saw", "it"])]
    ds = encode_dataset("x", sentences, tokenizer, 64)
    batch = collate(ds.encoded, [0, 1], "last", 0)
    slow = EncoderFeatures(slow_enc, "last", fast_kernels=False).eval()
    fast = EncoderFeatures(fast_enc, "last").eval()
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    with torch.no_grad():
        assert torch.allclose(slow(batch), fast(batch), atol=1e-5)
