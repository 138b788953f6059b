"""Python entry point: ``subprobe.probe(config) -> Result``."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError


@dataclass
class Result:
    """Outcome of one probing run."""

    config: ProbeConfig
    metrics: dict
    run_dir: Path | None
    subnetwork: object | None = None  # subprobe.Subnetwork for subnetwork probes
    history: list[dict] = field(default_factory=list)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def probe(config: ProbeConfig, *, echo=print, resume: bool = False) -> Result:
    """Run one probe as described by ``config``; writes the run directory and returns the result.

    ``resume=True`` continues the run in ``config.out`` instead of refusing an existing directory:
    a finished run is returned as it is, an interrupted one continues from its checkpoint, a missing
    or empty directory starts a new run (see :mod:`subprobe.resume`; a sweep runner can use this).
    """
    from subprobe.data.batching import encode_dataset
    from subprobe.data.sources import sha256_of, split_paths
    from subprobe.env import environment_stamp
    from subprobe.masking.subnetwork import Subnetwork
    from subprobe.models.loading import load_encoder
    from subprobe.models.reset import apply_setting
    from subprobe.probes.cached import CachedFeatures
    from subprobe.probes.registry import build_probe
    from subprobe.resume import finished_result, open_run_dir, record_resume
    from subprobe.runs import write_json, write_text
    from subprobe.tasks.registry import get_task
    from subprobe.training.checkpoint import CHECKPOINT_NAME
    from subprobe.training.evaluate import evaluate
    from subprobe.training.trainer import train

    cfg = config.resolved()
    task = get_task(cfg.task)
    task.configure(cfg)
    if cfg.dry_run:
        return dry_run(cfg, echo=echo)
    out = Path(cfg.out) if cfg.out else cfg.default_out()
    if resume and (out / "metrics.json").is_file() and not cfg.overwrite:
        return finished_result(cfg, out, echo=echo)
    paths = split_paths(task, cfg)
    raw, label_sentences = read_splits(task, paths, cfg)  # before anything is written or loaded: bad data fails fast
    checkpoint = open_run_dir(cfg, out, paths, resume=resume, echo=echo)
    set_seed(cfg.seed)
    started = time.perf_counter()
    encoder, tokenizer = load_encoder(cfg.model)
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), encoder.config.max_position_embeddings)

    splits = {}
    for split, sentences in raw.items():
        splits[split] = encode_dataset(split, sentences, tokenizer, max_length, cfg.long_sentences)
        if splits[split].dropped:
            echo(
                f"{split}: dropped {splits[split].dropped} sentence(s) longer than {max_length} subwords",
                file=sys.stderr,
            )
    vocabs = task.build_vocabs(label_sentences)
    for ds in splits.values():
        task.attach_labels(ds, vocabs)
    if not splits["train"].encoded:
        raise ConfigError("the training set is empty after filtering; check --train and --max-train-samples")

    reset_params = apply_setting(encoder, cfg.setting, cfg.init, cfg.reset_seed)
    set_seed(cfg.seed)
    head = task.build_head(encoder.config.hidden_size, vocabs, **task.head_options(cfg))
    built = build_probe(cfg, encoder, head)
    if checkpoint is None:
        write_text(out / "config.yaml", cfg.to_yaml())
        write_json(out / "vocab.json", {k: list(v.labels) for k, v in vocabs.items()})
        stamp = environment_stamp(cfg.seed)
        stamp["data"] = {s: {"path": str(p), "sha256": sha256_of(p)} for s, p in paths.items() if p is not None}
        write_json(out / "env.json", stamp)
    else:
        record_resume(out, cfg, vocabs, checkpoint, echo=echo)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if isinstance(built.model.features, CachedFeatures):
        for ds in splits.values():
            built.model.features.fill(ds, cfg.word_pooling, pad_id)
    try:
        outcome = train(
            built,
            task,
            splits["train"],
            splits.get("dev"),
            vocabs,
            cfg,
            pad_id=pad_id,
            log_path=out / "log.jsonl",
            checkpoint_path=out / CHECKPOINT_NAME,
            resume_from=checkpoint,
        )
    except KeyboardInterrupt:
        echo(f"interrupted; continue with: subprobe probe --resume {out}", file=sys.stderr)
        raise

    eval_kwargs = dict(pooling=cfg.word_pooling, pad_id=pad_id)
    is_subnetwork = bool(built.masked)
    metrics: dict = {
        "task": cfg.task,
        "probe": cfg.probe,
        "setting": cfg.setting,
        "model": cfg.model,
        "primary_metric": task.primary_metric,
    }
    metrics.update(task.run_facts())  # e.g. dep: how heads were decoded for every score below
    predictions = {}
    for split in ("dev", "test"):
        if split not in splits:
            metrics[split] = None
            continue
        scores, preds = evaluate(
            built.model, task, splits[split], vocabs, mask_mode="hard" if is_subnetwork else None, **eval_kwargs
        )
        metrics[split] = scores
        predictions[split] = preds
        if is_subnetwork:
            metrics[f"{split}_soft"], _ = evaluate(
                built.model, task, splits[split], vocabs, mask_mode="soft", **eval_kwargs
            )
    subnetwork = None
    if is_subnetwork:
        subnetwork = Subnetwork.from_modules(built.masked, cfg.granularity, cfg.model)
        subnetwork.save(out / "masks.safetensors")
        metrics["mask_params"] = subnetwork.num_mask_params
        metrics["masked_weights"] = subnetwork.num_masked_weights
        metrics["density"] = subnetwork.density()
        metrics["density_by_layer"] = subnetwork.density_by("layer")
        metrics["density_by_role"] = subnetwork.density_by("role")
    metrics["reset_params"] = reset_params
    metrics["probe_params"] = built.probe_params
    metrics["bits"] = built.bits()
    metrics["bits_note"] = (
        "task-head parameters are shared by all probes and not counted"
        if cfg.probe != "linear"
        else "the linear probe is the task head: its parameters are counted"
    )
    metrics["head_params"] = sum(p.numel() for p in head.parameters())
    metrics["sentences"] = {k: len(v.encoded) for k, v in splits.items()}
    metrics["dropped_long"] = {k: v.dropped for k, v in splits.items()}
    metrics["train"] = {
        "steps": outcome.steps,
        "total_steps": outcome.total_steps,
        "stopped_early": outcome.stopped_early,
        "seconds": round(outcome.seconds, 1),
        "words_per_second": round(outcome.words_per_second, 1),
    }
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors"))
    if cfg.predict:
        for split, preds in predictions.items():
            task.write_predictions(splits[split], preds, vocabs, out / f"predictions-{split}{task.prediction_suffix}")
    write_json(out / "metrics.json", metrics)
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # the run is finished: metrics.json marks it
    echo(summary(metrics, out))
    return Result(cfg, metrics, out, subnetwork, outcome.history)


def read_splits(task, paths: dict, cfg: ProbeConfig) -> tuple[dict, list]:
    """Sentences of every available split, cut to ``--max-train-samples`` / ``--max-eval-samples``,
    and the whole training file's sentences, whose labels make the vocabularies: a training budget
    must not turn a rare dev label (EWT's ``goeswith``) into an unseen one."""
    raw, label_sentences = {}, []
    for split, path in paths.items():
        if path is None:
            continue
        sentences = task.read(path)
        if split == "train":
            label_sentences = sentences
        limit = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
        raw[split] = sentences[:limit] if limit is not None else sentences
    return raw, label_sentences


def summary(metrics: dict, run_dir: Path | None) -> str:
    """A few lines describing a finished run."""
    key = metrics["primary_metric"]
    lines = [f"subprobe: {metrics['task']} / {metrics['probe']} / {metrics['setting']} on {metrics['model']}"]
    for split in ("dev", "test"):
        if metrics.get(split):
            text = f"  {split:<4} {key} {metrics[split][key]:.4f}"
            if metrics.get(f"{split}_soft"):
                soft = metrics[f"{split}_soft"][key]
                text = f"  {split:<4} {key} hard mask {metrics[split][key]:.4f} | soft mask {soft:.4f}"
            lines.append(text)
    if "density" in metrics:
        lines.append(
            f"  mask params {metrics['mask_params']:,} | density {metrics['density']:.4f} "
            "(hard mask, fraction of masked weights kept)"
        )
    bits = metrics["bits"]
    lines.append(f"  complexity {bits['lower']:,.0f} .. {bits['upper']:,.0f} bits ({metrics['bits_note']})")
    train = metrics["train"]
    lines.append(
        f"  trained {train['steps']}/{train['total_steps']} steps in {train['seconds']:.0f}s "
        f"({train['words_per_second']:.0f} words/s){' (early stop)' if train['stopped_early'] else ''}"
    )
    if run_dir is not None:
        lines.append(f"  run directory {run_dir}")
    return "\n".join(lines)


def dry_run(cfg: ProbeConfig, *, echo=print) -> Result:
    """Print what would be masked and the number of mask parameters, without training."""
    from subprobe.masking.layouts import Granularity
    from subprobe.masking.subnetwork import install_masks
    from subprobe.models.loading import load_encoder
    from subprobe.models.targets import find_targets

    encoder, _ = load_encoder(cfg.model)
    targets = find_targets(encoder, getattr(encoder.config, "model_type", ""))
    masked = install_masks(encoder, targets, Granularity.parse(cfg.granularity), cfg.layout, encoder.config.hidden_size)
    lines = [f"{'matrix':<48} {'role':<8} {'shape':>11} {'block':>11} {'masks':>10}  path"]
    for m in masked:
        shape = "x".join(map(str, m.weight.shape))
        block = "x".join(map(str, m.block))
        lines.append(f"{m.name:<48} {m.role:<8} {shape:>11} {block:>11} {m.log_alpha.numel():>10,}  {m.path}")
    n_masks = sum(m.log_alpha.numel() for m in masked)
    n_weights = sum(m.weight.numel() for m in masked)
    lines.append(
        f"{len(masked)} matrices, {n_weights:,} masked weights, {n_masks:,} mask parameters "
        f"(granularity {cfg.granularity}, layout {cfg.layout})"
    )
    echo("\n".join(lines))
    metrics = {"matrices": len(masked), "masked_weights": n_weights, "mask_params": n_masks}
    return Result(cfg, metrics, None)
