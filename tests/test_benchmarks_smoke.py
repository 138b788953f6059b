"""The benchmark code runs: naive baseline and subprobe steps on a tiny random BERT (a few seconds)."""

import math

import pytest
import torch

from benchmarks import train_speed as ts
from benchmarks.naive_baseline import NaiveMaskedLinear
from subprobe.masking.layouts import expand_mask
from subprobe.models.loading import load_encoder
from tests import oracle
from tests.conftest import tiny_upos_splits


@pytest.fixture(scope="module")
def setup(tiny_bert, tiny_ud):
    torch.manual_seed(0)
    task, _, tokenizer, splits, vocabs = tiny_upos_splits(tiny_bert, tiny_ud)
    return task, tokenizer, splits["train"], splits["dev"], vocabs


def encoder(tiny_bert, attn="eager"):
    return load_encoder(str(tiny_bert), attn_implementation=attn)[0]


def test_naive_baseline_trains_and_evaluates(tiny_bert, setup):
    task, tokenizer, train, dev, vocabs = setup
    runner = ts.NaiveRunner(encoder(tiny_bert), tokenizer, train, len(vocabs["upos"]))
    before = [m.mask_scores.detach().clone() for m in runner.model.masked]
    for _ in range(2):
        words, lengths = runner.step()
        assert words > 0 and len(lengths) == min(32, len(train.encoded)) and min(lengths) >= 3
    assert len(runner.model.masked) == 12  # 6 matrices x 2 layers
    assert any(not torch.equal(b, m.mask_scores) for b, m in zip(before, runner.model.masked))
    assert 0.0 <= runner.evaluate(dev) <= 1.0
    assert all(math.isfinite(x) for x in runner.trainer.losses)


def test_naive_masked_linear_is_the_strided_materialised_product():
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 24)
    module = NaiveMaskedLinear(linear, 6, 2).eval()
    with torch.no_grad():
        module.mask_scores.normal_()
    mask = oracle.soft_mask_tensor(module.mask_scores)
    x = torch.randn(5, 8)
    reference = torch.nn.functional.linear(x, linear.weight * expand_mask(mask, (6, 2), "strided"), linear.bias)
    assert torch.allclose(module(x), reference, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_subprobe_step_and_eval(tiny_bert, setup, precision):
    task, tokenizer, train, dev, vocabs = setup
    runner = ts.SubprobeRunner(encoder(tiny_bert), task, train, vocabs, 0, ts.probe_config(precision))
    for _ in range(2):
        words, lengths = runner.step()
        assert words > 0 and lengths.sum() > 0
    assert math.isfinite(float(runner.running_loss))
    assert 0.0 <= runner.evaluate(dev, vocabs)["accuracy"] <= 1.0


def test_interleaving_flops_peaks_and_mlp_sweep(tiny_bert, setup):
    task, tokenizer, train, dev, vocabs = setup
    config = encoder(tiny_bert).config
    variants = {
        "a": ts.SubprobeRunner(encoder(tiny_bert), task, train, vocabs, 0, ts.probe_config("fp32")).step,
        "b": ts.SubprobeRunner(encoder(tiny_bert, "sdpa"), task, train, vocabs, 0, ts.probe_config("bf16")).step,
    }
    stats = ts.interleaved(variants, rounds=2, window=0.0, model_config=config, log=lambda *_: None)
    assert set(stats) == {"a", "b"} and all(s["steps"] == 2 and s["words_per_s"] > 0 for s in stats.values())
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    assert ts.sp_flops([10], config) == 4 * (4 * d * d + 2 * d * f) * layers * 10 + 12 * d * layers * 100
    assert ts.matmul_peak(torch.float32, n=64, reps=1) > 0
    runners = ts.mlp_runners(encoder(tiny_bert), task, train, vocabs, 0, "bf16", rank=2)
    runners["cached"].model.features.fill(train, "last", 0)
    for runner in runners.values():
        for _ in range(2):
            assert runner.step()[0] > 0


def test_mst_speed_benchmark_runs(capsys):
    from benchmarks import mst_speed

    assert mst_speed.main(["--words", "5", "--sentences", "2"]) == 0
    assert "ms per sentence" in capsys.readouterr().out


def test_gpu_check_without_cuda_says_so_in_one_line(capsys):
    from benchmarks import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: benchmarks/gpu_check.py measures instead")
    assert gpu_check.main([]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("gpu_check: no CUDA GPU here")


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_gpu_check_step_runs_on_a_tiny_config(model_type):
    from transformers import CONFIG_MAPPING

    from benchmarks import gpu_check

    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
    if model_type == "llama":
        sizes["num_key_value_heads"] = 2
    config = CONFIG_MAPPING[model_type](**sizes)
    config, step, n_params, n_masks = gpu_check.build(config, torch.device("cpu"), "weight", checkpointing=True)
    ids = torch.randint(5, 64, (2, 8))
    step(ids, torch.randint(0, 17, (2, 8)))
    blocks = 2 * (4 * 32 * 32 + 2 * 32 * 64) if model_type == "bert" else 2 * (2 * 32 * 32 + 2 * 16 * 32 + 3 * 32 * 64)
    assert n_masks == blocks
    assert gpu_check.step_flops(config, 1, 1) == 4 * blocks + 12 * 32 * 2
