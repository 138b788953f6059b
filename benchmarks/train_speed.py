"""Training and evaluation speed of subprobe against a naive paper-style implementation, in one run.

    python benchmarks/train_speed.py [--quick | --smoke] [--threads N] [--skip-compile]
                                     [--out bench-out/train_speed.json]

Everything runs in ONE process and the variants are INTERLEAVED: many rounds, each giving every
variant a short timed window in turn (the order rotates), so that load from other processes hits
all variants alike and the ratios stay meaningful on a busy machine. Measured:

* neuron-mask UPOS training words/s on the real EWT train file and the default model: (a) the
  naive baseline (``benchmarks/naive_baseline.py``), (b) subprobe fp32, (c) subprobe bf16, through
  subprobe's own code path (``build_probe``, ``bucketed_batches``, ``collate``, ``task.loss``, the
  L0 penalty, Adam); also per-weight masks, and ``sdpa`` attention against the default (eager);
* the same step for dependency parsing (EWT, biaffine head) and NER (CoNLL-2003, when its folder is
  there) at the default precision: ``dep_vs_upos`` and ``ner_vs_upos`` are their words/s over UPOS's
  (``..._wordpieces``: wordpieces/s);
* the fp32 and bf16 matmul peaks (2048 x 2048, best of several, measured between the windows),
  FLOPs per wordpiece of an SP step (counted from the model config) and the achieved fraction;
* dev evaluation sentences/s (naive vs ``subprobe.training.evaluate.evaluate``), interleaved over
  chunks of the dev set;
* a 9-rank MLP-1 sweep with subprobe's ``--probe mlp``: features recomputed by the frozen encoder
  at every step vs cached once (``CachedFeatures.fill``) vs cached and every rank packed into one step
  (``benchmarks/packed_speed.py``);
* packed training: per-run throughput of K = 1, 2, 4, 8 packed neuron-subnetwork UPOS runs of one seed against a solo
  run, interleaved (``benchmarks/packed_speed.py``);
* the step's own matrix products against the machine: each product shape of one solo UPOS step and of one packed
  K = 4 step, timed alone at fp32 and bf16, as a fraction of that dtype's peak (``benchmarks/roofline.py``);
* ``torch.compile`` of the solo step (each layer, the whole encoder): compile time and words/s against eager
  (``benchmarks/roofline.py``; skipped with ``--smoke`` or ``--skip-compile``);
* peak RSS of this process, and of one per-weight training step of a bert-base-sized random model
  (12 x 768, about 85M mask parameters), in a subprocess.

Writes JSON (``speedup_vs_naive``, ``peak_fraction`` -- and ``step_peak_fraction``, the solo step at the default
precision against that precision's peak: on a CPU without native bf16 the default is fp32, so the issue's "of the
bf16 peak" reads "of the fp32 peak" there --, ``pack_throughput_vs_solo``, ``eval_speedup_vs_naive``,
``mlp_cache_speedup``, ``mlp_packed_speedup``, ``dep_vs_upos``/``ner_vs_upos``, ``levers`` and every raw figure) and
prints a table. ``--quick`` runs the same
measurements with shorter windows and subsets (minutes: the torch.compile lever alone compiles for minutes;
``--skip-compile`` leaves it out); ``--smoke`` only checks that every
part runs (one step per variant on small subsets, no memory subprocess: its figures mean nothing). On a
loaded machine, ``--threads 1`` gives steadier ratios: two OpenMP threads sharing a core with another
process stall each other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.naive_baseline import NaiveTrainer, NaiveWordTagger  # noqa: E402
from benchmarks.packed_speed import PackedRunner, describe, pack_configs, pack_speed, packed_mlp_seconds  # noqa: E402
from benchmarks.roofline import compile_lever, roofline  # noqa: E402
from subprobe.config import ProbeConfig  # noqa: E402
from subprobe.data.batching import Dataset, bucketed_batches  # noqa: E402
from subprobe.data.pipeline import prepare_splits, read_splits  # noqa: E402
from subprobe.device import bf16_native, effective_precision  # noqa: E402
from subprobe.models.loading import DEFAULT_MODEL  # noqa: E402
from subprobe.resolve import resolve  # noqa: E402
from subprobe.runs.rebuild import LoadedModel, assemble, load_model  # noqa: E402
from subprobe.tasks.registry import get_task  # noqa: E402
from subprobe.training.evaluate import evaluate  # noqa: E402
from subprobe.training.step import TrainStep  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
#: the paper's MLP-1 ranks; the last one (768 = bert-base width) becomes the model width
PAPER_RANKS = (1, 2, 5, 10, 25, 50, 125, 250, 768)


# --------------------------------------------------------------------------- data and models


def data_root(arg: str | None) -> Path:
    for candidate in (arg, os.environ.get("SUBPROBE_DATA"), str(REPO.parent / "shared" / "data")):
        if candidate and Path(candidate, "ud-english-ewt").is_dir():
            return Path(candidate)
    raise SystemExit("no dataset root: pass --data-dir or set SUBPROBE_DATA (e.g. ../shared/data)")


def load_upos(root: Path, tokenizer, max_length: int, n_train: int | None = None, n_dev: int | None = None):
    """UPOS train and dev sets prepared as a run prepares them (:func:`subprobe.data.pipeline.prepare_splits`)."""
    return load_task("upos", root, tokenizer, max_length, n_train, n_dev)


def load_task(
    name: str, root: Path, tokenizer, max_length: int, n_train: int | None = None, n_dev: int | None = None
):
    """A task's train and dev sets prepared as a run prepares them; None when its data folder is missing."""
    from subprobe.data.sources import layout_in_root

    task = get_task(name)
    layout = layout_in_root(task.dataset, root)  # either EWT naming and folder name
    if layout is None:
        return None
    paths = {split: layout[split] for split in ("train", "dev")}
    raw = read_splits(task, paths, max_train_samples=n_train, max_eval_samples=n_dev)
    splits, vocabs = prepare_splits(task, raw, tokenizer, max_length)
    return task, splits["train"], splits["dev"], vocabs


