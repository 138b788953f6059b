"""The one training loop, for every task and probe."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from subprobe.atomic import AppendFile
from subprobe.data.batching import BUCKET_BATCHES, Dataset, bucketed_batches
from subprobe.device import module_device
from subprobe.errors import SubprobeError
from subprobe.masking import counting
from subprobe.masking.constraint import Projection
from subprobe.probes.base import BuiltProbe
from subprobe.tasks.base import Task
from subprobe.training.checkpoint import Progress, make_payload, restore, save_checkpoint, truncate_log
from subprobe.training.evaluate import evaluate
from subprobe.training.schedules import ramp_end_step
from subprobe.training.step import TrainStep


@dataclass
class TrainOutcome:
    """What happened during training."""

    steps: int
    total_steps: int
    stopped_early: bool
    seconds: float
    words_per_second: float
    history: list[dict] = field(default_factory=list)
    #: --target-density: the density at the end of the ramp, the units its rounding flipped, the final density
    projection: Projection | None = None


def training_batches(train_set: Dataset, config, epoch: int) -> list[list[int]]:
    """The batches of one epoch, seeded by the seed and the epoch: shuffled length buckets, or random batches
    (``--batch-order random``, the paper's code: a bucket of one batch is a random batch)."""
    window = 1 if config.batch_order == "random" else BUCKET_BATCHES
    return bucketed_batches(train_set.encoded, config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch,
                            bucket_batches=window)


def density_of(probe: BuiltProbe) -> float | None:
    """Hard-mask density of a subnetwork probe (None for other probes)."""
    if not probe.masked:
        return None
    return counting.density(probe.masked)


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
    checkpoint_path: Path | None = None,
    resume_from: dict | None = None,
    tracker=None,
    ranks=None,
) -> TrainOutcome:
    """Train ``probe`` with Adam, warm-up, the lambda ramp, periodic dev checks and early stopping.

    Early stopping can only fire once lambda has reached its maximum: when the last ``patience``
    dev checks differ by less than ``tolerance`` in the primary metric and in mask density (and, with
    ``--target-density``, the hard density is within ``tolerance`` of the target).

    With ``checkpoint_path`` a checkpoint is written every ``config.checkpoint_every`` steps (default:
    at every dev check) and when training ends; ``resume_from`` (a loaded checkpoint) continues a run
    exactly where that checkpoint left it. The loss and every trainable parameter are checked at each
    dev check and before each checkpoint: a non-finite value stops the run and leaves the last good
    checkpoint untouched.

    ``ranks`` (:mod:`subprobe.training.distributed`): with several processes, each takes its share of every
    batch and the gradients are averaged; pass ``log_path``/``checkpoint_path`` on rank 0 only.
    """
    from subprobe.training import distributed

    ranks = ranks or distributed.SINGLE
    model = probe.model
    per_epoch = math.ceil(len(train_set.encoded) / config.batch_size)
    total = per_epoch * config.epochs
    train_step = TrainStep(probe, task, train_set, config, pad_id=pad_id, total_steps=total, ranks=ranks)
    optimizer = train_step.optimizer
    ramp_done = ramp_end_step(total, config.lambda_end)
    eval_kwargs = dict(pooling=config.word_pooling, pad_id=pad_id, mask_mode="hard")
    every = getattr(config, "checkpoint_every", None) or config.eval_every
    shape = dict(total_steps=total, per_epoch=per_epoch, train_size=len(train_set.encoded))
    p = Progress()
    last_good: int | None = None  # step of the last checkpoint written (or resumed from)
    if resume_from is not None:
        p = restore(resume_from, model, optimizer, where=checkpoint_path or Path("checkpoint"), **shape)
        last_good = p.step
        if log_path:
            truncate_log(log_path, p.step)
    history = p.history
    distributed.sync_parameters(train_step.trained, ranks)
    distributed.seed_noise(config.seed, ranks, p.step)
    device = module_device(model)  # batches go where the probe is (--device)
    p.running_loss, p.running_pen = p.running_loss.to(device), p.running_pen.to(device)
    log_file = AppendFile(log_path) if log_path else None  # every version written whole (subprobe.atomic)
    bar = _progress(total, config.progress, p.step)
    start = time.perf_counter() - p.seconds
    first_epoch, skip = p.epoch, p.batch_in_epoch
    model.train()
    try:
        for epoch in range(first_epoch, config.epochs):
            if p.finished:
                break
            batches = training_batches(train_set, config, epoch)
            for position, indices in enumerate(batches):
                if epoch == first_epoch and position < skip:
                    continue  # done before the checkpoint this run resumed from
                step = p.step
                taken = train_step(indices, step)  # warm-up, forward, loss + lambda * penalty, backward, Adam
                lam = taken.lam
                p.running_loss += taken.loss.detach().float()
                p.running_pen += taken.penalty.detach().float()
                p.since_log += 1
                p.words += taken.words
                p.step = step = step + 1
                p.epoch, p.batch_in_epoch = epoch, position + 1
                if bar is not None:
                    bar.update(1)
                last = step == total
                if step % config.eval_every == 0 or last:
                    record = {
                        "step": step,
                        "epoch": round(step / per_epoch, 3),
                        "lambda": lam,
                        "loss": float(p.running_loss) / p.since_log,
                        "penalty": float(p.running_pen) / p.since_log,
                        "words_per_s": p.words / (time.perf_counter() - start),
                    }
                    _check_finite(probe, step, record["loss"], record["penalty"], config, checkpoint_path, last_good)
                    p.running_loss.zero_()
                    p.running_pen.zero_()
                    p.since_log = 0
                    density = density_of(probe)
                    if density is not None:
                        record["density"] = density
                    if probe.constraint is not None:  # --target-density: the target and the multipliers now
                        record["target_density"] = None if taken.target is None else float(taken.target)
                        record["multipliers"] = [float(x.detach()) for x in probe.constraint.multipliers]
                    if dev_set is not None and dev_set.encoded:
                        metrics, _ = evaluate(model, task, dev_set, vocabs, **eval_kwargs)
                        record["dev"] = metrics
                    history.append(record)
                    if log_file:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                    if tracker is not None:  # --report-to: every log.jsonl record (subprobe.tracking)
                        tracker.log_record(record, step)
                    if bar is not None:
                        shown = {"loss": f"{record['loss']:.3f}", "w/s": f"{record['words_per_s']:.0f}"}
                        if "dev" in record:
                            shown[task.primary_metric] = f"{record['dev'][task.primary_metric]:.3f}"
                        if density is not None:
                            shown["density"] = f"{density:.3f}"
                        bar.set_postfix(shown)
                    converged = step >= ramp_done and _converged(history, task.primary_metric, config, ramp_done)
                    p.stopped = distributed.rank0_decides(converged, ranks, device)  # one decision for all
                p.finished = last or p.stopped
                if step % every == 0 or p.finished:  # every process checks; rank 0 writes the checkpoint
                    if p.since_log:
                        loss_now = float(p.running_loss) / p.since_log
                        pen_now = float(p.running_pen) / p.since_log
                        _check_finite(probe, step, loss_now, pen_now, config, checkpoint_path, last_good)
                    if checkpoint_path is not None:
                        p.seconds = time.perf_counter() - start
                        save_checkpoint(checkpoint_path, make_payload(model, optimizer, p, **shape))
                        last_good = step
                if p.finished:
                    break
    finally:
        if bar is not None:
            bar.close()
        if log_file:
            log_file.close()
    seconds = time.perf_counter() - start
    projection = None
    if probe.constraint is not None and p.finished:  # --target-density: rounded (if the ramp never ended)
        probe.constraint.hold(probe.masked)
        projection = probe.constraint.record(probe.masked)
    return TrainOutcome(p.step, total, p.stopped, seconds, p.words / max(seconds, 1e-9), history, projection)


