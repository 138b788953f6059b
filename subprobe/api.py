"""Python entry point: ``subprobe.probe(config) -> Result``.

A run reads as: prepare the data (:func:`prepare_data`) -> build the probe (:func:`build`) -> train
(:func:`train_probe`) -> score the splits (:func:`score_splits`) -> write the run directory
(:func:`write_results`); :func:`probe` checks the configuration first and runs them in order.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from subprobe.config import ProbeConfig
from subprobe.data.pipeline import NEXT_BLOCK, RawSplits, add_next_block, read_splits
from subprobe.errors import ConfigError
from subprobe.resolve import resolve
from subprobe.runs import RunDir, default_out
from subprobe.runs.result import MaskFacts, Result, TrainFacts, build_metrics, finished
from subprobe.runs.resume import check_same_config, open_run_dir, record_resume, resume_config

__all__ = ["Result", "dry_run", "probe", "resume", "set_seed"]  # several runs at once: subprobe.many.probe_many


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (every CUDA device too)."""
    from subprobe.device import seed_everything

    seed_everything(seed)


def probe(config: ProbeConfig, *, echo=print, resume: bool = False) -> Result:
    """Run one probe as described by ``config``; writes the run directory and returns the result.

    ``resume=True`` continues the run in ``config.out`` instead of refusing an existing directory:
    a finished run is returned as it is, an interrupted one continues from its checkpoint, a missing
    or empty directory starts a new run (see :mod:`subprobe.runs.resume`; a sweep runner can use this).
    Several runs in one process, sharing the frozen encoder where they can: :func:`subprobe.many.probe_many`.
    """
    from subprobe.training import distributed

    ranks = distributed.from_env()  # torchrun / accelerate launch: one of several processes of this run
    planned = plan(config, echo=echo, resume=resume, quiet=not ranks.main)
    if isinstance(planned, Result):
        return planned
    if not ranks.main:
        echo = _silent  # rank 0 reports
    raw = read_data(planned, echo)  # before anything is written or loaded: bad data fails fast
    device, cfg = _device_and_precision(planned.cfg, config, echo)  # a missing GPU fails before anything is written
    if ranks.active and device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    joined = distributed.start(ranks, device)
    try:
        return _probe(cfg, planned.task, RunDir(planned.out), planned.paths, raw, device, resume, ranks, echo)
    finally:
        distributed.stop(joined)


@dataclass
class Plan:
    """A run checked and about to start: its resolved configuration, configured task, run directory and data files
    (see :func:`plan`)."""

    cfg: ProbeConfig
    task: object  # subprobe.tasks.base.Task, configured for cfg
    out: Path
    paths: dict  # split -> data file (None: the split is not there)


def plan(config: ProbeConfig, *, echo=print, resume: bool = False, quiet: bool = False) -> Plan | Result:
    """``config`` resolved and checked, before anything is read, loaded or written: the :class:`Plan` of the run,
    or its :class:`Result` already (``--dry-run``; with ``resume``, a run that has finished). ``quiet``: say nothing
    about a finished run (a data-parallel process other than rank 0)."""
    from subprobe.data.sources import split_paths

    if config.dry_run:
        return dry_run(config, echo=echo)
    cfg, task = _checked(config)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    if resume and RunDir(out).finished and not cfg.overwrite:
        _, cfg = _device_and_precision(cfg, config, _silent)  # as the run saved it: a profile's bf16 may be fp32
        return finished_result(cfg, out, echo=_silent if quiet else echo)
    return Plan(cfg, task, out, split_paths(task, cfg))