def words_and_labels(dataset: Dataset, field: str = "upos") -> tuple[list[list[str]], list[list[int]]]:
    return (
        [list(dataset.sentences[e.index].words) for e in dataset.encoded],
        [e.labels[field].tolist() for e in dataset.encoded],
    )


def probe_config(precision: str, granularity: str = "neuron", **kw) -> ProbeConfig:
    kw.setdefault("probe", "subnetwork")
    kw.setdefault("task", "upos")
    return resolve(ProbeConfig(granularity=granularity, precision=precision, **kw))


def task_ratios(train_stats: dict[str, dict], reference: str) -> dict[str, float | None]:
    """``dep_vs_upos`` / ``ner_vs_upos``: words/s of the ``dep`` / ``ner`` variants over ``reference``'s
    (UPOS at the same precision), and ``..._wordpieces`` the same for wordpieces/s (CoNLL-2003 words are
    split into more wordpieces than EWT's, so words/s alone mixes the step's speed with the tokenisation);
    None for a variant that did not run."""
    out: dict[str, float | None] = {}
    for unit, suffix in (("words_per_s", ""), ("wordpieces_per_s", "_wordpieces")):
        base = train_stats[reference].get(unit)
        for name in ("dep", "ner"):
            value = train_stats.get(name, {}).get(unit)
            out[f"{name}_vs_upos{suffix}"] = None if value is None or base is None else value / base
    return out


# --------------------------------------------------------------------------- FLOPs


def sp_flops(lengths, config) -> float:
    """FLOPs of one SP step (forward + backward to activations) for sentences of these wordpiece lengths.

    Per wordpiece and layer: the six Linear matmuls, 2*in*out forward and 2*in*out for the input
    gradient; per sentence of t wordpieces and layer: attention QK^T and AV, 4*t*t*d forward and
    8*t*t*d backward. Padding, the embeddings, the head and elementwise work are not counted.
    """
    d, f, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_piece = 2 * 2 * (4 * d * d + 2 * d * f) * n_layers
    t = np.asarray(lengths, dtype=np.float64)
    return float(per_piece * t.sum() + 12 * d * n_layers * (t * t).sum())


def flops_per_wordpiece(lengths, config) -> dict[str, float]:
    t = np.asarray(lengths, dtype=np.float64)
    total = sp_flops(t, config)
    linear = sp_flops(t, config) - 12 * config.hidden_size * config.num_hidden_layers * (t * t).sum()
    return {"total": total / t.sum(), "linear": linear / t.sum(), "attention": (total - linear) / t.sum()}


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 3) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n matmul."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    c = torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def peak_sizes(smoke: bool = False) -> dict[str, int]:
    """The square product each dtype's peak is measured with: 2048, but 512 for bf16 where this CPU emulates it (a
    2048^3 emulated product takes tens of seconds; 512^3 is past the size where the rate levels off), 128 in
    --smoke."""
    if smoke:
        return {"fp32": 128, "bf16": 128}
    return {"fp32": 2048, "bf16": 2048 if bf16_native(torch.device("cpu")) else 512}


# --------------------------------------------------------------------------- runners


