"""--device, precision per device, seeding, gradient checkpointing; CUDA-only tests are marked ``gpu``."""

from __future__ import annotations

import json

import pytest
import torch

from subprobe.cli import main
from subprobe.device import check_device_spec, effective_precision, resolve_device, seed_everything
from subprobe.errors import ConfigError
from tests.conftest import probe_argv

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:-1", ""])
def test_malformed_device_is_one_line(spec):
    with pytest.raises(ConfigError, match="--device .* is not known; use auto, cpu, cuda, cuda:N"):
        check_device_spec(spec)


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")


@pytest.mark.skipif(CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_fails_before_writing(tiny_bert, tiny_ud, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--device", "cuda:1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda:1: CUDA is not available" in err and "--device cpu" in err
    assert not out.exists()


def test_profile_bf16_falls_back_where_unsupported_and_explicit_bf16_is_refused():
    precision, note = effective_precision("bf16", torch.device("meta"), explicit=False)
    assert precision == "fp32" and "has no native bf16" in note
    with pytest.raises(ConfigError, match="--precision bf16 is not supported on meta"):
        effective_precision("bf16", torch.device("meta"), explicit=True)
    assert effective_precision("fp32", torch.device("meta"), explicit=True) == ("fp32", None)


def test_bf16_is_chosen_only_where_it_is_native(monkeypatch):
    """An AVX2-only CPU and a V100 (compute capability 7.0) emulate bf16: the profile's bf16 becomes fp32 there, an
    explicit --precision bf16 runs with a note; AMX / AVX512-BF16 CPUs and Ampere GPUs keep bf16."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "AMD EPYC", "avx2": True})
    precision, note = effective_precision("bf16", cpu, explicit=False)
    assert precision == "fp32" and note == "cpu (AMD EPYC) has no native bf16: the profile's precision becomes fp32"
    precision, note = effective_precision("bf16", cpu, explicit=True)
    assert precision == "bf16" and "emulated, slower than fp32" in note
    for flag in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda flag=flag: {flag: True})
        assert effective_precision("bf16", cpu, explicit=False) == ("bf16", None)

    class NoContext:
        def __init__(self, *args) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args) -> None:
            return None

    capability = [(7, 0)]
    monkeypatch.setattr(torch.cuda, "device", NoContext)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla V100-SXM2-16GB")
    gpu = torch.device("cuda", 0)
    precision, note = effective_precision("bf16", gpu, explicit=False)
    assert precision == "fp32" and note.startswith("cuda:0 (Tesla V100-SXM2-16GB) has no native bf16")
    assert effective_precision("bf16", gpu, explicit=True)[0] == "bf16"
    capability[0] = (8, 0)
    assert effective_precision("bf16", gpu, explicit=False) == ("bf16", None)


def test_seed_everything_repeats_torch_numpy_python():
    import random

    import numpy as np

    seed_everything(5)
    first = (torch.rand(3), np.random.rand(2), random.random())
    seed_everything(5)
    second = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0]) and (first[1] == second[1]).all() and first[2] == second[2]


def _masked_bert(path):
    from subprobe.masking.layouts import Granularity
    from subprobe.masking.subnetwork import install_masks
    from subprobe.models.loading import load_encoder
    from subprobe.models.targets import find_targets

    model, _ = load_encoder(str(path))
    masked = install_masks(model, find_targets(model, "bert"), Granularity.parse("neuron"), "strided", 32)
    return model, masked


def test_gradient_checkpointing_gives_the_same_gradients(tiny_bert):
    from subprobe.models.loading import checkpointing_active, enable_gradient_checkpointing

    ids = torch.randint(5, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        model, masked = _masked_bert(tiny_bert)
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert checkpointing_active(model)
        model.train()  # sampled masks and dropout: the recomputation must replay the same random numbers
        torch.manual_seed(1)
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.square().sum().backward()
        grads.append(torch.cat([m.log_alpha.grad.flatten() for m in masked]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_cli_device_cpu_and_gradient_checkpointing_run(tiny_bert, tiny_ud, tmp_path):
    plain, checkpointed = tmp_path / "plain", tmp_path / "ckpt"
    assert main(probe_argv(tiny_bert, tiny_ud, plain, "--device", "cpu", epochs=1)) == 0
    assert main(probe_argv(tiny_bert, tiny_ud, checkpointed, "--device", "cpu", "--gradient-checkpointing",
                           epochs=1)) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (plain, checkpointed))
    assert json.loads((plain / "env.json").read_text())["device"].startswith("cpu")
    assert a["dev"]["accuracy"] == pytest.approx(b["dev"]["accuracy"], abs=1e-6)
    assert a["density"] == pytest.approx(b["density"], abs=1e-6)


def test_sweep_and_reproduce_accept_device():
    from subprobe.cli import build_parser

    args = build_parser().parse_args(["sweep", "table1", "--device", "cuda:0", "--gradient-checkpointing"])
    assert args.device == "cuda:0" and args.gradient_checkpointing
    args = build_parser().parse_args(["reproduce", "table1", "--device", "cpu"])
    assert args.device == "cpu"
    assert main(["sweep", "table1", "--device", "tpu"]) == 2


def test_device_does_not_change_a_runs_store_key():
    from subprobe.config import ProbeConfig
    from subprobe.experiments.store import config_key

    assert config_key(ProbeConfig(device="cpu")) == config_key(ProbeConfig(device="cuda:0"))


# -- CUDA only ---------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("block", [(24, 1), (6, 1), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_linear_paths_on_cuda_match_cpu(block, dtype):
    from torch import nn

    from subprobe.masking.masked_linear import MaskedLinear

    torch.manual_seed(0)
    cpu = MaskedLinear(nn.Linear(8, 24).to(dtype), block, "strided")
    with torch.no_grad():
        cpu.log_alpha.normal_()
    cuda = MaskedLinear(nn.Linear(8, 24).to(dtype), block, "strided").cuda()
    cuda.load_state_dict(cpu.state_dict())
    cpu.mask_mode = cuda.mask_mode = "soft"
    x = torch.randn(3, 5, 8, dtype=dtype)
    y_cpu, y_cuda = cpu(x), cuda(x.cuda())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y_cuda.cpu(), y_cpu, atol=tol, rtol=tol)
    y_cpu.float().sum().backward()
    y_cuda.float().sum().backward()
    torch.testing.assert_close(cuda.log_alpha.grad.cpu(), cpu.log_alpha.grad, atol=tol * 10, rtol=tol * 10)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_sampling_and_dropout_on_cuda_are_seeded():
    from subprobe.masking.hard_concrete import sample_mask
    from subprobe.models.dropout import fast_dropout

    log_alpha = torch.zeros(4, 64, device="cuda")
    x = torch.ones(1000, device="cuda")
    torch.manual_seed(0)
    a, d1 = sample_mask(log_alpha), fast_dropout(x, 0.25)
    torch.manual_seed(0)
    b, d2 = sample_mask(log_alpha), fast_dropout(x, 0.25)
    assert a.device.type == "cuda" and torch.equal(a, b) and torch.equal(d1, d2)
    assert 0.15 < float((d1 == 0).float().mean()) < 0.35


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_upos_run(tiny_bert, tiny_ud, tmp_path, precision):
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--device", "cuda", epochs=1)
    argv[argv.index("--precision") + 1] = precision
    assert main(argv) == 0
    env = json.loads((out / "env.json").read_text())
    assert env["device"].startswith("cuda:")
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["dev"]["accuracy"] <= 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("probe", ["mlp", "finetune"])
def test_cuda_baselines_run(tiny_bert, tiny_ud, tmp_path, probe):
    out = tmp_path / probe
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--device", "cuda", "--probe", probe, epochs=1)) == 0


# -- Hub ids that cannot be reached ------------------------------------------------------------


@pytest.mark.parametrize("offline", [False, True])
def test_unreachable_hub_id_fails_in_seconds(offline, monkeypatch, tmp_path, capsys):
    import time

    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # never resolves (RFC 2606)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    assert main(["probe", "--model", "some-org/some-model", "--dry-run"]) == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("subprobe: error: --model some-org/some-model: ")
    if offline:
        assert "HF_HUB_OFFLINE is set" in err
    else:
        assert "the Hugging Face Hub (hub.invalid) cannot be reached" in err and "local path" in err


def test_hub_check_passes_an_open_port_and_names_a_closed_one(monkeypatch):
    import socket

    from subprobe.errors import SubprobeError
    from subprobe.models import loading

    monkeypatch.setattr(loading, "_in_cache", lambda repo_id: False)
    monkeypatch.setattr(loading, "_offline", lambda: False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        loading.check_hub_reachable("org/model", "org/model")  # reachable: no error
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # now closed
    with pytest.raises(SubprobeError, match=rf"Hub \(127.0.0.1\) cannot be reached \(no connection to port {port}"):
        loading.check_hub_reachable("org/model", "org/model")
    monkeypatch.setattr(loading, "_in_cache", lambda repo_id: True)
    loading.check_hub_reachable("org/model", "org/model")  # cached: never contacts the Hub


def test_penalty_segment_means_without_segment_reduce(monkeypatch):
    """Apple's MPS has no segment_reduce kernel: the index_add path gives the same per-matrix means."""
    from subprobe.masking import subnetwork

    values = torch.tensor([1.0, 3.0, 2.0, 4.0, 6.0, 8.0])
    assert "mps" not in subnetwork.SEGMENT_REDUCE_DEVICES
    expected = torch.tensor([2.0, 5.0])  # the means of [1, 3] and [2, 4, 6, 8]
    assert torch.allclose(subnetwork.segment_means(values, [2, 4]), expected)
    monkeypatch.setattr(subnetwork, "SEGMENT_REDUCE_DEVICES", ())  # as on MPS
    assert torch.allclose(subnetwork.segment_means(values, [2, 4]), expected)
