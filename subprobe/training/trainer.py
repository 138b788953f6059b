"""The one training loop, for every task and probe."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from subprobe.atomic import AppendFile
from subprobe.config import ProbeConfig
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


def training_batches(train_set: Dataset, config: ProbeConfig, epoch: int) -> list[list[int]]:
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
    config: ProbeConfig,
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
    loop = TrainLoop(probe, task, train_set, dev_set, vocabs, config, pad_id, log_path, checkpoint_path, resume_from,
                     tracker, ranks)
    try:
        for epoch, position, indices in loop.batches():
            taken = loop.step(epoch, position, indices)  # warm-up, forward, loss + lambda * penalty, backward, Adam
            loop.after(taken)
    finally:
        loop.close()
    return loop.outcome()


class TrainLoop:
    """The state of one training run and what :func:`train` does at each step: the batches still to run, the
    step itself, the dev check (a ``log.jsonl`` record, the tracker, the progress bar, early stopping) and the
    checkpoint. A packed run (:mod:`subprobe.training.packed`) is one of these whose steps a packed step takes;
    ``generator`` is then its own random stream (checkpointed and restored with it)."""

    def __init__(self, probe: BuiltProbe, task: Task, train_set: Dataset, dev_set: Dataset | None, vocabs,
                 config: ProbeConfig, pad_id: int, log_path: Path | None, checkpoint_path: Path | None,
                 resume_from: dict | None, tracker, ranks, generator: torch.Generator | None = None) -> None:
        from subprobe.training import distributed

        self.probe, self.task, self.train_set, self.dev_set, self.vocabs = probe, task, train_set, dev_set, vocabs
        self.config, self.checkpoint_path, self.tracker = config, checkpoint_path, tracker
        self.generator = generator
        self.ranks = ranks or distributed.SINGLE
        self.per_epoch = math.ceil(len(train_set.encoded) / config.batch_size)
        self.total = self.per_epoch * config.epochs
        self.train_step = TrainStep(probe, task, train_set, config, pad_id=pad_id, total_steps=self.total,
                                    ranks=self.ranks)
        self.ramp_done = ramp_end_step(self.total, config.lambda_end)
        self.eval_kwargs = dict(pooling=config.word_pooling, pad_id=pad_id, mask_mode="hard")
        self.every = config.checkpoint_every or config.eval_every
        self.shape = dict(total_steps=self.total, per_epoch=self.per_epoch, train_size=len(train_set.encoded))
        self.progress = p = Progress()
        self.last_good: int | None = None  # step of the last checkpoint written (or resumed from)
        if resume_from is not None:
            self.progress = p = restore(resume_from, probe.model, self.train_step.optimizer,
                                        where=checkpoint_path or Path("checkpoint"), generator=generator, **self.shape)
            self.last_good = p.step
            if log_path:
                truncate_log(log_path, p.step)
        distributed.sync_parameters(self.train_step.trained, self.ranks)
        distributed.seed_noise(config.seed, self.ranks, p.step)
        self.device = module_device(probe.model)  # batches go where the probe is (--device)
        p.running_loss, p.running_pen = p.running_loss.to(self.device), p.running_pen.to(self.device)
        self.log_file = AppendFile(log_path) if log_path else None  # every version written whole (subprobe.atomic)
        self.bar = _progress(self.total, config.progress, p.step)
        self.start = time.perf_counter() - p.seconds
        probe.model.train()

    def batches(self) -> Iterator[tuple[int, int, list[int]]]:
        """``(epoch, position, indices)`` of every batch still to run (a resumed run skips those it has run)."""
        p = self.progress
        first_epoch, skip = p.epoch, p.batch_in_epoch
        for epoch in range(first_epoch, self.config.epochs):
            if p.finished:
                return
            for position, indices in enumerate(training_batches(self.train_set, self.config, epoch)):
                if epoch == first_epoch and position < skip:
                    continue  # done before the checkpoint this run resumed from
                yield epoch, position, indices
                if p.finished:
                    return

    def step(self, epoch: int, position: int, indices: list[int]):
        """One optimiser step on the batch ``indices``; the running sums and the position move on."""
        taken = self.train_step(indices, self.progress.step)
        self.advance(taken, epoch, position)
        return taken

    def advance(self, taken, epoch: int, position: int) -> None:
        """The running sums and the position after the step ``taken`` on batch ``position`` of ``epoch``."""
        p = self.progress
        p.running_loss += taken.loss.detach().float()
        p.running_pen += taken.penalty.detach().float()
        p.since_log += 1
        p.words += taken.words
        p.step += 1
        p.epoch, p.batch_in_epoch = epoch, position + 1
        if self.bar is not None:
            self.bar.update(1)

    def after(self, taken) -> None:
        """What follows a step: the dev check (every ``eval_every`` steps and at the last), then the checkpoint
        (every ``checkpoint_every`` steps and when training is over)."""
        p = self.progress
        last = p.step == self.total
        if p.step % self.config.eval_every == 0 or last:
            self.dev_check(taken)
        p.finished = last or p.stopped
        if p.step % self.every == 0 or p.finished:  # every process checks; rank 0 writes the checkpoint
            self.checkpoint()

    def dev_check(self, taken) -> None:
        """The record of this step (means since the last one, density, dev scores) into the history, log.jsonl,
        the tracker and the progress bar; then rank 0's early-stopping decision for every process."""
        from subprobe.training import distributed

        p, probe, step = self.progress, self.probe, self.progress.step
        record = {
            "step": step,
            "epoch": round(step / self.per_epoch, 3),
            "lambda": taken.lam,
            "loss": float(p.running_loss) / p.since_log,
            "penalty": float(p.running_pen) / p.since_log,
            "words_per_s": p.words / (time.perf_counter() - self.start),
        }
        _check_finite(probe, step, record["loss"], record["penalty"], self.config, self.checkpoint_path,
                      self.last_good)
        p.running_loss.zero_()
        p.running_pen.zero_()
        p.since_log = 0
        density = density_of(probe)
        if density is not None:
            record["density"] = density
        if probe.constraint is not None:  # --target-density: the target and the multipliers now
            record["target_density"] = None if taken.target is None else float(taken.target)
            record["multipliers"] = [float(x.detach()) for x in probe.constraint.multipliers]
        if self.dev_set is not None and self.dev_set.encoded:
            record["dev"], _ = evaluate(probe.model, self.task, self.dev_set, self.vocabs, **self.eval_kwargs)
        p.history.append(record)
        self._report(record, density)
        converged = step >= self.ramp_done and _converged(p.history, self.task.primary_metric, self.config,
                                                          self.ramp_done)
        p.stopped = distributed.rank0_decides(converged, self.ranks, self.device)  # one decision for all

    def _report(self, record: dict, density: float | None) -> None:
        """A record to log.jsonl, the tracker (--report-to, :mod:`subprobe.runs.tracking`) and the progress bar."""
        if self.log_file:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()
        if self.tracker is not None:
            self.tracker.log_record(record, record["step"])
        if self.bar is not None:
            metric = self.task.primary_metric
            shown = {"loss": f"{record['loss']:.3f}", "w/s": f"{record['words_per_s']:.0f}"}
            if "dev" in record:
                shown[metric] = f"{record['dev'][metric]:.3f}"
            if density is not None:
                shown["density"] = f"{density:.3f}"
            self.bar.set_postfix(shown)

    def checkpoint(self) -> None:
        """Check that what trains since the last dev check is finite; rank 0 writes the checkpoint."""
        p = self.progress
        if p.since_log:
            loss_now, pen_now = float(p.running_loss) / p.since_log, float(p.running_pen) / p.since_log
            _check_finite(self.probe, p.step, loss_now, pen_now, self.config, self.checkpoint_path, self.last_good)
        if self.checkpoint_path is not None:
            p.seconds = time.perf_counter() - self.start
            save_checkpoint(self.checkpoint_path, make_payload(self.probe.model, self.train_step.optimizer, p,
                                                               generator=self.generator, **self.shape))
            self.last_good = p.step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.log_file:
            self.log_file.close()

    def outcome(self) -> TrainOutcome:
        """What happened; with --target-density the hard mask is rounded to the target first (if the ramp never
        ended) and the rounding recorded."""
        p, probe = self.progress, self.probe
        seconds = time.perf_counter() - self.start
        projection = None
        if probe.constraint is not None and p.finished:
            probe.constraint.hold(probe.masked)
            projection = probe.constraint.record(probe.masked)
        return TrainOutcome(p.step, self.total, p.stopped, seconds, p.words / max(seconds, 1e-9), p.history,
                            projection)


def _check_finite(
    probe: BuiltProbe, step: int, loss: float, penalty: float, config: ProbeConfig, checkpoint_path, last_good
):
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
    lrs = [f"--{flag} {value / 4:g}" for flag, value in (("mask-lr", config.mask_lr), ("head-lr", config.head_lr))
           if value]
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


def _converged(history: list[dict], metric: str, config: ProbeConfig, ramp_done: int) -> bool:
    after_ramp = [h for h in history if "dev" in h and h["step"] >= ramp_done]
    # the last max(2, patience) checks: patience 1 compares two checks (a single check cannot change)
    window = after_ramp[-max(2, config.patience) :] if config.patience else []
    if len(window) < max(2, config.patience or 0):
        return False
    values = [h["dev"][metric] for h in window]
    dens = [h.get("density", 0.0) for h in window]
    target = config.target_density
    if target is not None and abs(dens[-1] - target) >= config.tolerance:
        return False  # --target-density: not converged while the hard density is off target
    return max(values) - min(values) < config.tolerance and max(dens) - min(dens) < config.tolerance


def _progress(total: int, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", dynamic_ncols=True, mininterval=1.0)