class SubprobeRunner:
    """subprobe's training step, the trainer's own (:class:`subprobe.training.step.TrainStep`: warm-up and the
    lambda ramp of a run of ``config.epochs`` epochs over ``train_set``), one batch after the other."""

    def __init__(self, encoder, task, train_set: Dataset, vocabs, pad_id: int, config: ProbeConfig):
        self.task, self.train_set, self.pad_id, self.config = task, train_set, pad_id, config
        self.probe, _, _ = assemble(config, task, encoder, vocabs)  # the run's own build (subprobe.runs.rebuild)
        self.model = self.probe.model
        total = math.ceil(len(train_set.encoded) / config.batch_size) * config.epochs
        self.train_step = TrainStep(self.probe, task, train_set, config, pad_id=pad_id, total_steps=total)
        self.steps = 0
        self.lengths = np.array([len(e.input_ids) for e in train_set.encoded])
        self.running_loss = torch.zeros(())
        self.running_pen = torch.zeros(())
        self.epoch = 0
        self.batches: list[list[int]] = []
        self.model.train()

    def next_indices(self) -> list[int]:
        if not self.batches:
            seed = self.config.seed * 1000 + self.epoch
            self.batches = bucketed_batches(self.train_set.encoded, self.config.batch_size, shuffle=True, seed=seed)
            self.batches.reverse()
            self.epoch += 1
        return self.batches.pop()

    def step(self) -> tuple[int, np.ndarray]:
        indices = self.next_indices()
        taken = self.train_step(indices, self.steps)
        self.steps += 1
        self.running_loss += taken.loss.detach().float()
        self.running_pen += taken.penalty.detach().float()
        return taken.words, self.lengths[indices]

    def evaluate(self, dev_set: Dataset, vocabs) -> dict:
        kwargs = dict(pooling=self.config.word_pooling, pad_id=self.pad_id, mask_mode="hard")
        metrics, _ = evaluate(self.model, self.task, dev_set, vocabs, **kwargs)
        return metrics


class NaiveRunner:
    def __init__(self, encoder, tokenizer, train_set: Dataset, n_labels: int, seed: int = 0):
        words, labels = words_and_labels(train_set)
        self.model = NaiveWordTagger(encoder, tokenizer, n_labels)
        self.trainer = NaiveTrainer(self.model, words, labels, seed=seed)

    def step(self) -> tuple[int, list[int]]:
        return self.trainer.step()

    def evaluate(self, dev_set: Dataset) -> float:
        return self.trainer.evaluate(*words_and_labels(dev_set))


def mlp_runners(encoder, task, train_set: Dataset, vocabs, pad_id: int, precision: str, rank: int):
    """Two runners of subprobe's MLP-1 probe: features recomputed each step, and cached (filled separately)."""
    out = {}
    for cached in (False, True):
        torch.manual_seed(0)
        cfg = probe_config(precision, probe="mlp", rank=str(rank), cache_features=cached)
        out["cached" if cached else "uncached"] = SubprobeRunner(encoder, task, train_set, vocabs, pad_id, cfg)
    return out


# --------------------------------------------------------------------------- timing


def new_stats() -> dict:
    return {"seconds": 0.0, "steps": 0, "words": 0, "wordpieces": 0, "flops": 0.0, "window_words_per_s": []}