def _check_finite(probe: BuiltProbe, step: int, loss: float, penalty: float, config, checkpoint_path, last_good):
    """Raise SubprobeError if the loss, the penalty or a trainable parameter is not finite."""
    what = None
    if not math.isfinite(loss):
        what = f"the loss is {loss}"
    elif not math.isfinite(penalty):
        what = f"the L0 penalty is {penalty}"
    else:
        for m in probe.masked:
            if not bool(torch.isfinite(m.log_alpha).all()):
                what = f"the mask logits of {m.name} are not finite"
                break
        else:
            for name, param in probe.model.named_parameters():
                if param.requires_grad and not bool(torch.isfinite(param).all()):
                    what = f"parameter {name} is not finite"
                    break
    if what is None:
        return
    lrs = []
    for flag in ("mask_lr", "head_lr"):
        value = getattr(config, flag, None)
        if value:
            lrs.append(f"--{flag.replace('_', '-')} {value / 4:g}")
    lower = " ".join(lrs) or "a lower learning rate"
    if checkpoint_path is not None:
        run = Path(checkpoint_path).parent
        if last_good is not None:
            kept = f"the last good checkpoint (step {last_good}) is kept in {checkpoint_path}; continue from it"
        else:
            kept = "no checkpoint was written before it; train again from the beginning"
        raise SubprobeError(
            f"training diverged at step {step}: {what}; {kept} with a lower learning rate: "
            f"subprobe probe --resume {run} {lower}"
        )
    raise SubprobeError(f"training diverged at step {step}: {what}; start again with a lower learning rate ({lower})")


def _converged(history: list[dict], metric: str, config, ramp_done: int) -> bool:
    after_ramp = [h for h in history if "dev" in h and h["step"] >= ramp_done]
    # the last max(2, patience) checks: patience 1 compares two checks (a single check cannot change)
    window = after_ramp[-max(2, config.patience) :] if config.patience else []
    if len(window) < max(2, config.patience or 0):
        return False
    values = [h["dev"][metric] for h in window]
    dens = [h.get("density", 0.0) for h in window]
    target = getattr(config, "target_density", None)
    if target is not None and abs(dens[-1] - target) >= config.tolerance:
        return False  # --target-density: not converged while the hard density is off target
    return max(values) - min(values) < config.tolerance and max(dens) - min(dens) < config.tolerance


def _progress(total: int, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", dynamic_ncols=True, mininterval=1.0)
