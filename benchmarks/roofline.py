"""The training step against the machine, for ``benchmarks/train_speed.py``, measured in the same process:

* :func:`roofline`: every matrix product one UPOS step runs (its shapes and calls, read from ``torch.profiler``),
  each timed alone at fp32 and bf16 with contiguous operands: its GFLOP/s and fraction of the machine's peak for that
  dtype (the 2048^3 product measured in the same process), and the step's product time at those isolated rates
  against the time the profiler saw them take inside the step;
* :func:`compile_lever`: ``torch.compile`` of the solo step (each encoder layer, or the whole encoder, ``dynamic``
  shapes): the compile time (the first steps) and words/s against eager, in interleaved windows. subprobe does not
  compile; the benchmark says whether it would pay here.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

import torch

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
#: at least this long per timing of one product alone (many calls for small shapes)
MIN_TIMING_S = 2e-3


@dataclass(frozen=True, order=True)
class Gemm:
    """One product shape: ``batch`` x (``m`` x ``k``) @ (``k`` x ``n``)."""

    op: str
    batch: int
    m: int
    k: int
    n: int

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.k * self.n

    def label(self) -> str:
        lead = f"{self.batch}x" if self.batch > 1 else ""
        return f"{self.op.removeprefix('aten::')} {lead}{self.m}x{self.k} @ {self.k}x{self.n}"


def gemm_of(op: str, shapes) -> Gemm | None:
    """The :class:`Gemm` of a profiled call (None when its shapes are not recorded)."""
    try:
        if op == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return Gemm(op, 1, m, k, n)
        if op == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return Gemm(op, 1, m, k, n)
        if op == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return Gemm(op, b, m, k, n)
        (b, m, k), (_, _, n) = shapes[1], shapes[2]  # baddbmm
        return Gemm(op, b, m, k, n)
    except (ValueError, IndexError, TypeError):
        return None


def step_gemms(step) -> tuple[Counter, dict]:
    """The products one call of ``step()`` runs: calls per shape, and the milliseconds the profiler saw per shape."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    calls: Counter = Counter()
    seen: dict[Gemm, float] = {}
    for event in prof.events():
        if event.name not in GEMM_OPS:
            continue
        gemm = gemm_of(event.name, event.input_shapes)
        if gemm is None:
            continue
        calls[gemm] += 1
        seen[gemm] = seen.get(gemm, 0.0) + event.cpu_time_total / 1e3
    return calls, seen


def gemm_rate(gemm: Gemm, dtype: torch.dtype, reps: int = 3) -> float:
    """Best-of-``reps`` GFLOP/s of ``gemm`` alone in ``dtype`` (contiguous operands)."""
    torch.manual_seed(0)
    if gemm.batch == 1 and gemm.op in ("aten::mm", "aten::addmm"):
        a, b = torch.randn(gemm.m, gemm.k).to(dtype), torch.randn(gemm.k, gemm.n).to(dtype)
        out = torch.mm(a, b)

        def run():
            torch.mm(a, b, out=out)
    else:
        a = torch.randn(gemm.batch, gemm.m, gemm.k).to(dtype)
        b = torch.randn(gemm.batch, gemm.k, gemm.n).to(dtype)
        out = torch.bmm(a, b)

        def run():
            torch.bmm(a, b, out=out)

    run()
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(MIN_TIMING_S / once))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            run()
        best = min(best, (time.perf_counter() - start) / inner)
    return gemm.flops / best / 1e9


