"""GPU check: the GPU-marked tests, SP-step speed on a bert-base-sized model, and peak memory.

    python benchmarks/gpu_check.py [--device cuda:0] [--quick] [--out bench-out/gpu_check.json]

On a CUDA machine, in one process (the tests run in a subprocess first):

1. ``pytest -m gpu`` (tests/test_devices.py: masked-linear paths on CUDA against the CPU, seeded
   sampling and dropout on CUDA, UPOS runs with ``--device cuda`` in fp32 and bf16, MLP and
   fine-tuning baselines);
2. the bf16 matmul peak (8192 x 8192, best of several), measured in this process;
3. an SP training step (neuron masks, bf16 frozen weights, Adam on the mask logits and a tagger
   head, the L0 penalty) on a random bert-base-sized model (12 x 768, batch 32 x 128 tokens):
   tokens/s and the fraction of the measured bf16 peak, counting the FLOPs as
   ``benchmarks/train_speed.py`` does (the six projections forward and backward to activations,
   4 * in * out per token, plus attention);
   the same step with 2, 4 and 8 runs packed (``--pack K``: one host model, every run's masks on its own rows), tokens
   of all runs per second, against the solo step;
4. peak GPU memory of one per-weight-mask training step on the bert-base-sized model and on a
   ~1.1B-parameter random Llama-shaped decoder (TinyLlama shapes: 22 x 2048, GQA 32/4 heads,
   FFN 5632), with and without gradient checkpointing.

Prints a Markdown table (paste it into README.md) and writes JSON. Without CUDA it prints one line and
exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def run_gpu_tests() -> dict:
    """``pytest -m gpu`` in a subprocess; its exit status and last line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(REPO / "tests")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def matmul_peak_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Best-of-``reps`` bf16 TFLOP/s of an n x n matmul on ``device``."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = a @ b
    best = float("inf")
    for _ in range(reps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def step_flops(config, batch: int, length: int) -> float:
    """FLOPs of one SP step, as benchmarks/train_speed.py counts them (padding-free batch)."""
    d, f, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    kv_width = d * kv // config.num_attention_heads
    ffn_matrices = 3 if getattr(config, "model_type", "") == "llama" else 2
    per_token = 2 * 2 * (2 * d * d + 2 * d * kv_width + ffn_matrices * d * f) * n
    return float(per_token * batch * length + 12 * d * n * batch * length * length)


def model_config(model_type: str):
    """bert-base shapes (12 x 768, FFN 3072), or TinyLlama-1.1B shapes for ``llama``."""
    from transformers import CONFIG_MAPPING

    if model_type == "bert":
        return CONFIG_MAPPING["bert"]()
    return CONFIG_MAPPING["llama"](
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
        num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
    )


def masked_model(config, device: torch.device, granularity: str):
    """A random model of ``config`` (bf16 weights, frozen, train mode) with masks installed: (model, masked)."""
    from transformers import AutoModel

    from subprobe.masking.layouts import Granularity
    from subprobe.masking.subnetwork import install_masks
    from subprobe.models.targets import discover

    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=torch.bfloat16)
    model.requires_grad_(False).train()
    found = discover(model, config.model_type)
    return model, install_masks(model, found.targets, Granularity.parse(granularity), "strided", config.hidden_size)


def build(config, device: torch.device, granularity: str, checkpointing: bool):
    """A random model with masks installed (bf16 weights), a tagger head and Adam: a step function."""
    from subprobe.masking.subnetwork import l0_penalty
    from subprobe.models.loading import enable_gradient_checkpointing

    model, masked = masked_model(config, device, granularity)
    if checkpointing:
        enable_gradient_checkpointing(model)
    head = torch.nn.Linear(config.hidden_size, 17, device=device)
    optimizer = torch.optim.Adam([m.log_alpha for m in masked] + list(head.parameters()), lr=1e-3)

    def step(ids: torch.Tensor, labels: torch.Tensor) -> None:
        hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(hidden.float()).flatten(0, 1), labels.flatten())
        loss = loss + 0.5 * l0_penalty(masked)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    n_params = sum(p.numel() for p in model.parameters())
    n_masks = sum(m.log_alpha.numel() for m in masked)
    return config, step, n_params, n_masks