def interleaved(
    variants: dict[str, Callable[[], tuple[int, np.ndarray]]],
    rounds: int,
    window: float,
    model_config,
    between: Callable[[int], None] | None = None,
    log=print,
) -> dict[str, dict]:
    """Alternate timed windows of each variant (rotating order) for ``rounds`` rounds."""
    stats = {name: new_stats() for name in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            step = variants[name]
            s = stats[name]
            words = pieces = steps = 0
            flops = 0.0
            start = time.perf_counter()
            while True:
                n_words, lengths = step()
                words += n_words
                pieces += int(np.sum(lengths))
                flops += sp_flops(lengths, model_config)
                steps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= window:
                    break
            s["seconds"] += elapsed
            s["steps"] += steps
            s["words"] += words
            s["wordpieces"] += pieces
            s["flops"] += flops
            s["window_words_per_s"].append(round(words / elapsed, 1))
        if between is not None:
            between(r)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {stats[n]['window_words_per_s'][-1]:.0f}" for n in names))
    for s in stats.values():
        s["words_per_s"] = s["words"] / s["seconds"]
        s["wordpieces_per_s"] = s["wordpieces"] / s["seconds"]
        s["gflops"] = s["flops"] / s["seconds"] / 1e9
    return stats


def rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM: not inherited from the parent, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- memory at the paper's scale


def memory_child(precision: str, root: Path, n_sentences: int = 32) -> dict:
    """One per-weight training step of a random bert-base-sized encoder (run in a subprocess)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from subprobe.models.loading import resolve_model_path

    torch.manual_seed(0)
    start_rss = rss_mb()
    config = BertConfig()  # bert-base: 12 layers, width 768, FFN 3072, vocabulary 30522
    config._attn_implementation = "eager"
    encoder = BertModel(config, add_pooling_layer=False).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))  # bert-base-uncased vocabulary
    task, train_set, _, vocabs = load_upos(root, tokenizer, 512, n_train=400, n_dev=1)
    cfg = probe_config(precision, "weight")
    runner = SubprobeRunner(encoder, task, train_set, vocabs, tokenizer.pad_token_id, cfg)
    n_masks = sum(m.log_alpha.numel() for m in runner.probe.masked)
    before = rss_mb()
    start = time.perf_counter()
    runner.step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    words, _ = runner.step()
    second = time.perf_counter() - start
    return {
        "precision": precision,
        "mask_params": n_masks,
        "rss_start_mb": round(start_rss, 1),
        "rss_before_step_mb": round(before, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "first_step_s": round(first, 2),
        "second_step_s": round(second, 2),
        "words_in_step": words,
    }


def run_memory_child(precision: str, root: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", precision, "--data-dir", str(root)]
    cmd += ["--threads", str(torch.get_num_threads())]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"precision": precision, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Bench:
    """What every part of the benchmark shares: its mode, the model as loaded, the data and the log."""

    args: argparse.Namespace
    root: Path
    smoke: bool
    quick: bool
    default_precision: str
    loaded: LoadedModel
    task: object
    train_set: Dataset
    dev_set: Dataset
    vocabs: dict
    others: dict
    load_start: tuple
    busy: bool
    t0: float
    log: Callable = print

    @property
    def mcfg(self):
        return self.loaded.encoder.config

    def fresh(self, attn: str = "eager"):
        """A newly loaded encoder (each variant trains its own)."""
        return load_model(self.args.model, attn).encoder


def prepare(args) -> Bench:
    """The model and the data of every variant: UPOS train and dev, and the other tasks' where their data is."""
    root = data_root(args.data_dir)
    smoke = getattr(args, "smoke", False)
    n_train = n_dev_read = 64 if smoke else None  # --smoke: small subsets, one step per variant
    torch.manual_seed(0)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    # the precision a run of the quick profile takes here: bf16 where the CPU has it natively, else fp32
    default_precision, _ = effective_precision(resolve(ProbeConfig()).precision, torch.device("cpu"), explicit=False)
    loaded = load_model(args.model)
    task, train_set, dev_set, vocabs = load_upos(root, loaded.tokenizer, loaded.max_length, n_train, n_dev_read)
    others = {name: load_task(name, root, loaded.tokenizer, loaded.max_length, n_train, n_dev_read)
              for name in ("dep", "ner")}
    busy = load_start[0] > (os.cpu_count() or 1) - 0.5
    bench = Bench(args, root, smoke, args.quick or smoke, default_precision, loaded, task, train_set, dev_set, vocabs,
                  others, load_start, busy, t0)
    bench.log(
        f"data: {len(train_set.encoded)} train / {len(dev_set.encoded)} dev sentences; model {args.model}; "
        f"{torch.get_num_threads()} threads; load {load_start[0]:.2f}"
    )
    if busy and torch.get_num_threads() > 1:
        bench.log(
            f"warning: load {load_start[0]:.1f} on {os.cpu_count()} CPUs: other processes compete; absolute figures "
            "will be low and multi-threaded kernels stall (use --threads 1 for steadier ratios)"
        )
    return bench


def train_variants(b: Bench) -> tuple[dict, dict, dict]:
    """Training: naive vs subprobe (fp32, bf16), per-weight masks, the other attention kernel and the other tasks,
    in interleaved windows with the matmul peaks measured between rounds. Returns the variants (runners), their
    statistics and the peak samples."""
    task, train_set, vocabs, pad_id, default = b.task, b.train_set, b.vocabs, b.loaded.pad_id, b.default_precision
    variants: dict[str, object] = {
        "naive": NaiveRunner(b.fresh(), b.loaded.tokenizer, train_set, len(vocabs[task.field])),
        "fp32": SubprobeRunner(b.fresh(), task, train_set, vocabs, pad_id, probe_config("fp32")),
        "bf16": SubprobeRunner(b.fresh(), task, train_set, vocabs, pad_id, probe_config("bf16")),
        f"{default}_weight": SubprobeRunner(
            b.fresh(), task, train_set, vocabs, pad_id, probe_config(default, "weight")
        ),
        "fp32_sdpa": SubprobeRunner(b.fresh("sdpa"), task, train_set, vocabs, pad_id, probe_config("fp32")),
        "bf16_sdpa": SubprobeRunner(b.fresh("sdpa"), task, train_set, vocabs, pad_id, probe_config("bf16")),
    }
    for name, loaded in b.others.items():  # the same step on the other tasks, at the default precision
        if loaded is None:
            b.log(f"no {name} data under {b.root}: its variant is left out")
            continue
        other_task, other_train, _, other_vocabs = loaded
        cfg = probe_config(default, task=name)
        variants[name] = SubprobeRunner(b.fresh(), other_task, other_train, other_vocabs, pad_id, cfg)
    for runner in variants.values():  # warm-up (allocator, kernels), not timed
        for _ in range(1 if b.smoke else 2):
            runner.step()
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}

    sizes = peak_sizes(b.smoke)

    def measure_peaks(_round: int) -> None:
        peaks["fp32"].append(matmul_peak(torch.float32, sizes["fp32"]))
        peaks["bf16"].append(matmul_peak(torch.bfloat16, sizes["bf16"]))

    rounds, window = (1, 0.0) if b.smoke else (8, 1.5) if b.quick else (12, 4.0)  # many short windows: load averages
    b.log(f"training: {rounds} rounds x {len(variants)} variants x {window:.0f} s windows")
    train_stats = interleaved(
        {k: v.step for k, v in variants.items()}, rounds, window, b.mcfg, between=measure_peaks, log=b.log
    )
    return variants, train_stats, peaks


