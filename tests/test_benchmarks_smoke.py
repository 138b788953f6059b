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


def bench(tiny_bert, setup):
    """What ``benchmarks/train_speed.py``'s parts read of its Bench, on the tiny model (``--smoke`` settings)."""
    from types import SimpleNamespace

    task, tokenizer, train, dev, vocabs = setup
    return SimpleNamespace(smoke=True, quick=False, default_precision="fp32", fresh=lambda: encoder(tiny_bert),
                           task=task, train_set=train, vocabs=vocabs, loaded=SimpleNamespace(pad_id=0),
                           mcfg=encoder(tiny_bert).config, log=lambda *_: None)


def test_packed_speed_parts_run(tiny_bert, setup):
    from benchmarks import packed_speed as ps

    b = bench(tiny_bert, setup)
    out = ps.pack_speed(b)
    assert set(out["throughput_vs_solo"]) == {1, 2} and out["throughput_vs_solo"][2] > 0
    assert out["lambdas"] == {"pack1": [1.0], "pack2": [1.0, 2.0]}
    assert out["words_per_s_per_run"][2] == pytest.approx(out["rounds"]["pack2"]["words_per_s"] / 2)
    assert "K=2 " in ps.describe(out)
    configs = ps.pack_configs(lambda **kw: ts.probe_config("fp32", **kw), 3)
    assert [c.lambda_max for c in configs] == [1.0, 2.0, 5.0]
    runner = ps.PackedRunner(b.fresh(), b.task, b.train_set, b.vocabs, 0, configs)
    words, lengths = runner.step()
    # three runs of one seed read the same batch: three times its words and lengths
    assert len(lengths) == 3 * min(32, len(b.train_set.encoded)) and words % 3 == 0
    assert all(loop.progress.step == 1 for loop in runner.loops)
    runner.close()
    first = ts.mlp_runners(b.fresh(), b.task, b.train_set, b.vocabs, 0, "fp32", rank=2)["cached"]
    first.model.features.fill(b.train_set, "last", 0)
    assert ps.packed_mlp_seconds(b, b.train_set, [1, 2], first.model.features.cache, 1, 0.0) > 0


def test_roofline_reads_the_step_products_and_rates_them(tiny_bert, setup):
    from benchmarks import roofline as rl

    assert rl.gemm_of("aten::addmm", [[7], [5, 3], [3, 4]]) == rl.Gemm("aten::addmm", 1, 5, 3, 4)
    assert rl.gemm_of("aten::bmm", [[2, 5, 3], [2, 3, 4]]).flops == 2 * 2 * 5 * 3 * 4
    assert rl.gemm_of("aten::mm", []) is None
    b = bench(tiny_bert, setup)
    runner = ts.SubprobeRunner(b.fresh(), b.task, b.train_set, b.vocabs, 0, ts.probe_config("fp32"))
    runner.step()
    out = rl.roofline({"solo": runner.step}, {"fp32": 1.0, "bf16": 1.0}, reps=1)
    solo = out["solo"]
    assert solo["products_per_step"] >= 12 and solo["gflop_per_step"] > 0  # 6 matrices x 2 layers at least
    for row in solo["shapes"]:
        assert row["fp32"]["gflops"] > 0 and row["fp32"]["fraction_of_peak"] == row["fp32"]["gflops"]
    assert rl.compile_lever(b) == {"skipped": "--smoke (compiling takes minutes)"}


@pytest.mark.slow
def test_train_speed_smoke_end_to_end_on_the_tiny_model(tiny_bert, tiny_data_root, tmp_path, capsys):
    """The whole benchmark with --smoke (one step per variant) on the tiny model and data: every figure of the issue
    is in its JSON and its table (the numbers mean nothing here)."""
    import json

    out = tmp_path / "speed.json"
    assert ts.main(["--smoke", "--data-dir", str(tiny_data_root), "--model", str(tiny_bert), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("step_peak_fraction", "pack_throughput_vs_solo", "mlp_packed_speedup", "roofline", "levers",
                "dep_vs_upos", "ner_vs_upos", "mlp_cache_speedup"):
        assert key in res, key
    text = capsys.readouterr().out
    assert "load" in text and "roofline solo:" in text and "K=2" in text and "torch.compile: skipped" in text


@pytest.mark.slow
def test_pack_wall_times_reproduce_serial_and_packed_and_compares_results(tiny_bert, tiny_data_root, tmp_path,
                                                                          capsys):
    """benchmarks/pack_wall.py on the tiny model and data (figure1, one epoch): both variants finish, the ratio is
    printed with the load, and the packed store's results match the serial store's point by point. (paper-8 does not
    scale to the tiny model's width: that point fails in both, and the benchmark says so and exits 1.)"""
    import json

    from benchmarks import pack_wall

    out = tmp_path / "wall"
    assert pack_wall.main(["--variants", "serial,pack", "--pack", "4", "--out", str(out), "--",
                           "--model", str(tiny_bert), "--data-dir", str(tiny_data_root), "--epochs", "1"]) == 1
    res = json.loads((out / "pack_wall.json").read_text())
    assert set(res["best"]) == {"serial", "pack"} and res["ratios"]["serial_over_pack"] > 0
    same = res["results_vs_serial"]["pack"]
    assert same["common"] == same["points"] == res["results_vs_serial"]["serial"]["points"] > 1
    assert all(v < 1e-4 for v in same["largest_difference"].values()) and same["largest_difference"]
    text = capsys.readouterr().out
    assert "serial / pack" in text and "load" in text and "some points FAILED" in text
    with pytest.raises(SystemExit):
        pack_wall.main(["--out", str(out)])


def test_gpu_check_packed_step_runs_on_a_tiny_config():
    """The packed SP step of benchmarks/gpu_check.py (K runs on one host model) trains every run's own masks."""
    from transformers import CONFIG_MAPPING

    from benchmarks import gpu_check
    from subprobe.masking.masked_linear import MaskedLinear

    config = CONFIG_MAPPING["bert"](hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    vocab_size=64)
    solo_masks = gpu_check.build(config, torch.device("cpu"), "neuron", checkpointing=False)[3]
    config, step, _, n_masks = gpu_check.build_packed(config, torch.device("cpu"), "neuron", 3)
    assert n_masks == 3 * solo_masks
    host = next(c for c in step.__closure__ if isinstance(c.cell_contents, torch.nn.Module)).cell_contents
    linear = next(m for m in host.modules() if isinstance(m, MaskedLinear))
    before = [s.log_alpha.detach().clone() for s in linear.pack_siblings]
    step(torch.randint(5, 64, (2, 8)), torch.randint(0, 17, (2, 8)))
    after = [s.log_alpha.detach() for s in linear.pack_siblings]
    assert all(not torch.equal(b, a) for b, a in zip(before, after))  # each run's mask took its own step
    grads = [s.log_alpha.grad for s in linear.pack_siblings]
    assert not torch.equal(grads[0], grads[1])  # own noise and head: each run's mask gradient is its own