def read_data(planned: Plan, echo=print) -> RawSplits:
    """The splits a planned run reads (the next MDL block added, a control task's labels drawn); bad data is one
    error line here, before anything is written or loaded."""
    from subprobe.data.sources import embedded_note

    cfg, task, paths = planned.cfg, planned.task, planned.paths
    note = embedded_note(paths)  # no data given: the embedded treebank, said once
    if note:
        echo(note, file=sys.stderr)
    raw = read_splits(task, paths, cfg.max_train_samples, cfg.max_eval_samples)
    if cfg.mdl_block_end is not None:  # MDL: the next block of training sentences, coded after training
        add_next_block(raw, cfg.max_train_samples, cfg.mdl_block_end)
    if cfg.control:  # Hewitt & Liang's control task: every split's labels a seeded function of the word type
        from subprobe.data.control import apply_control

        raw = apply_control(task, raw, cfg.control_seed)
    return raw


def _checked(config: ProbeConfig):
    """``config`` resolved, with a control's source-run units, and its task configured; settings the task or the
    installed trackers cannot serve are refused here, before anything is loaded or written."""
    from subprobe.runs.tracking import check_available as check_trackers
    from subprobe.tasks.registry import get_task

    cfg = with_source_masks(resolve(config))  # controls take the source run's granularity and layout
    task = get_task(cfg.task)
    task.configure(cfg)
    if cfg.predict and not task.writes_predictions():  # refused before anything trains
        raise ConfigError(f"--predict is not available for --task {cfg.task}; drop --predict")
    check_trackers(cfg.report_to)  # a missing tracker extra is refused before anything trains
    return cfg, task


def resume(run_dir: str | Path, *, echo=print, **overrides) -> Result:
    """Continue the run in ``run_dir`` with the configuration saved there (see :mod:`subprobe.runs.resume`)."""
    return probe(resume_config(run_dir, **overrides), echo=echo, resume=True)


def finished_result(cfg: ProbeConfig, out: Path, *, echo=print) -> Result:
    """The Result of a run that has already finished (nothing is trained)."""
    check_same_config(cfg, out)
    result = finished(cfg, RunDir(out))
    echo(f"{out}: this run has already finished; nothing to resume")
    echo(result.summary())
    return result


def _silent(*args, **kwargs) -> None:
    pass


@dataclass
class Prepared:
    """The loaded encoder and the encoded, labelled splits of a run."""

    encoder: torch.nn.Module
    tokenizer: object
    splits: dict  # split -> subprobe.data.batching.Dataset
    vocabs: dict  # field -> subprobe.data.vocab.LabelVocab
    pad_id: int


def _probe(cfg, task, run: RunDir, paths, raw: RawSplits, device, resume, ranks, echo) -> Result:
    """The run itself (``probe`` after its checks); with several processes only rank 0 writes the run directory."""
    from subprobe.runs.tracking import open_tracker
    from subprobe.training import distributed

    # rank 0 prepares the run directory; every process continues from the checkpoint it found
    checkpoint = distributed.on_main(ranks, lambda: open_run_dir(cfg, run.path, paths, resume=resume, echo=echo))
    set_seed(cfg.seed)
    started = time.perf_counter()
    data = prepare_data(cfg, task, raw, device, echo)
    built, head, reset_params = build(cfg, task, data, device)
    if ranks.main:  # only rank 0 of a data-parallel run writes
        start_run_dir(run, cfg, paths, data.vocabs, checkpoint, device, ranks, echo)
    fill_cached_features(built, data, cfg)
    # --report-to: the resolved config now, log records while training (rank 0 only)
    tracker = open_tracker(cfg if ranks.main else dataclasses.replace(cfg, report_to=None), run.path)
    outcome = train_probe(cfg, task, built, data, run, checkpoint, tracker, ranks, echo)
    if not ranks.main:
        tracker.close()
    # rank 0 evaluates and writes the run directory while the others wait for it (its error is theirs): a process
    # that left the process group while rank 0 was still working aborted under gloo
    finished: list[Result] = []
    distributed.on_main(ranks, lambda: finished.append(
        finish_run(cfg, task, built, head, reset_params, data, run, outcome, tracker, started, echo)))
    return finished[0] if finished else Result(cfg, {}, None, None, outcome.history)


