"""Packed training in the speed benchmark (``benchmarks/train_speed.py``): K runs of one grid in one step.

* :class:`PackedRunner`: K runs trained together by subprobe's own packed step
  (:class:`subprobe.training.packed.PackedStep`), built as :func:`subprobe.many.probe_many` builds them (each run's
  probe over a copy of the encoder whose frozen tensors are the first run's, its random stream taken after its head is
  drawn), stepping one batch after the other;
* :func:`pack_speed`: per-run throughput of K = 1, 2, 4, 8 packed neuron-subnetwork UPOS runs of one seed (lambda_max
  1, 2, 5, ...: the same batches) against a solo run, in interleaved windows in one process;
* :func:`packed_mlp_seconds`: seconds per step of every MLP-1 rank of a sweep packed into one step (cached features).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time

import numpy as np

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset
from subprobe.models import streams
from subprobe.probes.cached import CachedFeatures
from subprobe.runs.rebuild import assemble
from subprobe.training.packed import PackedStep, pack_kind, share_frozen
from subprobe.training.trainer import TrainLoop, training_batches

#: lambda_max of the k-th run of a packed benchmark pack (one seed: every run sees the same batches)
LAMBDAS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)


def _features(built):
    features = built.model.features
    return features.source if isinstance(features, CachedFeatures) else features


class PackedRunner:
    """K runs of ``configs`` (they must pack: same model, task, data, batch budget) trained in one packed step."""

    def __init__(self, encoder, task, train_set: Dataset, vocabs, pad_id: int, configs: list[ProbeConfig]):
        self.train_set, self.configs = train_set, configs
        device = next(encoder.parameters()).device
        loops: list[TrainLoop] = []
        for k, cfg in enumerate(configs):
            copy_of = encoder if k == len(configs) - 1 else copy.deepcopy(encoder)
            built, _, _ = assemble(cfg, task, copy_of, vocabs, seed=cfg.seed)
            built.model.to(device)
            generator = streams.generator_now(device)
            if loops:
                share_frozen(_features(built), _features(loops[0].probe))
            loops.append(TrainLoop(built, task, train_set, None, vocabs, dataclasses.replace(cfg, progress=False),
                                   pad_id, None, None, None, None, None, generator))
        self.loops = loops
        self.kind = pack_kind(configs[0])
        self.packed = PackedStep(loops, self.kind, pad_id)
        self.lengths = np.array([len(e.input_ids) for e in train_set.encoded])
        self.epoch = 0
        self.batches: list[list[int]] = []

    @property
    def features(self):
        """The first run's features (a cached pack fills them once: the others share the cache)."""
        return self.loops[0].probe.model.features

    def share_cache(self) -> None:
        for loop in self.loops[1:]:
            loop.probe.model.features.cache = self.features.cache

    def next_indices(self) -> list[int]:
        if not self.batches:  # one seed: every run's data order is the first run's
            self.batches = training_batches(self.train_set, self.configs[0], self.epoch)[::-1]
            self.epoch += 1
        return self.batches.pop()

    def step(self) -> tuple[int, np.ndarray]:
        """One packed step of every run on the same batch; (words of all runs, subword lengths of all runs)."""
        indices = self.next_indices()
        taken = self.packed(list(range(len(self.loops))), [indices] * len(self.loops))
        for loop, outcome in zip(self.loops, taken):
            loop.advance(outcome, self.epoch, 0)
        return sum(t.words for t in taken), np.tile(self.lengths[indices], len(self.loops))

    def close(self) -> None:
        self.packed.close()


def pack_configs(make_config, k: int, **kw) -> list[ProbeConfig]:
    """The configs of a pack of ``k`` neuron-subnetwork runs of one seed (lambda_max from :data:`LAMBDAS`)."""
    return [make_config(lambda_max=LAMBDAS[i % len(LAMBDAS)], **kw) for i in range(k)]


def pack_speed(b, sizes=(1, 2, 4, 8)) -> dict:
    """Per-run throughput of packs of K neuron-subnetwork UPOS runs against a solo run, interleaved windows in one
    process (``packing`` of the result). ``throughput_vs_solo[K]``: words/s of all K runs over the solo run's (how
    much sooner the grid's K runs finish; K = 1 is the packed step's own cost); ``words_per_s_per_run``: each packed
    run's own pace; ``load_average``: the 1-minute load before and after."""
    from benchmarks.train_speed import SubprobeRunner, interleaved, probe_config

    default = b.default_precision
    sizes = (1, 2) if b.smoke else sizes
    load_start = os.getloadavg()[0]
    runners: dict[str, object] = {"solo": SubprobeRunner(b.fresh(), b.task, b.train_set, b.vocabs, b.loaded.pad_id,
                                                         probe_config(default))}
    for k in sizes:
        configs = pack_configs(lambda **kw: probe_config(default, **kw), k)
        runners[f"pack{k}"] = PackedRunner(b.fresh(), b.task, b.train_set, b.vocabs, b.loaded.pad_id, configs)
    for runner in runners.values():  # warm-up
        for _ in range(1 if b.smoke else 2):
            runner.step()
    rounds, window = (1, 0.0) if b.smoke else (6, 2.0) if b.quick else (10, 5.0)
    b.log(f"packing: {rounds} rounds x {len(runners)} variants x {window:.0f} s windows (solo, K = {list(sizes)})")
    stats = interleaved({k: v.step for k, v in runners.items()}, rounds, window, b.mcfg, log=b.log)
    solo = stats["solo"]["words_per_s"]
    out = {
        "precision": default,
        "granularity": "neuron",
        "lambdas": {f"pack{k}": list(LAMBDAS[:k]) for k in sizes},
        "throughput_vs_solo": {k: stats[f"pack{k}"]["words_per_s"] / solo for k in sizes},
        "words_per_s_per_run": {k: stats[f"pack{k}"]["words_per_s"] / k for k in sizes},
        "solo_words_per_s": solo,
        "rounds": stats,
        "load_average": [load_start, os.getloadavg()[0]],
    }
    for runner in runners.values():
        if isinstance(runner, PackedRunner):
            runner.close()
    return out


def packed_mlp_seconds(b, train_set: Dataset, ranks: list[int], cache, warmup: int, window: float) -> float:
    """Seconds per step of every rank of an MLP-1 sweep packed into one step (one feature lookup, one autograd
    graph, one fused Adam), on the already filled feature ``cache``."""
    from benchmarks.train_speed import probe_config

    configs = [probe_config(b.default_precision, probe="mlp", rank=str(r), cache_features=True) for r in ranks]
    runner = PackedRunner(b.fresh(), b.task, train_set, b.vocabs, b.loaded.pad_id, configs)
    runner.features.cache = cache
    runner.share_cache()
    for _ in range(warmup):
        runner.step()
    seconds, steps = 0.0, 0
    for _ in range(2):
        start = time.perf_counter()
        n = 0
        while n == 0 or time.perf_counter() - start < window:
            runner.step()
            n += 1
        seconds += time.perf_counter() - start
        steps += n
    runner.close()
    return seconds / max(steps, 1)


def describe(packing: dict) -> str:
    """One line of the table."""
    ratios = ", ".join(f"K={k} {v:.2f}x" for k, v in packing["throughput_vs_solo"].items())
    return (f"packed neuron-subnetwork UPOS runs ({packing['precision']}), throughput of all runs over a solo run's: "
            f"{ratios} (solo {packing['solo_words_per_s']:.0f} words/s; load {packing['load_average'][0]:.2f} -> "
            f"{packing['load_average'][1]:.2f})")
