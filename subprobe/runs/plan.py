"""What a run would do, without doing it: ``subprobe probe --dry-run`` (:func:`subprobe.api.dry_run`).

A :class:`Plan` holds the resolved settings that differ from the defaults, each with where it came from (a flag,
a config file, the profile, a default), the data files the run would read (the embedded treebank when that is
what it would use), the run directory and what it holds now, and the estimated optimiser steps. For probes with
masks, :func:`mask_table` lists what would be masked. Nothing is written; the model is loaded only for the mask
table, the training file is read to count its sentences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subprobe.config import ProbeConfig
from subprobe.runs.directory import RunDir, default_out


@dataclass
class Plan:
    """A resolved run before it runs (see the module docstring)."""

    config: ProbeConfig
    #: ``(setting, value, where it came from)`` for every setting that differs from its default
    settings: list[tuple[str, Any, str]]
    data: dict[str, Path | None]
    #: one line when the run would read the embedded treebank, else None
    embedded: str | None
    run_dir: Path
    #: what the run directory holds now (:meth:`subprobe.runs.RunDir.status`)
    run_dir_status: str
    train_sentences: int
    steps_per_epoch: int
    steps: int
    dev_checks: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The plan as plain values (``Result.metrics`` of a dry run)."""
        return {
            "settings": {name: {"value": value, "from": where} for name, value, where in self.settings},
            "data": {split: str(path) if path else None for split, path in self.data.items()},
            "run_dir": str(self.run_dir), "run_dir_status": self.run_dir_status,
            "train_sentences": self.train_sentences, "steps_per_epoch": self.steps_per_epoch, "steps": self.steps,
            "dev_checks": self.dev_checks,
        }

    def format(self) -> str:
        """The lines ``--dry-run`` prints."""
        cfg = self.config
        lines = [f"dry run: {cfg.task} / {cfg.probe} / {cfg.setting} on {cfg.model} (nothing is trained or written)",
                 "settings that differ from the defaults:"]
        width = max([len(name) for name, _, _ in self.settings] + [8])
        for name, value, where in self.settings:
            if name == "dry_run":
                continue
            lines.append(f"  {name:<{width}}  {_show(value):<24} {where}")
        lines.append("data:")
        for split, path in self.data.items():
            lines.append(f"  {split:<5} {path if path is not None else 'none'}")
        if self.embedded:
            lines.append(f"  ({self.embedded})")
        state = {"missing": "new", "empty": "exists, empty", "finished": "holds a finished run",
                 "checkpoint": "holds an interrupted run", "started": "holds a run that has not checkpointed yet",
                 "foreign": "holds files that are not a subprobe run"}.get(self.run_dir_status, self.run_dir_status)
        lines.append(f"run directory: {self.run_dir} ({state})")
        lines.append(
            f"estimated steps: {self.steps:,} ({cfg.epochs} epoch(s) x {self.steps_per_epoch:,} batches of "
            f"{cfg.batch_size} from {self.train_sentences:,} training sentences, before sentences over the model's "
            f"length limit are dropped); {self.dev_checks:,} dev check(s), every {cfg.eval_every} steps"
        )
        lines.extend(self.notes)
        return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plan_run(given: ProbeConfig, resolved: ProbeConfig, task, sources: dict[str, str] | None = None) -> Plan:
    """The :class:`Plan` of ``resolved`` (``given`` resolved; ``task`` its task) whose explicit settings came from
    ``sources`` (``setting -> "flag --x"``, ``"config file F"``; see :func:`subprobe.resolve.setting_sources`)."""
    from subprobe.data.sources import embedded_note, split_paths
    from subprobe.resolve import setting_sources

    paths = split_paths(task, resolved)
    sentences = len(task.read(paths["train"]))
    if resolved.max_train_samples is not None:
        sentences = min(sentences, resolved.max_train_samples)
    per_epoch = math.ceil(sentences / resolved.batch_size)
    steps = per_epoch * resolved.epochs
    out = Path(resolved.out) if resolved.out else default_out(resolved)
    status = RunDir(out).status()
    notes = []
    if status in ("finished", "checkpoint", "started") and not resolved.overwrite:
        notes.append(f"a real run would be refused: {out} exists; --resume {out} continues it, --overwrite "
                     "replaces it")
    elif status == "foreign":
        notes.append(f"a real run would be refused: {out} holds files that are not a subprobe run")
    return Plan(resolved, setting_sources(given, resolved, sources), paths, embedded_note(paths), out, status,
                sentences, per_epoch, steps, steps // resolved.eval_every + (1 if steps % resolved.eval_every else 0),
                notes)


def mask_table(cfg: ProbeConfig, echo=print) -> dict:
    """Print what would be masked (every matrix, its block and number of mask parameters; the coverage); returns
    ``matrices``, ``masked_weights``, ``mask_params``, ``coverage`` and ``granularity_fallbacks``."""
    import sys

    from subprobe.masking.layouts import Granularity
    from subprobe.masking.shared import num_masks
    from subprobe.masking.subnetwork import describe_fallbacks, granularity_fallbacks, install_masks
    from subprobe.models.loading import load_encoder
    from subprobe.models.targets import discover

    encoder, _ = load_encoder(cfg.model)
    found = discover(encoder, getattr(encoder.config, "model_type", ""), cfg.target_modules, cfg.allow_partial)
    for note in found.notes:
        echo(f"subprobe: {note}", file=sys.stderr)
    masked = install_masks(encoder, found.targets, Granularity.parse(cfg.granularity), cfg.layout,
                           encoder.config.hidden_size)
    lines = [f"{'matrix':<48} {'role':<8} {'shape':>11} {'block':>11} {'masks':>10}  path"]
    for m in masked:
        shape = "x".join(map(str, m.weight.shape))
        block = "x".join(map(str, m.block))
        lines.append(f"{m.name:<48} {m.role:<8} {shape:>11} {block:>11} {m.log_alpha.numel():>10,}  {m.path}")
    n_masks = num_masks(masked)  # a mask shared by several matrices (head, layer) once
    n_weights = sum(m.weight.numel() for m in masked)
    lines.append(
        f"{len(masked)} matrices, {n_weights:,} masked weights, {n_masks:,} mask parameters "
        f"(granularity {cfg.granularity}, layout {masked[0].layout if masked else cfg.layout})"
    )
    fallbacks = granularity_fallbacks(masked)
    lines.extend(describe_fallbacks(cfg.granularity, fallbacks))
    lines.append(found.summary())
    echo("\n".join(lines))
    return {"matrices": len(masked), "masked_weights": n_weights, "mask_params": n_masks,
            "coverage": found.coverage_dict(), "granularity_fallbacks": fallbacks}