def finish_run(cfg: ProbeConfig, task, built, head, reset_params: int, data: Prepared, run: RunDir, outcome, tracker,
               started: float, echo) -> Result:
    """After training (rank 0 of a data-parallel run): score the splits, write the run directory (``metrics.json``
    last but the checkpoint's removal), close the tracker, write predictions; the run's Result (its summary
    echoed)."""
    from subprobe.metrics.bootstrap import confidence_intervals
    from subprobe.metrics.bootstrap import method as bootstrap_method

    scores, soft_scores, predictions, statistics = score_splits(cfg, task, built, data)
    codelength = None
    if NEXT_BLOCK in data.splits:  # MDL: the next block's labels coded with this probe
        from subprobe.training.codelength import code_block

        codelength = code_block(cfg, task, built, data.splits, data.vocabs, data.pad_id)
    subnetwork = None
    if built.masked:
        from subprobe.masking.subnetwork import Subnetwork

        subnetwork = Subnetwork.from_modules(built.masked, cfg.granularity, cfg.model)
    from subprobe.models.loading import num_attention_heads
    from subprobe.probes.registry import probe_family

    metrics = build_metrics(
        task=cfg.task,
        probe=cfg.probe,
        setting=cfg.setting,
        model=cfg.model,
        primary_metric=task.primary_metric,
        task_facts={  # e.g. dep: how heads were decoded for every score below; a control task and its seed
            **({"control": True, "control_seed": cfg.control_seed} if cfg.control else {}), **task.run_facts(),
        },
        scores=scores,
        soft_scores=soft_scores,
        intervals={key: confidence_intervals(stats, task.score) for key, stats in statistics.items()},
        interval_method=bootstrap_method(),
        masks=MaskFacts.of(subnetwork) if subnetwork is not None else None,
        mask_source=mask_source_facts(cfg, outcome.projection) if subnetwork is not None else None,
        coverage=built.coverage,  # masked weights / block projection weights, missing roles
        granularity_fallbacks=built.granularity_fallbacks,
        num_attention_heads=num_attention_heads(data.encoder.config),
        reset_params=reset_params,
        probe_params=built.probe_params,
        bits=built.bits(),
        bits_note=probe_family(cfg.probe).bits_note,
        head_params=sum(p.numel() for p in head.parameters()),
        sentences={k: len(v.encoded) for k, v in data.splits.items()},
        dropped_long={k: v.dropped for k, v in data.splits.items()},
        train=TrainFacts(
            outcome.steps, outcome.total_steps, outcome.stopped_early, outcome.seconds, outcome.words_per_second
        ),
        codelength=codelength,
        wall_seconds=time.perf_counter() - started,
    )
    write_results(run, metrics, head, built, subnetwork, statistics)
    tracker.log_final(metrics, outcome.steps)
    tracker.close()
    if cfg.predict:
        for split, preds in predictions.items():
            task.write_predictions(
                data.splits[split], preds, data.vocabs, run.predictions_path(split, task.prediction_suffix)
            )
    result = Result(cfg, metrics, run.path, subnetwork, outcome.history)
    echo(result.summary())
    return result


def prepare_data(cfg: ProbeConfig, task, raw: RawSplits, device: torch.device, echo) -> Prepared:
    """Load the encoder and tokenizer, then encode the splits and attach their labels (see subprobe.data.pipeline)."""
    from subprobe.data.pipeline import prepare_splits
    from subprobe.models.attention import attention_for
    from subprobe.runs.rebuild import load_model

    loaded = load_model(cfg.model, attention_for(device.type, cfg.precision))
    prepend_id = _root_token(loaded.encoder, loaded.tokenizer, cfg, task, echo)
    splits, vocabs = prepare_splits(
        task, raw, loaded.tokenizer, loaded.max_length, long_policy=cfg.long_sentences, prepend_id=prepend_id,
        echo=echo,
    )
    if not splits["train"].encoded:
        raise ConfigError("the training set is empty after filtering; check --train and --max-train-samples")
    return Prepared(loaded.encoder, loaded.tokenizer, splits, vocabs, loaded.pad_id)