def eval_speed(b: Bench, variants: dict) -> dict:
    """Dev evaluation: naive vs subprobe (fp32, bf16), interleaved windows over chunks of the dev set (``eval`` of
    the result)."""
    n_dev = min(512, len(b.dev_set.encoded)) if b.quick else len(b.dev_set.encoded)
    chunk = 256
    chunks = [Dataset("dev", b.dev_set.sentences, b.dev_set.encoded[i : i + chunk]) for i in range(0, n_dev, chunk)]
    cursor = {"naive": 0, "fp32": 0, "bf16": 0}
    correct = {k: [] for k in cursor}

    def eval_step(name: str):
        part = chunks[cursor[name] % len(chunks)]
        cursor[name] += 1
        if name == "naive":
            correct[name].append(variants["naive"].evaluate(part))
        else:
            correct[name].append(variants[name].evaluate(part, b.vocabs)["accuracy_macro"])
        return len(part.encoded), [len(e.input_ids) for e in part.encoded]

    eval_rounds, eval_window = (1, 0.0) if b.smoke else (5, 2.0) if b.quick else (6, 5.0)
    b.log(f"evaluation: {eval_rounds} rounds x 3 variants x {eval_window:.0f} s windows over {n_dev} dev sentences")
    for name in cursor:  # warm-up
        eval_step(name)
        cursor[name] = 0
    eval_stats = interleaved({k: (lambda k=k: eval_step(k)) for k in cursor}, eval_rounds, eval_window, b.mcfg,
                             log=b.log)
    for v in eval_stats.values():  # "words" are sentences here; FLOPs of a training step do not apply
        v["sentences"], v["sentences_per_s"] = v.pop("words"), v.pop("words_per_s")
        for key in ("flops", "gflops", "window_words_per_s"):
            v.pop(key)
    return {
        "dev_sentences": n_dev,
        "sentences_per_s": {k: v["sentences_per_s"] for k, v in eval_stats.items()},
        "macro_accuracy_after_timed_windows": {k: float(np.mean(v)) for k, v in correct.items()},
        "chunk_sentences": chunk,
        "rounds": eval_stats,
    }


def mlp_sweep(b: Bench) -> dict:
    """An MLP-1 sweep over the paper's ranks (subprobe's --probe mlp), features recomputed at every step vs cached
    once (``mlp`` of the result, with ``by_epochs`` and ``warmup`` beside it)."""
    d = b.mcfg.hidden_size
    ranks = [r for r in PAPER_RANKS[:-1] if r < d] + [d]
    if b.smoke:
        ranks = [ranks[0], d]
    train_set, pad_id = b.train_set, b.loaded.pad_id
    mlp_train = train_set if not b.quick else Dataset("train", train_set.sentences, train_set.encoded[:1024])
    mlp_encoder = b.fresh()
    runners = {
        rank: mlp_runners(mlp_encoder, b.task, mlp_train, b.vocabs, pad_id, b.default_precision, rank)
        for rank in ranks
    }
    first = runners[ranks[0]]["cached"].model.features
    start = time.perf_counter()
    first.fill(mlp_train, "last", pad_id)
    cache_seconds = time.perf_counter() - start
    for rank in ranks[1:]:
        runners[rank]["cached"].model.features.cache = first.cache
    cache_words = sum(e.n_words for e in mlp_train.encoded)
    cache_full_seconds = cache_seconds * sum(e.n_words for e in train_set.encoded) / cache_words
    mlp_windows = {"uncached": 0.6, "cached": 0.3} if b.quick else {"uncached": 3.0, "cached": 1.0}
    #: untimed steps per runner first: oneDNN compiles a bf16 kernel for every new matmul shape (1-30 ms each), a
    #: cost a 20-epoch sweep pays once per shape, not once per short timing window
    warmup = 1 if b.smoke else 16 if b.quick else 32
    if b.smoke:
        mlp_windows = {"uncached": 0.0, "cached": 0.0}
    b.log(f"MLP-1: {len(ranks)} ranks; features of {cache_words} words cached in {cache_seconds:.1f} s")
    per_step = {rank: _time_mlp_steps(runners[rank], warmup, mlp_windows) for rank in ranks}
    packed_step = packed_mlp_seconds(b, mlp_train, ranks, first.cache, warmup, mlp_windows["cached"] * len(ranks))
    steps_per_epoch = len(bucketed_batches(train_set.encoded, 32, shuffle=False))
    by_epochs = {}
    for epochs in (1, 3, 20):
        n_steps = steps_per_epoch * epochs
        uncached = sum(v["uncached"] for v in per_step.values()) * n_steps
        cached = cache_full_seconds + sum(v["cached"] for v in per_step.values()) * n_steps
        packed = cache_full_seconds + packed_step * n_steps
        by_epochs[epochs] = {"uncached_s": uncached, "cached_s": cached, "packed_s": packed,
                             "speedup": uncached / cached, "packed_speedup": uncached / packed,
                             "packed_vs_cached": cached / packed}
    return {
        "by_epochs": by_epochs,
        "warmup": warmup,
        "mlp": {
            "ranks": ranks,
            "seconds_per_step": {str(k): v for k, v in per_step.items()},
            "packed_seconds_per_step": packed_step,
            "cache_seconds_measured": cache_seconds,
            "cache_words_measured": cache_words,
            "cache_fill": "subprobe.probes.cached.CachedFeatures.fill over the train set (a 1024-sentence subset "
            "in --quick, scaled to the whole set by words)",
            "cache_seconds_full_train": cache_full_seconds,
            "steps_per_epoch": steps_per_epoch,
            "encoder_precision": b.default_precision,
        },
    }


