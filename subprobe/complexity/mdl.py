"""``subprobe mdl``: minimum description length probing (Voita & Titov 2020, online code) for any probe.

``mdl(config)`` trains the probe of ``config`` on growing prefixes of the training data and codes each next
block with the probe trained on what came before (:mod:`subprobe.metrics.online_code`). Every block's training is
an ordinary run (:func:`subprobe.api.probe`) on a prefix (``max_train_samples = t_i``) that also codes the next
block (``mdl_block_end = t_{i+1}``), in ``OUT/blocks/<t_i>-<t_{i+1}>/``; ``OUT/mdl.json`` assembles them.
Calling it again continues: finished blocks are kept, an interrupted one resumes from its checkpoint.

Budget: a block trains ``max(epochs, ceil(min_steps / batches per epoch))`` epochs, so that the smallest prefixes
(a few sentences) still take ``min_steps`` optimiser steps (default :data:`MIN_STEPS`).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from subprobe.atomic import write_json
from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.metrics.online_code import BOUNDARIES, assemble, block_ends

__all__ = ["MDL_JSON", "MIN_STEPS", "block_configs", "mdl"]

#: The file an MDL directory's result is written to, and the folder of its block runs.
MDL_JSON = "mdl.json"
BLOCKS = "blocks"
#: The fewest optimiser steps a block's probe trains (tiny prefixes get more epochs).
MIN_STEPS = 50


def training_size(cfg: ProbeConfig) -> tuple[int, int]:
    """The MDL data size N (the training file's sentences, at most ``max_train_samples``) and the number of labels
    K, read from the training file (bad data and a task with one label fail here, before anything trains)."""
    from subprobe.data.sources import split_paths
    from subprobe.tasks.registry import get_task

    task = get_task(cfg.task)
    task.configure(cfg)
    path = split_paths(task, cfg)["train"]
    sentences = task.read(path)
    vocabs = task.build_vocabs(sentences)
    labels = len(vocabs[task.field])
    if labels < 2:
        only = ", ".join(vocabs[task.field].labels) or "none"
        raise ConfigError(f"{path}: the {cfg.task} labels of this training file are one label ({only}); MDL codes a "
                          "choice among labels and the uniform code of one label is 0 bits; use a file with two or "
                          "more labels")
    n = len(sentences) if cfg.max_train_samples is None else min(cfg.max_train_samples, len(sentences))
    return n, labels


def block_configs(cfg: ProbeConfig, n: int, min_steps: int = MIN_STEPS, out: Path | None = None,
                  boundaries: Sequence[float] = BOUNDARIES) -> list[ProbeConfig]:
    """The block runs of the online code of ``n`` sentences: training on ``[0, t_i)`` and coding ``[t_i, t_{i+1})``
    for i = 1..10, each with enough epochs for ``min_steps`` steps; with ``out``, each in ``out/blocks/...``."""
    if min_steps < 1:
        raise ConfigError(f"--min-steps must be at least 1, got {min_steps}")
    ends = block_ends(n, boundaries)
    epochs = cfg.resolved().epochs
    configs = []
    for start, end in zip(ends, ends[1:]):
        per_epoch = math.ceil(start / cfg.batch_size)
        values = {"max_train_samples": start, "mdl_block_end": end,
                  "epochs": max(epochs, math.ceil(min_steps / per_epoch))}
        if out is not None:
            values["out"] = str(out / BLOCKS / f"{start:06d}-{end:06d}")
        configs.append(dataclasses.replace(cfg, **values))
    return configs


def expand_points(points: list[dict], min_steps: int = MIN_STEPS) -> list[dict]:
    """``reproduce mdl``: every grid point's configuration values, expanded into the values of its block runs
    (:func:`block_configs`; N: the point's ``max_train_samples`` or the whole training file, read once per file)."""
    sizes: dict[tuple, int] = {}
    out = []
    for values in points:
        cfg = ProbeConfig(**values)
        resolved = cfg.resolved()
        file_key = (cfg.task, cfg.train, cfg.data_dir, cfg.control, cfg.max_train_samples)
        if file_key not in sizes:
            sizes[file_key] = training_size(resolved)[0]
        for block in block_configs(cfg, sizes[file_key], min_steps):
            out.append({**values, **{k: getattr(block, k) for k in ("max_train_samples", "mdl_block_end", "epochs")}})
    return out


def default_out(cfg: ProbeConfig) -> Path:
    """``runs/mdl-<the probe's default run name>``."""
    path = cfg.default_out()
    return path.with_name(f"mdl-{path.name}")


def mdl(config: ProbeConfig, *, min_steps: int = MIN_STEPS, boundaries: Sequence[float] = BOUNDARIES,
        echo=print) -> dict:
    """Run (or continue) the online code of ``config``'s probe; writes and returns ``mdl.json``'s content.

    ``config.out``: the MDL directory (default ``runs/mdl-...``); ``config.overwrite`` starts it afresh;
    ``config.max_train_samples``: N, the data coded (default the whole training file). ``boundaries``: the block
    boundaries in % (default Voita & Titov's; the report assembles block runs with the default ones).
    """
    from subprobe.api import probe

    if config.mdl_block_end is not None:
        raise ConfigError("--mdl-block-end is set by subprobe mdl for each block; drop it")
    if config.dry_run:
        raise ConfigError("subprobe mdl has no --dry-run (each block is a run); use subprobe probe --dry-run")
    cfg = config.resolved()
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    n, _ = training_size(cfg)
    configs = block_configs(dataclasses.replace(config, overwrite=False), n, min_steps, out, boundaries)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; choose another --out")
    if config.overwrite and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    facts = []
    for i, block_cfg in enumerate(configs, start=1):
        echo(f"mdl: block {i + 1} of {len(configs) + 1}: train on {block_cfg.max_train_samples} sentence(s), code "
             f"sentences {block_cfg.max_train_samples}..{block_cfg.mdl_block_end} ({block_cfg.epochs} epochs)")
        result = probe(block_cfg, echo=_quiet(echo), resume=True)
        facts.append({**result.metrics["codelength"], "run_dir": str(result.run_dir)})
    found = {**point_facts(cfg), **assemble(facts, boundaries, n), "min_steps": min_steps}
    write_json(out / MDL_JSON, found)
    echo(summary(found, out / MDL_JSON))
    return found


def point_facts(cfg: ProbeConfig) -> dict:
    """What an MDL result is of: task, probe, its unit, setting, model, seed and control."""
    unit = {"subnetwork": cfg.granularity, "mlp": f"r={cfg.rank}"}.get(cfg.probe, "")
    return {"task": cfg.task, "probe": cfg.probe, "unit": unit, "setting": cfg.setting, "model": cfg.model,
            "seed": cfg.seed, "control": cfg.control}


def summary(found: dict, path: Path) -> str:
    """A few lines about an MDL result."""
    lines = [f"subprobe mdl: {found['task']} / {found['probe']} {found['unit']} / {found['setting']} on "
             f"{found['model']}: {found['sentences']} sentences, {found['words']} words, {found['labels']} labels"]
    if found["complete"]:
        lines.append(f"  uniform codelength {found['uniform_bits'] / 1000:.2f} kbits, online codelength "
                     f"{found['online_bits'] / 1000:.2f} kbits, compression {found['compression']:.2f}")
    else:
        lines.append(f"  incomplete: blocks {found['missing_blocks']} missing")
    lines.append(f"  {path}")
    return "\n".join(lines)


def _quiet(echo):
    """The block runs' own summaries stay off the terminal (their metrics.json holds them); errors still show."""
    def said(*args, **kwargs) -> None:
        if kwargs.get("file") is not None:
            echo(*args, **kwargs)
    return said