def build(cfg: ProbeConfig, task, data: Prepared, device: torch.device):
    """The probe on ``device``: the encoder in its setting, the task head, masks or adapters.

    Returns the built probe, its head and the number of parameters the setting re-initialised."""
    from subprobe.models.loading import enable_gradient_checkpointing
    from subprobe.runs.rebuild import assemble

    built, head, reset_params = assemble(cfg, task, data.encoder, data.vocabs, fixed_masks=fixed_masks(cfg),
                                         seed=cfg.seed)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(data.encoder)
    built.model.to(device)  # encoder, masks, head (batches and cached features follow the model)
    return built, head, reset_params


def _source_run(cfg: ProbeConfig) -> RunDir | None:
    """The run that --random-mask-like / --complement-of names (None for a learnt mask)."""
    from subprobe.probes.registry import probe_family

    path = cfg.random_mask_like or cfg.complement_of
    if not probe_family(cfg.probe).masks or not path:
        return None
    flag = "--random-mask-like" if cfg.random_mask_like else "--complement-of"
    return RunDir(path).require_finished(RunDir.MASKS, kind="subnetwork run", flag=flag,
                                         hint="give the --out directory of a finished subnetwork run")


def with_source_masks(cfg: ProbeConfig) -> ProbeConfig:
    """``cfg`` with a control's granularity and layout set to its source run's (a different explicit value is an
    error: the control must have the same mask units)."""
    run = _source_run(cfg)
    if run is None:
        return cfg
    source = run.read_config()
    _check_same_weights(cfg, source, run)
    defaults = {f.name: f.default for f in dataclasses.fields(ProbeConfig)}
    for name in ("granularity", "layout"):
        ours, theirs = getattr(cfg, name), getattr(source, name)
        if ours != theirs and ours != defaults[name]:
            raise ConfigError(f"--{name} {ours}: the source run {run.path} has --{name} {theirs}, and a control keeps "
                              f"its mask units; drop --{name}")
    return dataclasses.replace(cfg, granularity=source.granularity, layout=source.layout)


def _check_same_weights(cfg: ProbeConfig, source: ProbeConfig, run: RunDir) -> None:
    """A mask control runs on the weights its source mask was found in: the same model (same files), the same
    setting and, for a reset model, the same initialiser and reset seed. Else one ConfigError line."""
    from subprobe.models.loading import same_model

    flag = "--random-mask-like" if cfg.random_mask_like else "--complement-of"
    names = ["setting"] + (["init", "reset_seed"] if "pretrained" not in (cfg.setting, source.setting) else [])
    differ = [n for n in names if getattr(cfg, n) != getattr(source, n)]
    if not same_model(cfg.model, source.model):
        differ.insert(0, "model")
    if differ:
        theirs = " ".join(f"--{n.replace('_', '-')} {getattr(source, n)}" for n in differ)
        ours = " ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in differ)
        raise ConfigError(f"{flag} {run.path}: the source mask was found with {theirs}, this run has {ours}; a "
                          f"control keeps the weights of its source run: give {theirs} or another source run")


def fixed_masks(cfg: ProbeConfig):
    """The frozen mask of a --random-mask-like or --complement-of run (a Subnetwork), None for a learnt one."""
    run = _source_run(cfg)
    if run is None:
        return None
    from subprobe.masking.fixed import fixed_mask

    seed = cfg.seed if cfg.mask_seed is None else cfg.mask_seed
    return fixed_mask(cfg.mask_source, run.read_masks(), seed)