def _time_mlp_steps(runners: dict, warmup: int, windows: dict[str, float]) -> dict[str, float]:
    """Seconds per step of each runner (``uncached``, ``cached``) of one rank: untimed warm-up steps (the step's
    bf16 kernels are compiled once per shape), then two windows each, one step at least."""
    stats = {name: new_stats() for name in runners}
    for runner in runners.values():
        for _ in range(warmup):
            runner.step()
    for _ in range(2):
        for name, runner in runners.items():
            start = time.perf_counter()
            n = 0
            while n == 0 or time.perf_counter() - start < windows[name]:
                runner.step()
                n += 1
            stats[name]["seconds"] += time.perf_counter() - start
            stats[name]["steps"] += n
    return {k: v["seconds"] / v["steps"] for k, v in stats.items()}


def run(args) -> dict:
    """Every measurement of the module docstring, in this order; the result JSON."""
    b = prepare(args)
    variants, train_stats, peaks = train_variants(b)
    evaluation = eval_speed(b, variants)
    mlp = mlp_sweep(b)
    packing = pack_speed(b)
    shapes = step_roofline(b, variants, peaks)
    compiled = {"skipped": "--skip-compile"} if getattr(args, "skip_compile", False) else compile_lever(
        b, ("layers",) if b.quick else ("layers", "encoder"))
    # ---- memory at the paper's scale (subprocess each, to isolate RSS)
    precisions = [b.default_precision] if b.quick else ["fp32", "bf16"]
    memory = [] if b.smoke else [run_memory_child(p, b.root) for p in precisions]
    result = result_of(b, train_stats, peaks, evaluation, mlp, memory)
    result.update(levers_of(b, result, packing, shapes, compiled))
    return result


def step_roofline(b: Bench, variants: dict, peaks: dict) -> dict:
    """:func:`benchmarks.roofline.roofline` of one solo UPOS step at the default precision and one packed K = 4
    step (``roofline`` of the result)."""
    default = b.default_precision
    solo = variants[default]
    pack = PackedRunner(b.fresh(), b.task, b.train_set, b.vocabs, b.loaded.pad_id,
                        pack_configs(lambda **kw: probe_config(default, **kw), 2 if b.smoke else 4))
    pack.step()  # warm-up
    peak = {k: max(v) for k, v in peaks.items()}
    b.log("roofline: the products of one solo and one packed step, each timed alone at fp32 and bf16")
    result = roofline({"solo": solo.step, f"pack{len(pack.loops)}": pack.step}, peak, reps=1 if b.smoke else 3)
    pack.close()
    return result


def levers_of(b: Bench, res: dict, packing: dict, shapes: dict, compiled: dict) -> dict:
    """The headline figures of the issue's targets, and each lever's gain or loss."""
    default = b.default_precision
    by = res["mlp_cache_speedup_by_epochs"]
    return {
        "step_peak_fraction": {
            "precision": default, "value": res["peak_fraction"][default],
            "note": f"the solo UPOS step's GFLOP/s over the {default} matmul peak measured in this process"
            + ("" if default == "bf16" else " (this CPU has no native bf16: fp32 is the default and its peak the "
                                             "reference)"),
        },
        "pack_throughput_vs_solo": packing["throughput_vs_solo"],
        "mlp_packed_speedup": by[20]["packed_speedup"],
        "mlp_packed_vs_cached": by[20]["packed_vs_cached"],
        "packing": packing,
        "roofline": shapes,
        "levers": {
            "packing": {"gain": packing["throughput_vs_solo"], "kept": True,
                        "note": "throughput of K packed runs over a solo run's (--pack K, subprobe.training.packed)"},
            "mlp_packing": {"gain": by[20]["packed_vs_cached"], "kept": True,
                            "note": "packed MLP-1 sweep over one rank at a time on the same cached features"},
            "torch_compile": compiled,
            "sdpa_attention": {"gain": res["attention"][default]["sdpa_words_per_s"]
                               / res["attention"][default]["eager_words_per_s"],
                               "kept": res["attention"][default]["faster"] == "sdpa",
                               "note": "sdpa over subprobe's eager attention (subprobe.models.attention)"},
        },
    }


