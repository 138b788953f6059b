"""A run's model, built by one code path: for a new run (:mod:`subprobe.api`), the speed benchmark, and a finished
run loaded back (:func:`rebuild`: ``load_run``, ``subprobe predict``, ``subprobe export``).

* :func:`load_model`: the encoder and tokenizer, the subword limit and the padding id;
* :func:`assemble`: the encoder in the run's setting (the seeded re-initialisation of a reset run, repeated
  exactly), the task head and the probe (:func:`~subprobe.probes.registry.build_probe`);
* :func:`read_finished`: a finished run directory's resolved configuration and metrics (the one finished-run
  check, :meth:`~subprobe.runs.directory.RunDir.require_finished`);
* :func:`rebuild`: both for a finished run, with its saved mask logits, head and adapter copied in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from subprobe.config import ProbeConfig
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError
from subprobe.resolve import resolve
from subprobe.runs.directory import RunDir


@dataclass
class LoadedModel:
    """An encoder as loaded, with what encoding sentences for it needs."""

    encoder: nn.Module
    tokenizer: object
    max_length: int  # subwords per sentence at most (the tokenizer's and the position embeddings' limit)
    pad_id: int


def load_model(model: str, attn_implementation: str | None = None) -> LoadedModel:
    """The encoder and tokenizer of ``model`` (fp32; see :func:`subprobe.models.loading.load_encoder`)."""
    from subprobe.models.loading import load_encoder

    encoder, tokenizer = load_encoder(model, attn_implementation) if attn_implementation else load_encoder(model)
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), encoder.config.max_position_embeddings)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return LoadedModel(encoder, tokenizer, max_length, pad_id)


def assemble(cfg: ProbeConfig, task, encoder: nn.Module, vocabs: dict, *, fixed_masks=None, seed: int | None = None):
    """The probe of ``cfg`` over ``encoder``: the encoder in its setting, the task head and the probe family's
    build. ``seed``: seed every generator after the reset, before the head is drawn (a new run's seed).

    Returns the built probe, its head and the number of parameters the setting re-initialised."""
    from subprobe.device import seed_everything
    from subprobe.models.reset import apply_setting
    from subprobe.probes.registry import build_probe

    reset_params = apply_setting(encoder, cfg.setting, cfg.init, cfg.reset_seed)
    if seed is not None:
        seed_everything(seed)
    head = task.build_head(encoder.config.hidden_size, vocabs, **task.head_options(cfg))
    return build_probe(cfg, encoder, head, fixed_masks), head, reset_params


@dataclass
class FinishedRun:
    """A finished run directory, read: its resolved configuration and its ``metrics.json``."""

    run: RunDir
    config: ProbeConfig
    metrics: dict


def read_finished(run_dir: str | Path, *needs: str) -> FinishedRun:
    """The finished run in ``run_dir`` (with the files ``needs`` too), read; one ConfigError line otherwise."""
    from subprobe.runs.result import read_metrics

    run = RunDir(run_dir).require_finished(*needs)
    return FinishedRun(run, resolve(run.read_config()), read_metrics(run))


@dataclass
class Rebuilt:
    """A finished run's model with its saved weights, in eval mode (see :func:`rebuild`)."""

    run_dir: Path
    config: ProbeConfig
    metrics: dict
    vocabs: dict[str, LabelVocab]
    task: object  # subprobe.tasks.base.Task, configured as the run was
    model: nn.Module  # subprobe.probes.base.ProbeModel
    tokenizer: object
    subnetwork: object | None  # subprobe.Subnetwork for probes with masks
    max_length: int
    pad_id: int


def rebuild(run_dir: str | Path) -> Rebuilt:
    """The model of the finished run in ``run_dir`` as the run built it, its saved mask logits, head and adapter
    copied in; every weight frozen. A probe family that does not load (``loads``) is one error line."""
    from subprobe.probes.registry import families, probe_family
    from subprobe.tasks.registry import get_task

    finished = read_finished(run_dir, *RunDir.NEEDED_TO_LOAD)
    run, cfg = finished.run, finished.config
    family = probe_family(cfg.probe)
    if not family.loads:
        loadable = [f.name for f in families() if f.loads]
        raise ConfigError(
            f"{run.path}: {family.not_loadable}, so it cannot be loaded or used to predict; use a "
            f"{', '.join(loadable[:-1])} or {loadable[-1]} run"
        )
    vocabs = {k: LabelVocab(tuple(v)) for k, v in run.read_vocab().items()}
    task = get_task(cfg.task)
    task.configure(cfg)
    task.restore_facts(finished.metrics)  # e.g. the tag scheme NER scored with
    loaded = load_model(cfg.model)
    built, head, _ = assemble(cfg, task, loaded.encoder, vocabs)
    _load_weights(head, run.read_head(), run.head_path, cfg)
    subnetwork = _load_masks(run, cfg, built.masked) if built.masked else None
    if built.model.adapter is not None:
        if not run.adapter_path.is_file():
            raise ConfigError(
                f"{run.adapter_path}: missing (runs made before subprobe saved MLP-1 weights); train the run again"
            )
        _load_weights(built.model.adapter, run.read_adapter(), run.adapter_path, cfg)
    built.model.eval()
    for p in built.model.parameters():
        p.requires_grad_(False)
    return Rebuilt(run.path, cfg, finished.metrics, vocabs, task, built.model, loaded.tokenizer, subnetwork,
                   loaded.max_length, loaded.pad_id)


def _load_masks(run: RunDir, cfg: ProbeConfig, masked: list):
    """The saved subnetwork, its mask logits copied into the installed masks ``masked``."""
    subnetwork = run.read_masks()
    saved = {e.name: e.log_alpha for e in subnetwork.entries}
    if set(saved) != {m.name for m in masked}:
        raise ConfigError(f"{run.masks_path}: its matrices do not match model {cfg.model}")
    for m in masked:
        if tuple(saved[m.name].shape) != tuple(m.log_alpha.shape):
            raise ConfigError(
                f"{run.masks_path}: the mask of {m.name} has shape {tuple(saved[m.name].shape)} but "
                f"{cfg.model} with --granularity {cfg.granularity} needs {tuple(m.log_alpha.shape)}; "
                f"the files of {run.path} do not belong together: train the run again"
            )
    with torch.no_grad():
        for m in masked:
            m.log_alpha.copy_(saved[m.name])
    return subnetwork


def _load_weights(module: nn.Module, state: dict, path: Path, cfg: ProbeConfig) -> None:
    """Copy saved weights into ``module``; names or shapes that differ (a head for another vocabulary or model,
    files of two runs mixed) are one ConfigError naming the file."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc).splitlines()[0])
        raise ConfigError(
            f"{path}: does not fit the probe that {RunDir.CONFIG} and {RunDir.VOCAB} describe (model {cfg.model}; "
            f"{detail[:160]}); the files of {path.parent} do not belong together: train the run again"
        ) from None
