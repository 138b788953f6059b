"""Python entry point: ``subprobe.probe(config) -> Result``."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    """Seed python, numpy and torch (every CUDA device too)."""
    from subprobe.device import seed_everything

    seed_everything(seed)


def probe(config: ProbeConfig, *, echo=print, resume: bool = False) -> Result:
    """Run one probe as described by ``config``; writes the run directory and returns the result.

    ``resume=True`` continues the run in ``config.out`` instead of refusing an existing directory:
    a finished run is returned as it is, an interrupted one continues from its checkpoint, a missing
    or empty directory starts a new run (see :mod:`subprobe.resume`; a sweep runner can use this).
    """
    from subprobe.data.sources import split_paths
    from subprobe.resume import finished_result
    from subprobe.tasks.registry import get_task
    from subprobe.tracking import check_available as check_trackers
    from subprobe.training import distributed

    cfg = config.resolved()
    task = get_task(cfg.task)
    task.configure(cfg)
    if cfg.predict and not task.writes_predictions():  # refused before anything trains
        raise ConfigError(f"--predict is not available for --task {cfg.task}; drop --predict")
    check_trackers(cfg.report_to)  # a missing tracker extra is refused before anything trains
    if cfg.dry_run:
        return dry_run(cfg, echo=echo)
    out = Path(cfg.out) if cfg.out else cfg.default_out()
    ranks = distributed.from_env()  # torchrun / accelerate launch: one of several processes of this run
    if not ranks.main:
        echo = _silent  # rank 0 reports
    if resume and (out / "metrics.json").is_file() and not cfg.overwrite:
        return finished_result(cfg, out, echo=echo)
    paths = split_paths(task, cfg)
    raw, label_sentences = read_splits(task, paths, cfg)  # before anything is written or loaded: bad data fails fast
    device, cfg = _device_and_precision(cfg, config, echo)  # a missing GPU fails before anything is written
    if ranks.active and device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    joined = distributed.start(ranks, device)
    try:
        return _probe(cfg, config, task, out, paths, raw, label_sentences, device, resume, ranks, echo)
    finally:
        distributed.stop(joined)


def _silent(*args, **kwargs) -> None:
    pass


def _probe(cfg, config, task, out, paths, raw, label_sentences, device, resume, ranks, echo) -> Result:
    """The run itself (``probe`` after its checks); with several processes only rank 0 writes ``out``."""
    from subprobe.data.batching import encode_dataset
    from subprobe.data.sources import sha256_of
    from subprobe.device import device_name
    from subprobe.env import environment_stamp
    from subprobe.masking.subnetwork import Subnetwork
    from subprobe.models.attention import attention_for
    from subprobe.models.loading import enable_gradient_checkpointing, load_encoder
    from subprobe.models.reset import apply_setting
    from subprobe.probes.cached import CachedFeatures
    from subprobe.probes.registry import build_probe
    from subprobe.resume import open_run_dir, record_resume
    from subprobe.runs import write_json, write_text
    from subprobe.tracking import open_tracker
    from subprobe.training import distributed
    from subprobe.training.checkpoint import CHECKPOINT_NAME
    from subprobe.training.evaluate import evaluate
    from subprobe.training.trainer import train

    # rank 0 prepares the run directory; every process continues from the checkpoint it found
    checkpoint = distributed.on_main(ranks, lambda: open_run_dir(cfg, out, paths, resume=resume, echo=echo))
    set_seed(cfg.seed)
    started = time.perf_counter()
    encoder, tokenizer = load_encoder(cfg.model, attention_for(device.type, cfg.precision))
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), encoder.config.max_position_embeddings)
    prepend_id = _root_token(encoder, tokenizer, cfg, echo)

    splits = {}
    for split, sentences in raw.items():
        splits[split] = encode_dataset(split, sentences, tokenizer, max_length, cfg.long_sentences, prepend_id)
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
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    built.model.to(device)  # encoder, masks, head (batches and cached features follow the model)
    if ranks.main and checkpoint is None:  # only rank 0 of a data-parallel run writes
        write_text(out / "config.yaml", cfg.to_yaml())
        write_json(out / "vocab.json", {k: list(v.labels) for k, v in vocabs.items()})
        stamp = environment_stamp(cfg.seed, device_name(device))
        stamp["data"] = {s: {"path": str(p), "sha256": sha256_of(p)} for s, p in paths.items() if p is not None}
        if ranks.active:  # data-parallel: this many processes shared every batch
            stamp["processes"] = ranks.world
        write_json(out / "env.json", stamp)
    elif ranks.main:
        record_resume(out, cfg, vocabs, checkpoint, echo=echo)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if isinstance(built.model.features, CachedFeatures):
        for ds in splits.values():
            built.model.features.fill(ds, cfg.word_pooling, pad_id)
    # --report-to: the resolved config now, log records while training (rank 0 only)
    tracker = open_tracker(cfg if ranks.main else dataclasses.replace(cfg, report_to=None), out)
    try:
        outcome = train(
            built,
            task,
            splits["train"],
            splits.get("dev"),
            vocabs,
            cfg if ranks.main else dataclasses.replace(cfg, progress=False),
            pad_id=pad_id,
            log_path=out / "log.jsonl" if ranks.main else None,
            checkpoint_path=out / CHECKPOINT_NAME if ranks.main else None,
            resume_from=checkpoint,
            tracker=tracker,
            ranks=ranks,
        )
    except BaseException as exc:
        tracker.close(failed=True)
        if isinstance(exc, KeyboardInterrupt):
            echo(f"interrupted; continue with: subprobe probe --resume {out}", file=sys.stderr)
        raise
    if not ranks.main:  # rank 0 evaluates and writes the run directory
        tracker.close()
        return Result(cfg, {}, None, None, outcome.history)

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
    if built.coverage is not None:
        metrics["coverage"] = built.coverage  # masked weights / block projection weights, missing roles
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
    if built.model.adapter is not None:  # MLP-1: what `subprobe predict` / load_run need besides the head
        adapter = built.model.adapter.state_dict()
        save_file({k: v.detach().contiguous() for k, v in adapter.items()}, str(out / "adapter.safetensors"))
    write_json(out / "metrics.json", metrics)  # first: nothing that fails after training may cost the metrics
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # the run is finished: metrics.json marks it
    tracker.log_final(metrics, outcome.steps)
    tracker.close()
    if cfg.predict:
        for split, preds in predictions.items():
            task.write_predictions(splits[split], preds, vocabs, out / f"predictions-{split}{task.prediction_suffix}")
    echo(summary(metrics, out))
    return Result(cfg, metrics, out, subnetwork, outcome.history)


def _device_and_precision(cfg: ProbeConfig, given: ProbeConfig, echo) -> tuple[torch.device, ProbeConfig]:
    """The run's device, and ``cfg`` with a profile's bf16 turned to fp32 where the device lacks bf16."""
    import dataclasses

    from subprobe.device import effective_precision, resolve_device

    device = resolve_device(cfg.device)
    precision, note = effective_precision(cfg.precision, device, explicit=given.precision is not None)
    if note:
        echo(f"subprobe: {note}", file=sys.stderr)
        cfg = dataclasses.replace(cfg, precision=precision)
    return device, cfg


def _root_token(encoder, tokenizer, cfg: ProbeConfig, echo) -> int | None:
    """The token prepended to every sentence so that slot 0 (ROOT) is not a word: a decoder's BOS
    (None when the tokenizer adds [CLS]/<s> itself); see subprobe.models.tokenization."""
    from subprobe.models.tokenization import adds_leading_special, is_causal, root_prefix_id

    prepend = root_prefix_id(tokenizer)
    if prepend is None and cfg.task == "dep" and not adds_leading_special(tokenizer):
        raise ConfigError(
            f"--model {cfg.model}: its tokenizer adds no leading token and has no BOS/EOS token, so dependency "
            "parsing has no ROOT state; use a model whose tokenizer has a BOS token"
        )
    if is_causal(encoder.config) and cfg.word_pooling != "last":
        echo(
            f"subprobe: --word-pooling {cfg.word_pooling} on a left-to-right model: only a word's last subword has "
            "seen the whole word (--word-pooling last, the default)",
            file=sys.stderr,
        )
    return prepend


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
    from subprobe.models.targets import discover

    encoder, _ = load_encoder(cfg.model)
    found = discover(encoder, getattr(encoder.config, "model_type", ""), cfg.target_modules, cfg.allow_partial)
    for note in found.notes:
        echo(f"subprobe: {note}", file=sys.stderr)
    targets = found.targets
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
    lines.append(found.summary())
    echo("\n".join(lines))
    metrics = {"matrices": len(masked), "masked_weights": n_weights, "mask_params": n_masks}
    metrics["coverage"] = found.coverage_dict()
    return Result(cfg, metrics, None)