def result_of(b: Bench, train_stats: dict, peaks: dict, evaluation: dict, mlp: dict, memory: list) -> dict:
    """The result JSON: the headline ratios first, then every raw figure."""
    peak = {k: max(v) for k, v in peaks.items()}
    default = b.default_precision
    naive_wps = train_stats["naive"]["words_per_s"]
    eval_sps = evaluation["sentences_per_s"]
    by_epochs = mlp["by_epochs"]
    return {
        "benchmark": "train_speed",
        "quick": b.quick,
        "smoke": b.smoke,
        "model": b.args.model,
        "task": "upos",
        "granularity": "neuron",
        "default_precision": default,
        "speedup_vs_naive": {p: train_stats[p]["words_per_s"] / naive_wps for p in ("fp32", "bf16")},
        **task_ratios(train_stats, default),
        "peak_fraction": {p: train_stats[p]["gflops"] / peak[p] for p in ("fp32", "bf16")},
        "eval_speedup_vs_naive": eval_sps[default] / eval_sps["naive"],
        "eval_speedup_vs_naive_by_precision": {p: eval_sps[p] / eval_sps["naive"] for p in ("fp32", "bf16")},
        "mlp_cache_speedup": by_epochs[20]["speedup"],
        "mlp_cache_speedup_by_epochs": by_epochs,
        "mlp_cache_note": (
            "9-rank sweep, same number of steps per rank (epochs x steps per epoch of EWT train); cached = "
            "one encoder pass over the train set + MLP steps on the cached features; headline at the paper's "
            "20 epochs; per-step times after untimed warm-up steps (kernels compiled once per shape)"
        ),
        "mlp_warmup_steps": mlp["warmup"],
        "training": train_stats,
        "attention": {
            p: {
                "eager_words_per_s": train_stats[p]["words_per_s"],
                "sdpa_words_per_s": train_stats[f"{p}_sdpa"]["words_per_s"],
                "faster": "eager"
                if train_stats[p]["words_per_s"] >= train_stats[f"{p}_sdpa"]["words_per_s"]
                else "sdpa",
            }
            for p in ("fp32", "bf16")
        },
        "per_weight": {
            "precision": default,
            "words_per_s": train_stats[f"{default}_weight"]["words_per_s"],
            "speedup_vs_naive": train_stats[f"{default}_weight"]["words_per_s"] / naive_wps,
        },
        "matmul_peak_gflops": peak,
        "matmul_peak_samples": peaks,
        "matmul_peak_sizes": peak_sizes(b.smoke),
        "bf16_native": bf16_native(torch.device("cpu")),
        "flops_per_wordpiece": flops_per_wordpiece([len(e.input_ids) for e in b.train_set.encoded], b.mcfg),
        "eval": evaluation,
        "mlp": mlp["mlp"],
        "memory": {"peak_rss_mb": round(rss_mb(), 1), "bert_base_per_weight": memory},
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": _cpu_name(),
            "platform": platform.platform(),
            "load_average_start": b.load_start,
            "cpus": os.cpu_count(),
            "busy_at_start": b.busy,
            "load_average_end": os.getloadavg(),
            "seconds": round(time.perf_counter() - b.t0, 1),
        },
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def table(res: dict) -> str:
    tr, peak = res["training"], res["matmul_peak_gflops"]
    naive = tr["naive"]["words_per_s"]
    env = res["environment"]
    lines = [
        f"UPOS subnetwork probing, {res['model']}, neuron masks, 32 sentences/step "
        f"({env['threads']} threads, load {env['load_average_start'][0]:.2f} -> {env['load_average_end'][0]:.2f})",
        f"{'training variant':<28}{'words/s':>10}{'wp/s':>10}{'GFLOP/s':>10}{'% peak':>9}{'x naive':>9}",
    ]
    labels = {
        "naive": ("naive (paper-style, fp32)", "fp32"),
        "fp32": ("subprobe fp32", "fp32"),
        "bf16": ("subprobe bf16", "bf16"),
        "fp32_sdpa": ("subprobe fp32, sdpa attn", "fp32"),
        "bf16_sdpa": ("subprobe bf16, sdpa attn", "bf16"),
    }
    labels[f"{res['default_precision']}_weight"] = (
        f"subprobe {res['default_precision']} per-weight",
        res["default_precision"],
    )
    for name, label in (("dep", "dep (biaffine)"), ("ner", "NER")):
        if name in tr:
            labels[name] = (f"subprobe {res['default_precision']} {label}", res["default_precision"])
    for key, (label, prec) in labels.items():
        s = tr[key]
        lines.append(
            f"{label:<28}{s['words_per_s']:>10.0f}{s['wordpieces_per_s']:>10.0f}{s['gflops']:>10.1f}"
            f"{100 * s['gflops'] / peak[prec]:>8.1f}%{s['words_per_s'] / naive:>9.2f}"
        )
    fpw = res["flops_per_wordpiece"]
    lines += [
        f"matmul peak (n^3, n = {res['matmul_peak_sizes']['fp32']} / {res['matmul_peak_sizes']['bf16']}): fp32 "
        f"{peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
        f"{'' if res['bf16_native'] else ' (emulated: no native bf16 here)'}; "
        f"SP step {fpw['total'] / 1e6:.1f} MFLOP/wordpiece ({fpw['linear'] / 1e6:.1f} linear + "
        f"{fpw['attention'] / 1e6:.1f} attention)",
        f"attention kernel measured faster: fp32 {res['attention']['fp32']['faster']}, "
        f"bf16 {res['attention']['bf16']['faster']}",
        "words/s over UPOS at the same precision: "
        + ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in res.items() if k.endswith("_vs_upos"))
        + "; wordpieces/s: "
        + ", ".join(
            f"{k.removesuffix('_wordpieces')} {'-' if v is None else f'{v:.2f}'}"
            for k, v in res.items()
            if k.endswith("_vs_upos_wordpieces")
        ),
    ]
    ev = res["eval"]["sentences_per_s"]
    lines.append(
        f"dev evaluation ({res['eval']['dev_sentences']} sentences): naive {ev['naive']:.0f} sent/s, "
        f"fp32 {ev['fp32']:.0f} ({ev['fp32'] / ev['naive']:.1f}x), "
        f"bf16 {ev['bf16']:.0f} ({ev['bf16'] / ev['naive']:.1f}x)"
    )
    m = res["mlp"]
    per_step = m["seconds_per_step"]
    unc = sum(v["uncached"] for v in per_step.values())
    cac = sum(v["cached"] for v in per_step.values())
    by = res["mlp_cache_speedup_by_epochs"]
    lines.append(
        f"MLP-1 sweep ranks {m['ranks']}: per step {1000 * unc / len(per_step):.1f} ms uncached vs "
        f"{1000 * cac / len(per_step):.2f} ms cached; cache build {m['cache_seconds_full_train']:.0f} s; "
        "sweep speed-up " + ", ".join(f"{e} ep {v['speedup']:.1f}x" for e, v in by.items())
    )
    lines.append(f"MLP-1 sweep with every rank packed into one step: {1000 * m['packed_seconds_per_step']:.2f} ms per "
                 f"step; at 20 epochs {res['mlp_packed_speedup']:.1f}x the uncached sweep, "
                 f"{res['mlp_packed_vs_cached']:.2f}x one rank at a time (cached)")
    lines.append(describe(res["packing"]))
    for name, row in res["roofline"].items():
        if not isinstance(row, dict) or "shapes" not in row:
            continue
        ms = row["isolated_product_ms"]
        lines.append(f"roofline {name}: {row['products_per_step']} products, {row['gflop_per_step']:.2f} GFLOP a step; "
                     f"{row['profiled_product_ms']:.1f} ms inside the step vs "
                     + ", ".join(f"{v:.1f} ms at isolated {k} rates" for k, v in ms.items()))
        for shape in row["shapes"][:6]:
            lines.append(f"  {shape['shape']:<34} x{shape['calls']:<4} "
                         + "  ".join(f"{k} {shape[k]['gflops']:7.1f} GFLOP/s ({100 * shape[k]['fraction_of_peak']:.0f}%"
                                     " of peak)" for k in ("fp32", "bf16") if k in shape))
    spf = res["step_peak_fraction"]
    lines.append(f"solo step: {100 * spf['value']:.1f}% of the {spf['precision']} peak")
    tc = res["levers"]["torch_compile"]
    if "skipped" in tc:
        lines.append(f"torch.compile: skipped ({tc['skipped']})")
    else:
        parts = []
        for mode in ("layers", "encoder"):
            if mode in tc:
                item = tc[mode]
                parts.append(f"{mode}: " + (item["error"] if "error" in item else
                                            f"compile {item['compile_seconds']:.0f} s, {item['vs_eager']:.2f}x eager, "
                                            f"{item['graph_breaks']} graph breaks"))
        lines.append("torch.compile: " + "; ".join(parts) + f" ({tc['note']}; load {tc['load_average_start']:.2f} -> "
                     f"{tc['load_average_end']:.2f})")
    mem = res["memory"]
    lines.append(f"peak RSS of this benchmark {mem['peak_rss_mb']:.0f} MB")
    for item in mem["bert_base_per_weight"]:
        if "error" in item:
            lines.append(f"bert-base per-weight {item['precision']}: failed ({item['error']})")
        else:
            lines.append(
                f"bert-base per-weight step ({item['mask_params']:,} masks, {item['precision']}): peak RSS "
                f"{item['peak_rss_mb']:.0f} MB (before the step {item['rss_before_step_mb']:.0f} MB), "
                f"step {item['second_step_s']:.1f} s"
            )
    lines.append(
        "headline: speedup_vs_naive "
        + ", ".join(f"{k} {v:.2f}x" for k, v in res["speedup_vs_naive"].items())
        + "; peak_fraction "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in res["peak_fraction"].items())
        + f"; eval {res['eval_speedup_vs_naive']:.1f}x; MLP cache {res['mlp_cache_speedup']:.1f}x, packed "
        f"{res['mlp_packed_speedup']:.1f}x; packing "
        + ", ".join(f"K={k} {v:.2f}x" for k, v in res["pack_throughput_vs_solo"].items())
        + f"; load at the end {os.getloadavg()[0]:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short version (shorter windows and subsets)")
    parser.add_argument(
        "--smoke", action="store_true", help="check that every part runs: one step each on small subsets (no timing)"
    )
    parser.add_argument("--out", default="bench-out/train_speed.json", help="JSON output path")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: $SUBPROBE_DATA or ../shared/data)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile lever (minutes)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, data_root(args.data_dir))))
        return 0
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(table(result))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