def build_packed(config, device: torch.device, granularity: str, runs: int):
    """``runs`` SP runs packed as ``--pack`` packs them (:mod:`subprobe.training.packed`): copies of one random model
    sharing its frozen weights, each with its own masks, head and random stream; the host model takes every run's
    sentences as one batch, each masked matrix applying each run's mask to that run's rows. One Adam over every run's
    parameters. A step function of one run's batch (every run reads the same batch: one seed)."""
    import copy

    from subprobe.masking.masked_linear import MaskedLinear
    from subprobe.masking.subnetwork import l0_penalty
    from subprobe.models import streams
    from subprobe.training.packed import link_host, share_frozen

    host, _ = masked_model(config, device, granularity)
    models = [host] + [copy.deepcopy(host) for _ in range(runs - 1)]
    for other in models[1:]:
        share_frozen(other, host)
    link_host(host, models)
    masked = [[m for m in model.modules() if isinstance(m, MaskedLinear)] for model in models]
    heads = [torch.nn.Linear(config.hidden_size, 17, device=device) for _ in models]
    params = [m.log_alpha for ms in masked for m in ms] + [p for h in heads for p in h.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    generators = tuple(torch.Generator(device=device).manual_seed(k) for k in range(runs))

    def step(ids: torch.Tensor, labels: torch.Tensor) -> None:
        batch = ids.shape[0]
        packed = streams.Streams(tuple(range(runs)), (batch,) * runs, generators)
        with streams.use(packed):
            hidden = host(input_ids=ids.repeat(runs, 1), attention_mask=torch.ones_like(ids).repeat(runs, 1))
        loss = sum(torch.nn.functional.cross_entropy(head(h.float()).flatten(0, 1), labels.flatten())
                   + 0.5 * l0_penalty(ms) for head, h, ms in zip(heads, hidden.last_hidden_state.split(batch), masked))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    n_params = sum(p.numel() for p in host.parameters())
    return config, step, n_params, sum(m.log_alpha.numel() for ms in masked for m in ms)


def sp_speed(device: torch.device, peak: float, batch: int, length: int, steps: int, runs: int = 1) -> dict:
    """Tokens/s of the SP step on the bert-base-sized model, alone (``runs`` 1) or ``runs`` runs packed (tokens of all
    runs: how much sooner the grid's runs finish)."""
    if runs == 1:
        config, step, n_params, n_masks = build(model_config("bert"), device, "neuron", checkpointing=False)
    else:
        config, step, n_params, n_masks = build_packed(model_config("bert"), device, "neuron", runs)
    ids = torch.randint(1000, config.vocab_size, (batch, length), device=device)
    labels = torch.randint(0, 17, (batch, length), device=device)
    for _ in range(3):
        step(ids, labels)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(ids, labels)
    torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    achieved = runs * step_flops(config, batch, length) / seconds / 1e12
    return {
        "model": "bert-base-sized (random)", "granularity": "neuron", "batch": [batch, length], "runs": runs,
        "params": n_params, "mask_params": n_masks, "seconds_per_step": seconds,
        "tokens_per_s": runs * batch * length / seconds, "tflops": achieved, "fraction_of_bf16_peak": achieved / peak,
    }


def peak_memory(model_type: str, device: torch.device, checkpointing: bool, batch: int, length: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    config, step, n_params, n_masks = build(model_config(model_type), device, "weight", checkpointing)
    ids = torch.randint(100, config.vocab_size, (batch, length), device=device)
    labels = torch.randint(0, 17, (batch, length), device=device)
    for _ in range(2):  # the second step has Adam's state
        step(ids, labels)
    torch.cuda.synchronize(device)
    result = {
        "model": model_type, "granularity": "weight", "gradient_checkpointing": checkpointing,
        "batch": [batch, length], "params": n_params, "mask_params": n_masks,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }
    del step
    torch.cuda.empty_cache()
    return result


def table(report: dict) -> str:
    sp = report["sp_step"]
    lines = [
        f"GPU: {report['gpu']} (torch {report['torch']}, CUDA {report['cuda']})",
        "",
        f"GPU-marked tests: {report['gpu_tests']['summary']}",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| bf16 matmul peak (8192^2, measured) | {report['bf16_peak_tflops']:.0f} TFLOP/s |",
        f"| SP step, bert-base-sized, neuron masks, bf16, batch {sp['batch'][0]}x{sp['batch'][1]} | "
        f"{sp['tokens_per_s']:,.0f} tokens/s, {sp['tflops']:.1f} TFLOP/s = {sp['fraction_of_bf16_peak']:.1%} of peak |",
    ]
    for packed in report.get("sp_packed", []):
        lines.append(
            f"| SP step, {packed['runs']} runs packed (--pack {packed['runs']}), tokens of all runs | "
            f"{packed['tokens_per_s']:,.0f} tokens/s = {packed['tokens_per_s'] / sp['tokens_per_s']:.2f}x the solo "
            f"step, {packed['fraction_of_bf16_peak']:.1%} of peak |"
        )
    for m in report["memory"]:
        name = "bert-base-sized" if m["model"] == "bert" else "~1.1B Llama-shaped decoder"
        ckpt = "with" if m["gradient_checkpointing"] else "without"
        lines.append(
            f"| peak memory, per-weight masks ({m['mask_params'] / 1e6:,.0f}M), {name}, batch "
            f"{m['batch'][0]}x{m['batch'][1]}, {ckpt} gradient checkpointing | {m['peak_gib']:.1f} GiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="CUDA device (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps, skip the tests")
    parser.add_argument("--out", default="bench-out/gpu_check.json", help="JSON file to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was measured")
        return 1
    sys.path.insert(0, str(REPO))
    from subprobe.device import resolve_device

    device = resolve_device(args.device)
    torch.cuda.set_device(device)
    report = {
        "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu_tests": {"summary": "skipped (--quick)", "returncode": None} if args.quick else run_gpu_tests(),
    }
    report["bf16_peak_tflops"] = peak = matmul_peak_tflops(device)
    report["sp_step"] = sp_speed(device, peak, batch=32, length=128, steps=10 if args.quick else 50)
    report["sp_packed"] = [sp_speed(device, peak, batch=32, length=128, steps=10 if args.quick else 30, runs=k)
                           for k in (2, 4, 8)]
    report["memory"] = [
        peak_memory("bert", device, False, 32, 128),
        peak_memory("llama", device, False, 8, 256),
        peak_memory("llama", device, True, 8, 256),
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    tests_ok = args.quick or report["gpu_tests"]["returncode"] == 0
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