def roofline(steps: dict, peaks: dict[str, float], dtypes=(torch.float32, torch.bfloat16), reps: int = 3) -> dict:
    """For each step of ``steps`` (name -> a callable doing one training step), its products alone against
    ``peaks`` (GFLOP/s by ``fp32``/``bf16``); see the module doc."""
    names = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    out = {}
    rates: dict[tuple, float] = {}
    for name, step in steps.items():
        calls, seen = step_gemms(step)
        shapes = []
        at_rates = {names[d]: 0.0 for d in dtypes}
        for gemm in sorted(calls, key=lambda g: -calls[g] * g.flops):
            row = {"shape": gemm.label(), "calls": calls[gemm], "mflop_per_call": gemm.flops / 1e6,
                   "profiled_ms": seen[gemm]}
            for dtype in dtypes:
                key = (gemm, dtype)
                if key not in rates:
                    rates[key] = gemm_rate(gemm, dtype, reps)
                dn = names[dtype]
                row[dn] = {"gflops": rates[key], "fraction_of_peak": rates[key] / peaks[dn]}
                at_rates[dn] += calls[gemm] * gemm.flops / rates[key] / 1e6  # ms
            shapes.append(row)
        profiled = sum(seen.values())
        out[name] = {
            "shapes": shapes,
            "gflop_per_step": sum(calls[g] * g.flops for g in calls) / 1e9,
            "products_per_step": sum(calls.values()),
            "profiled_product_ms": profiled,
            "isolated_product_ms": at_rates,
            "profiled_over_isolated": {dn: profiled / ms if ms else None for dn, ms in at_rates.items()},
        }
    out["peak_gflops"] = peaks
    out["note"] = ("products timed alone with contiguous operands (the step's may be transposed views); profiled_ms is "
                   "the time inside the step under torch.profiler, for the step's own dtype")
    return out


def compile_lever(b, modes=("layers", "encoder")) -> dict:
    """``torch.compile`` of the solo UPOS step against eager (see the module doc); ``{"skipped": why}`` in --smoke."""
    from benchmarks.train_speed import SubprobeRunner, interleaved, probe_config

    if b.smoke:
        return {"skipped": "--smoke (compiling takes minutes)"}
    import torch._dynamo

    config = probe_config(b.default_precision)
    runners = {"eager": SubprobeRunner(b.fresh(), b.task, b.train_set, b.vocabs, b.loaded.pad_id, config)}
    out: dict = {"precision": b.default_precision, "load_average_start": os.getloadavg()[0]}
    warm = 4
    for mode in modes:
        runner = SubprobeRunner(b.fresh(), b.task, b.train_set, b.vocabs, b.loaded.pad_id, config)
        encoder = runner.model.features.encoder
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        try:
            if mode == "layers":
                if layers is None:
                    out[mode] = {"error": "the model has no encoder.layer list"}
                    continue
                for layer in layers:
                    layer.compile(dynamic=True)
            else:
                encoder.compile(dynamic=True)
            breaks_before = sum(torch._dynamo.utils.counters["graph_break"].values())
            start = time.perf_counter()
            for _ in range(warm):  # the first steps compile (and recompile for new shapes)
                runner.step()
            out[mode] = {"compile_seconds": time.perf_counter() - start, "warm_steps": warm,
                         "graph_breaks": sum(torch._dynamo.utils.counters["graph_break"].values()) - breaks_before}
            runners[f"compile_{mode}"] = runner
        except Exception as exc:  # noqa: BLE001 -- a lever that does not work here is reported, not fatal
            out[mode] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}"}
    runners["eager"].step()
    rounds, window = (4, 2.0) if b.quick else (8, 4.0)
    b.log(f"torch.compile: {rounds} rounds x {len(runners)} variants x {window:.0f} s windows")
    stats = interleaved({k: v.step for k, v in runners.items()}, rounds, window, b.mcfg, log=b.log)
    eager = stats["eager"]["words_per_s"]
    for mode in modes:
        if f"compile_{mode}" in stats:
            wps = stats[f"compile_{mode}"]["words_per_s"]
            out[mode].update(words_per_s=wps, vs_eager=wps / eager)
    out["eager_words_per_s"] = eager
    out["load_average_end"] = os.getloadavg()[0]
    paying = [m for m in modes if out.get(m, {}).get("vs_eager", 0) >= 1.05]
    out["pays"] = bool(paying)
    out["kept"] = False
    out["note"] = ("subprobe trains eagerly; " + (f"compiling {', '.join(paying)} was >= 5% faster here: worth adding"
                   if paying else "compiling was not >= 5% faster here (or failed): not kept"))
    return out