def mask_source_facts(cfg: ProbeConfig, projection=None) -> dict:
    """``metrics.json``'s ``mask_source``, ``mask_source_run``, ``mask_seed`` and ``target_density`` (with its
    rounding, ``projection``: :class:`subprobe.masking.constraint.Projection`)."""
    source_run = cfg.random_mask_like or cfg.complement_of
    facts = {"mask_source": cfg.mask_source, "mask_source_run": source_run, "target_density": cfg.target_density}
    if projection is not None:
        facts.update(projection.facts())
    if cfg.random_mask_like:
        facts["mask_seed"] = cfg.seed if cfg.mask_seed is None else cfg.mask_seed
    return facts


def start_run_dir(run: RunDir, cfg, paths, vocabs, checkpoint, device, ranks, echo) -> None:
    """A new run writes its configuration, vocabularies and environment; a resumed one records the resumption."""
    from subprobe.data.sources import file_record
    from subprobe.device import device_name
    from subprobe.env import environment_stamp

    if checkpoint is not None:
        record_resume(run.path, cfg, vocabs, checkpoint, echo=echo)
        return
    run.write_config(cfg)
    run.write_vocab(vocabs)
    stamp = environment_stamp(cfg.seed, device_name(device))
    stamp["data"] = {s: file_record(p) for s, p in paths.items() if p is not None}
    if ranks.active:  # data-parallel: this many processes shared every batch
        stamp["processes"] = ranks.world
    run.write_env(stamp)


def fill_cached_features(built, data: Prepared, cfg: ProbeConfig) -> None:
    """Frozen-encoder probes with cached features run the encoder once per split, here."""
    from subprobe.probes.cached import CachedFeatures

    if isinstance(built.model.features, CachedFeatures):
        for ds in data.splits.values():
            built.model.features.fill(ds, cfg.word_pooling, data.pad_id)


def train_probe(cfg: ProbeConfig, task, built, data: Prepared, run: RunDir, checkpoint, tracker, ranks, echo):
    """Train (or continue from ``checkpoint``); rank 0 logs and checkpoints into ``run``."""
    from subprobe.training.trainer import train

    try:
        return train(
            built,
            task,
            data.splits["train"],
            data.splits.get("dev"),
            data.vocabs,
            cfg if ranks.main else dataclasses.replace(cfg, progress=False),
            pad_id=data.pad_id,
            log_path=run.log_path if ranks.main else None,
            checkpoint_path=run.checkpoint_path if ranks.main else None,
            resume_from=checkpoint,
            tracker=tracker,
            ranks=ranks,
        )
    except BaseException as exc:
        tracker.close(failed=True)
        if isinstance(exc, KeyboardInterrupt):
            echo(f"interrupted; continue with: subprobe probe --resume {run.path}", file=sys.stderr)
        raise


def score_splits(cfg: ProbeConfig, task, built, data: Prepared) -> tuple[dict, dict, dict, dict]:
    """Scores of dev and test (None for a missing split): with the hard mask for subnetworks, plus the soft
    mask's; the predictions of every scored split; and the per-sentence statistics of every score (``dev``,
    ``dev_soft``, ...: :meth:`subprobe.tasks.base.Task.statistics`, what the bootstrap resamples)."""
    from subprobe.training.evaluate import evaluate

    eval_kwargs = dict(pooling=cfg.word_pooling, pad_id=data.pad_id)
    is_subnetwork = bool(built.masked)
    scores, soft_scores, predictions, statistics = {}, {}, {}, {}
    for split in ("dev", "test"):
        if split not in data.splits:
            scores[split] = None
            continue
        dataset = data.splits[split]
        mode = "hard" if is_subnetwork else None
        scores[split], predictions[split] = evaluate(built.model, task, dataset, data.vocabs, mask_mode=mode,
                                                     **eval_kwargs)
        statistics[split] = task.statistics(dataset, predictions[split], data.vocabs)
        if is_subnetwork:
            soft_scores[split], soft = evaluate(built.model, task, dataset, data.vocabs, mask_mode="soft",
                                                **eval_kwargs)
            statistics[f"{split}_soft"] = task.statistics(dataset, soft, data.vocabs)
    return scores, soft_scores, predictions, statistics


