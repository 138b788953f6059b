"""The one training loop, for every task and probe."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from subprobe.data.batching import Dataset, bucketed_batches, collate
from subprobe.errors import SubprobeError
from subprobe.probes.base import BuiltProbe
from subprobe.tasks.base import Task
from subprobe.training.evaluate import evaluate
from subprobe.training.schedules import lambda_at, ramp_end_step, warmup_factor


@dataclass
class TrainOutcome:
    """What happened during training."""

    steps: int
    total_steps: int
    stopped_early: bool
    seconds: float
    words_per_second: float
    history: list[dict] = field(default_factory=list)


def density_of(probe: BuiltProbe) -> float | None:
    """Hard-mask density of a subnetwork probe (None for other probes)."""
    if not probe.masked:
        return None
    from subprobe.masking import hard_concrete as hc

    kept = sum(float(hc.hard_mask(m.log_alpha.detach()).sum()) * m.block[0] * m.block[1] for m in probe.masked)
    total = sum(m.weight.numel() for m in probe.masked)
    return kept / total


def train(
    probe: BuiltProbe,
    task: Task,
    train_set: Dataset,
    dev_set: Dataset | None,
    vocabs,
    config,
    *,
    pad_id: int,
    log_path: Path | None = None,
) -> TrainOutcome:
    """Train ``probe`` with Adam, warm-up, the lambda ramp, periodic dev checks and early stopping.

    Early stopping can only fire once lambda has reached its maximum: when the last ``patience``
    dev checks differ by less than ``tolerance`` in the primary metric and in mask density.
    """
    model = probe.model
    optimizer = torch.optim.Adam(probe.param_groups, betas=(0.9, 0.999), eps=1e-8)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    per_epoch = math.ceil(len(train_set.encoded) / config.batch_size)
    total = per_epoch * config.epochs
    ramp_done = ramp_end_step(total, config.lambda_end)
    eval_kwargs = dict(pooling=config.word_pooling, pad_id=pad_id, mask_mode="hard")
    history: list[dict] = []
    log_file = open(log_path, "a", encoding="utf-8") if log_path else None
    bar = _progress(total, config.progress)
    running_loss = torch.zeros(())
    running_pen = torch.zeros(())
    since_log = 0
    words = 0
    start = time.perf_counter()
    step = 0
    stopped = False
    model.train()
    try:
        for epoch in range(config.epochs):
            for indices in bucketed_batches(
                train_set.encoded, config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch
            ):
                batch = collate(train_set.encoded, indices, config.word_pooling, pad_id)
                lam = lambda_at(step, total, config.lambda_max, config.lambda_start, config.lambda_end)
                factor = warmup_factor(step, total, config.warmup)
                for group, lr in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = lr * factor
                output = model(batch)
                loss = task.loss(model.head, output, batch)
                penalty = probe.penalty() if probe.penalty is not None else torch.zeros(())
                objective = loss + lam * penalty if lam > 0 else loss
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                running_loss += loss.detach().float()
                running_pen += penalty.detach().float()
                since_log += 1
                words += batch.n_words
                step += 1
                if bar is not None:
                    bar.update(1)
                last = step == total
                if step % config.eval_every == 0 or last:
                    record = {
                        "step": step,
                        "epoch": round(step / per_epoch, 3),
                        "lambda": lam,
                        "loss": float(running_loss) / since_log,
                        "penalty": float(running_pen) / since_log,
                        "words_per_s": words / (time.perf_counter() - start),
                    }
                    if not math.isfinite(record["loss"]) or not math.isfinite(record["penalty"]):
                        raise SubprobeError(
                            f"training diverged at step {step} (loss {record['loss']}); "
                            "lower --mask-lr or --head-lr and start again"
                        )
                    running_loss.zero_()
                    running_pen.zero_()
                    since_log = 0
                    density = density_of(probe)
                    if density is not None:
                        record["density"] = density
                    if dev_set is not None and dev_set.encoded:
                        metrics, _ = evaluate(model, task, dev_set, vocabs, **eval_kwargs)
                        record["dev"] = metrics
                    history.append(record)
                    if log_file:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                    if bar is not None:
                        shown = {"loss": f"{record['loss']:.3f}", "w/s": f"{record['words_per_s']:.0f}"}
                        if "dev" in record:
                            shown[task.primary_metric] = f"{record['dev'][task.primary_metric]:.3f}"
                        if density is not None:
                            shown["density"] = f"{density:.3f}"
                        bar.set_postfix(shown)
                    if step >= ramp_done and _converged(history, task.primary_metric, config, ramp_done):
                        stopped = True
                        break
            if stopped:
                break
    finally:
        if bar is not None:
            bar.close()
        if log_file:
            log_file.close()
    seconds = time.perf_counter() - start
    return TrainOutcome(step, total, stopped, seconds, words / max(seconds, 1e-9), history)


def _converged(history: list[dict], metric: str, config, ramp_done: int) -> bool:
    after_ramp = [h for h in history if "dev" in h and h["step"] >= ramp_done]
    window = after_ramp[-config.patience :] if config.patience else []
    if len(window) < max(2, config.patience or 0):
        return False
    values = [h["dev"][metric] for h in window]
    dens = [h.get("density", 0.0) for h in window]
    return max(values) - min(values) < config.tolerance and max(dens) - min(dens) < config.tolerance


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="train", dynamic_ncols=True, mininterval=1.0)
