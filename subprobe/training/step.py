"""The one optimiser step of every run: :func:`~subprobe.training.trainer.train` takes it and
``benchmarks/train_speed.py`` times it.

A step at position ``step`` of ``total_steps``: the learning rates are warmed up
(:func:`~subprobe.training.schedules.warmup_factor`), this process's share of the batch goes forward (in
``--sub-batches`` parts, each with its own mask sample, their gradients accumulated, as the paper's code did),
the objective ``loss + lambda * penalty`` (lambda from :func:`~subprobe.training.schedules.lambda_at`;
with ``--target-density``: ``loss + l1 (s - p) + l2 (s - p)^2``, see :mod:`subprobe.masking.constraint`)
goes backward, gradients are averaged over the processes of a data-parallel run, and Adam steps (the
Lagrange multipliers' group ascends).

The phases a step goes through -- :meth:`TrainStep.begin` (warm-up, lambda, cleared gradients),
:meth:`TrainStep.objective` (the penalty and the objective of a task loss) and :meth:`TrainStep.finish` (Adam, the
hold of ``--target-density``) -- are also what a packed step (:mod:`subprobe.training.packed`) runs for each run
around one shared forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset, collate
from subprobe.device import module_device
from subprobe.probes.base import BuiltProbe
from subprobe.tasks.base import Task
from subprobe.training import distributed
from subprobe.training.optim import make_adam
from subprobe.training.schedules import constraint_ramp, lambda_at, warmup_factor


@dataclass
class StepOutcome:
    """What one step did: the task loss and penalty (averaged over processes), words, lambda."""

    loss: torch.Tensor
    penalty: torch.Tensor
    words: int
    lam: float
    #: --target-density: the density target of this step (None before the constraint comes in, and without it)
    target: torch.Tensor | None = None
    #: --target-density's hold phase: the hard mask is rounded to the target after Adam's step
    holding: bool = False


class TrainStep:
    """Adam over ``probe``'s parameter groups, stepped with the paper's warm-up and lambda ramp."""

    def __init__(self, probe: BuiltProbe, task: Task, train_set: Dataset, config: ProbeConfig, *, pad_id: int,
                 total_steps: int, ranks=None):
        self.probe, self.task, self.train_set, self.config = probe, task, train_set, config
        self.pad_id, self.total_steps = pad_id, total_steps
        self.ranks = ranks or distributed.SINGLE
        self.optimizer = make_adam(probe.param_groups)  # fused where torch supports it
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        #: every parameter the optimiser trains (gradients averaged over processes)
        self.trained = [q for group in self.optimizer.param_groups for q in group["params"]]
        self.device = module_device(probe.model)  # batches go where the probe is (--device)

    def lam(self, step: int) -> float:
        c = self.config
        return lambda_at(step, self.total_steps, c.lambda_max, c.lambda_start, c.lambda_end)

    def _sub_batches(self, indices: list[int]) -> list[list[int]]:
        """``indices`` cut into ``--sub-batches`` nearly equal parts (none for an empty share)."""
        k = min(self.config.sub_batches or 1, len(indices))
        if k <= 1:
            return [indices] if indices else []
        size, extra = divmod(len(indices), k)
        starts = [i * size + min(i, extra) for i in range(k + 1)]
        return [indices[a:b] for a, b in zip(starts, starts[1:])]

    def _accumulate(self, parts: list[list[int]], sentences: int) -> tuple[torch.Tensor, int]:
        """Forward and backward each sub-batch (its own mask sample and dropout), its loss weighted by its share of
        the sentences as the paper's code did; returns the summed loss (detached) and the words."""
        config, model = self.config, self.probe.model
        loss, words = torch.zeros((), device=self.device), 0
        for part in parts:
            batch = collate(self.train_set.encoded, part, config.word_pooling, self.pad_id).to(self.device)
            part_loss = self.task.loss(model.head, model(batch), batch) * (len(part) / sentences)
            if part_loss.requires_grad:
                part_loss.backward()
            loss, words = loss + part_loss.detach(), words + batch.n_words
        return loss, words

    def __call__(self, indices: list[int], step: int) -> StepOutcome:
        """Train on the batch ``indices`` of the training set as step ``step`` (0-based)."""
        model, ranks = self.probe.model, self.ranks
        mine = distributed.shard(indices, ranks)  # all of it with one process
        lam = self.begin(step)
        parts = self._sub_batches(mine)
        if len(parts) == 1:
            batch = collate(self.train_set.encoded, mine, self.config.word_pooling, self.pad_id).to(self.device)
            loss, words = self.task.loss(model.head, model(batch), batch), batch.n_words
        else:  # sub-batches (or none: more processes than sentences in this last batch)
            loss, words = self._accumulate(parts, len(mine))
        objective, outcome = self.objective(loss, words, step, lam)
        if objective.requires_grad:
            objective.backward()
        if ranks.active:
            outcome.loss, outcome.words = distributed.average_gradients(self.trained, loss, words, ranks)
        self.finish(outcome)
        return outcome

    def begin(self, step: int, *, zero_grad: bool = True) -> float:
        """Step ``step``'s warmed-up learning rates into the optimiser, its gradients cleared; returns lambda."""
        factor = warmup_factor(step, self.total_steps, self.config.warmup)
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * factor
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        return self.lam(step)

    def objective(self, loss: torch.Tensor, words: int, step: int, lam: float) -> tuple[torch.Tensor, StepOutcome]:
        """The objective to differentiate for the task loss ``loss`` of step ``step`` (``loss + lambda * penalty``,
        or the Lagrangian of ``--target-density``), and what the step did."""
        config, probe = self.config, self.probe
        penalty = probe.penalty() if probe.penalty is not None else torch.zeros((), device=self.device)
        target = None
        holding = False
        if probe.constraint is not None:  # penalty = density s; the Lagrangian steers it along the ramp
            lam, ramp = 0.0, constraint_ramp(step, self.total_steps, config.lambda_start, config.lambda_end)
            target = None if ramp is None else probe.constraint.target(penalty.detach(), ramp)
            holding = ramp == 1.0  # the hold phase: the density is rounded to p after the step instead
            objective = loss + probe.constraint(penalty, target) if target is not None and not holding else loss
        else:
            objective = loss + lam * penalty if lam > 0 else loss
        return objective, StepOutcome(loss, penalty, words, lam, target, holding)

    def finish(self, outcome: StepOutcome, *, optimizer_step: bool = True) -> None:
        """Adam's step (unless a packed step takes it for several runs at once), then the hold of the hard
        density (``--target-density``'s last phase)."""
        if optimizer_step:
            self.optimizer.step()
        if outcome.holding:
            self.probe.constraint.hold(self.probe.masked)