def write_results(run: RunDir, metrics: dict, head, built, subnetwork, statistics: dict | None = None) -> None:
    """Masks, head and adapter weights, the per-sentence statistics of the scores, then ``metrics.json`` (it
    marks the run finished); the checkpoint goes."""
    if subnetwork is not None:
        run.write_masks(subnetwork)
    if statistics:
        run.write_sentence_stats(statistics)
    run.write_head(head)
    if built.model.adapter is not None:  # MLP-1: what `subprobe predict` / load_run need besides the head
        run.write_adapter(built.model.adapter)
    run.write_metrics(metrics)  # first: nothing that fails after training may cost the metrics
    run.remove_checkpoint()  # the run is finished: metrics.json marks it


def _device_and_precision(cfg: ProbeConfig, given: ProbeConfig, echo) -> tuple[torch.device, ProbeConfig]:
    """The run's device, and ``cfg`` with a profile's bf16 turned to fp32 where the device lacks bf16."""
    from subprobe.device import effective_precision, resolve_device

    device = resolve_device(cfg.device)
    precision, note = effective_precision(cfg.precision, device, explicit=given.precision is not None)
    if note:
        echo(f"subprobe: {note}", file=sys.stderr)
        cfg = dataclasses.replace(cfg, precision=precision)
    return device, cfg


def _root_token(encoder, tokenizer, cfg: ProbeConfig, task, echo) -> int | None:
    """The token prepended to every sentence so that slot 0 (ROOT) is not a word: a decoder's BOS
    (None when the tokenizer adds [CLS]/<s> itself); see subprobe.models.tokenization."""
    from subprobe.models.tokenization import adds_leading_special, is_causal, root_prefix_id

    prepend = root_prefix_id(tokenizer)
    if prepend is None and task.needs_root and not adds_leading_special(tokenizer):
        raise ConfigError(
            f"--model {cfg.model}: its tokenizer adds no leading token and has no BOS/EOS token, so --task "
            f"{task.name} has no ROOT state; use a model whose tokenizer has a BOS token"
        )
    if is_causal(encoder.config) and cfg.word_pooling != "last":
        echo(
            f"subprobe: --word-pooling {cfg.word_pooling} on a left-to-right model: only a word's last subword has "
            "seen the whole word (--word-pooling last, the default)",
            file=sys.stderr,
        )
    return prepend


def dry_run(config: ProbeConfig, *, echo=print, sources: dict[str, str] | None = None) -> Result:
    """Print what ``probe(config)`` would do, without training or writing anything: the settings that differ from
    the defaults and where each came from (``sources``: ``setting -> "flag --x"`` or ``"config file F"``; the
    command line passes them), the data files, the run directory, the estimated steps and, for probes with masks,
    what would be masked (see :mod:`subprobe.runs.plan`). ``Result.metrics`` holds the same facts."""
    from subprobe.probes.registry import probe_family
    from subprobe.runs.plan import mask_table, plan_run

    cfg, task = _checked(config)
    sources = dict(sources or {})
    source_run = cfg.random_mask_like or cfg.complement_of
    for name in ("granularity", "layout"):  # a mask control takes its source run's units
        if source_run and getattr(cfg, name) != getattr(config, name):
            sources[name] = f"the source run {source_run}"
    plan = plan_run(config, cfg, task, sources)
    echo(plan.format())
    metrics = plan.as_dict()
    if probe_family(cfg.probe).masks:
        metrics.update(mask_table(cfg, echo=echo))
    else:
        echo(f"masks: none (--probe {cfg.probe} has no mask over the encoder's weights)")
    return Result(cfg, metrics, None)
