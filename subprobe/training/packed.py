"""Packed training: several runs of a grid trained in one process, in one step, sharing the frozen encoder.

Runs *pack* when they read the same frozen weights and the same data with the same batch budget (the same model,
task, setting, data, batch size, epochs, precision, device and word pooling: every setting that
:func:`subprobe.config.option` does not mark ``pack="varies"``) and their probe family says how they pack
(:meth:`subprobe.probes.family.ProbeFamily.pack_kind`):

* ``encoder`` (subnetwork probes with learnt masks): the runs' batches go through one encoder as one batch (K x
  batch sentences, padded to the longest); every masked matrix applies each run's own mask to that run's rows
  (:mod:`subprobe.masking.packed`); each run's word features then go through its own feature dropout and head;
* ``cached`` (MLP-1 and linear probes on cached features): one batch assembly and feature lookup for all runs
  with the same batch, then each run's dropout, adapter and head.

Then one backward through the sum of the runs' objectives (the runs' graphs share no trainable parameter, so each
run's gradients are its own) and one Adam over every run's parameters (:class:`PackOptimizer`; each run's
optimiser state stays its own). Everything else stays per run: the warm-up and lambda schedules and
``--target-density``, the dev checks and early stopping, the checkpoints and ``--resume``, ``log.jsonl``, the run
directory (:class:`subprobe.training.trainer.TrainLoop`, one per run). A run that stops early or fails leaves the
pack; the rest go on.

Each run draws its random numbers -- mask samples, dropout in the encoder, on the features and in the head,
attention dropout -- from its own generator (:mod:`subprobe.models.streams`), started from the state torch's
default generator has when the run alone starts training and drawn in the run alone's order, and its data order
depends on its seed only: a pack of one computes what the run alone computes (to the bit on the CPU), and runs
with the same batches end as their runs alone do to float rounding (the packed products sum in another order).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from subprobe.config import DEFAULT_PACK_LIMITS, ProbeConfig, settings_where
from subprobe.data.batching import Batch, Dataset, collate
from subprobe.errors import SubprobeError
from subprobe.masking.masked_linear import MaskedLinear
from subprobe.masking.shared import shared_masks
from subprobe.models import streams as run_streams
from subprobe.probes.base import BuiltProbe
from subprobe.tasks.base import Task
from subprobe.training.optim import make_adam
from subprobe.training.step import StepOutcome
from subprobe.training.trainer import TrainLoop, TrainOutcome, _progress

PACK_KINDS = tuple(DEFAULT_PACK_LIMITS)


# -- which runs pack -----------------------------------------------------------------------------------------------


def pack_kind(cfg: ProbeConfig) -> str | None:
    """How a run of the resolved ``cfg`` packs (``encoder``, ``cached``), or None: it runs alone (its family does
    not pack, or it recomputes activations in the backward pass, or it splits its batches into sub-batches)."""
    from subprobe.probes.registry import probe_family

    if cfg.gradient_checkpointing or (cfg.sub_batches or 1) > 1:
        return None
    kind = probe_family(cfg.probe).pack_kind(cfg)
    return kind if kind in PACK_KINDS else None


def alone_reason(cfg: ProbeConfig) -> str | None:
    """Why a run of the resolved ``cfg`` cannot pack (one phrase), or None when it can."""
    from subprobe.probes.registry import probe_family

    if cfg.gradient_checkpointing:
        return "--gradient-checkpointing (activations recomputed in the backward pass)"
    if (cfg.sub_batches or 1) > 1:
        return f"--sub-batches {cfg.sub_batches} (a mask sample per sub-batch; the paper profile's default)"
    family = probe_family(cfg.probe)
    return None if family.pack_kind(cfg) in PACK_KINDS else family.alone_reason(cfg)


def alone_note(configs: Sequence[ProbeConfig], noun: str = "run") -> str | None:
    """One line saying how many of ``configs`` train alone rather than packed, and why (None when all can pack)."""
    reasons: dict[str, int] = {}
    for cfg in configs:
        why = alone_reason(cfg)
        if why is not None:
            reasons[why] = reasons.get(why, 0) + 1
    if not reasons:
        return None
    total = sum(reasons.values())
    counted = f"1 {noun} trains" if total == 1 else f"{total} {noun}s train"
    return (f"subprobe: note: {counted} alone, not packed: "
            + "; ".join(f"{n} with {why}" for why, n in reasons.items()))


def pack_key(cfg: ProbeConfig) -> tuple | None:
    """Runs with equal keys pack together; None: the run runs alone."""
    kind = pack_kind(cfg)
    if kind is None:
        return None
    return (kind, *((name, repr(getattr(cfg, name))) for name in settings_where(pack="same")))


def group_packs(keys: Sequence[tuple | None], limit: int | None = None) -> list[list[int]]:
    """The indices of ``keys`` grouped into packs: equal keys together, in order, each group cut into as few packs
    as ``limit`` (default: :data:`subprobe.config.DEFAULT_PACK_LIMITS` by kind) allows, of sizes as equal as
    possible; a None key alone.
    The packs come in the order of their first index."""
    if limit is not None and limit < 1:
        raise ValueError(f"a pack holds at least one run, not {limit}")
    groups: dict[tuple, list[int]] = {}
    packs: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            packs.append([i])
        else:
            groups.setdefault(key, []).append(i)
    for key, members in groups.items():
        cap = limit if limit is not None else DEFAULT_PACK_LIMITS.get(key[0])
        count = 1 if cap is None else -(-len(members) // cap)
        size, extra = divmod(len(members), count)
        start = 0
        for j in range(count):
            end = start + size + (1 if j < extra else 0)
            packs.append(members[start:end])
            start = end
    return sorted(packs, key=lambda p: p[0])


# -- one frozen encoder for every run -----------------------------------------------------------------------------


def share_frozen(module: torch.nn.Module, reference: torch.nn.Module) -> int:
    """Point every frozen parameter and buffer of ``module`` at ``reference``'s tensor of the same name, after
    checking that the values are the same (the runs of a pack read the same weights); returns the bytes freed.
    A ValueError when a name, shape or value differs."""
    ref = {**dict(reference.named_parameters()), **dict(reference.named_buffers())}
    freed = 0
    tensors = [(n, t) for n, t in module.named_parameters() if not t.requires_grad] + list(module.named_buffers())
    for name, tensor in tensors:
        other = ref.get(name)
        if other is None or other.shape != tensor.shape or other.dtype != tensor.dtype:
            raise ValueError(f"the runs of a pack have different frozen tensors at {name}")
        if tensor.data_ptr() == other.data_ptr():
            continue
        if not torch.equal(tensor, other):
            raise ValueError(f"the runs of a pack have different frozen weights at {name}")
        freed += tensor.numel() * tensor.element_size()
        tensor.data = other.data
    return freed


def link_host(host: torch.nn.Module, encoders: Sequence[torch.nn.Module]) -> list[MaskedLinear]:
    """Give every masked matrix of ``host`` the same matrix of each encoder of ``encoders`` (its ``pack_siblings``,
    in the pack's run order); returns the host's masked matrices. A ValueError when an encoder lacks one or does not
    share its weight."""
    linked = []
    for name, module in host.named_modules():
        if not isinstance(module, MaskedLinear):
            continue
        siblings = []
        for encoder in encoders:
            other = encoder.get_submodule(name)
            if not isinstance(other, MaskedLinear) or other.weight.data_ptr() != module.weight.data_ptr():
                raise ValueError(f"the runs of a pack do not share the masked matrix {name}")
            siblings.append(other)
        module.pack_siblings = siblings
        linked.append(module)
    return linked


def unlink_host(linked: Sequence[MaskedLinear]) -> None:
    for module in linked:
        module.pack_siblings = None


# -- the optimiser --------------------------------------------------------------------------------------------------


class PackOptimizer:
    """One Adam step over the parameters of several runs. Each run keeps its own Adam (its groups, learning rates
    and state, checkpointed with the run); this one steps all their groups at once, groups whose settings agree
    (learning rate included) merged into one, so that torch's fused kernel runs once per merged group instead of
    once per run's group. Its state is each run's optimiser's, parameter by parameter (:class:`_RunStates`)."""

    def __init__(self) -> None:
        self.adam: torch.optim.Adam | None = None
        self.layout: tuple | None = None

    def step(self, optimizers: Sequence[torch.optim.Adam]) -> None:
        """Adam's step for the runs of ``optimizers`` (their learning rates already set for this step)."""
        merged: dict[tuple, list[dict]] = {}
        for opt in optimizers:
            for group in opt.param_groups:
                settings = tuple(sorted((k, _hashable(v)) for k, v in group.items() if k not in ("params", "name")))
                merged.setdefault(settings, []).append(group)
        layout = tuple(tuple(id(g) for g in groups) for groups in merged.values())
        if layout != self.layout:
            self.adam = make_adam([_merged_group(groups) for groups in merged.values()])
            self.adam.state = _RunStates({id(p): opt.state for opt in optimizers for g in opt.param_groups
                                          for p in g["params"]})
            self.layout = layout
        else:  # the same groups merged as before: this step's settings (the warmed-up learning rates)
            for target, groups in zip(self.adam.param_groups, merged.values()):
                target.update({k: v for k, v in groups[0].items() if k not in ("params", "name")})
        self.adam.step()


class _RunStates(dict):
    """Adam's per-parameter state read from (and created in) the state of the run that owns the parameter."""

    def __init__(self, owners: dict[int, dict]) -> None:
        super().__init__()
        self.owners = owners

    def __getitem__(self, p):
        return self.owners[id(p)][p]

    def get(self, p, default=None):
        state = self.owners.get(id(p))
        return default if state is None or p not in state else state[p]


def _merged_group(groups: list[dict]) -> dict:
    """One parameter group holding the parameters of ``groups`` (whose settings agree), with their settings."""
    return {**{k: v for k, v in groups[0].items() if k not in ("params", "name")},
            "params": [p for g in groups for p in g["params"]]}


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


# -- the packed step ----------------------------------------------------------------------------------------------


@dataclass
class PackMember:
    """One run of a pack: what :func:`subprobe.training.trainer.train` takes for it, and its random stream."""

    probe: BuiltProbe
    task: Task
    train_set: Dataset
    dev_set: Dataset | None
    vocabs: dict
    config: ProbeConfig
    pad_id: int
    generator: torch.Generator
    log_path: Path | None = None
    checkpoint_path: Path | None = None
    resume_from: dict | None = None
    tracker: object = None


class PackedStep:
    """The optimiser step of several runs at once (see the module doc): ``loops`` are the pack's runs, ``kind`` how
    they pack; the host encoder is the first run's."""

    def __init__(self, loops: Sequence[TrainLoop], kind: str, pad_id: int) -> None:
        self.loops, self.kind, self.pad_id = list(loops), kind, pad_id
        first = self.loops[0]
        self.pooling = first.config.word_pooling
        self.device = first.device
        self.optimizer = PackOptimizer()
        self.linked: list[MaskedLinear] = []
        self.host = first.probe.model.features
        if kind == "encoder":
            self.linked = link_host(self.host.encoder, [loop.probe.model.features.encoder for loop in self.loops])
        self.shared = [shared_masks(loop.probe.masked) for loop in self.loops]

    def close(self) -> None:
        unlink_host(self.linked)

    def __call__(self, runs: Sequence[int], indices: Sequence[list[int]]) -> list[StepOutcome]:
        """One step of each run ``runs[k]`` (an index of ``loops``) on its batch ``indices[k]``."""
        loops = [self.loops[i] for i in runs]
        lams = [loop.train_step.begin(loop.progress.step) for loop in loops]
        made: dict[tuple[int, ...], Batch] = {}  # runs with the same batch share its assembly (one seed: all)
        batches = []
        for loop, idx in zip(loops, indices):
            key = tuple(idx)
            if key not in made:
                made[key] = collate(loop.train_set.encoded, idx, self.pooling, self.pad_id).to(self.device)
            batches.append(made[key])
        inputs = self._encode(runs, loops, batches) if self.kind == "encoder" else self._lookup(loops, batches)
        objectives, outcomes = [], []
        for i, loop, batch, x, lam in zip(runs, loops, batches, inputs, lams):
            model = loop.probe.model
            with run_streams.use(run_streams.one(i, loop.generator, batch.input_ids.shape[0])):
                output = model.head_output(x, batch)  # its feature dropout, adapter and head
            loss = loop.task.loss(model.head, output, batch)
            objective, outcome = loop.train_step.objective(loss, batch.n_words, loop.progress.step, lam)
            objectives.append(objective)
            outcomes.append(outcome)
        total = _sum([o for o in objectives if o.requires_grad])
        if total is not None:
            total.backward()
        if len(loops) > 1:
            self.optimizer.step([loop.train_step.optimizer for loop in loops])
        for loop, outcome in zip(loops, outcomes):
            loop.train_step.finish(outcome, optimizer_step=len(loops) == 1)
        return outcomes

    def _encode(self, runs: Sequence[int], loops: Sequence[TrainLoop], batches: list[Batch]) -> list[torch.Tensor]:
        """Every run's batch through the host encoder as one batch (padded to the longest); each run's word
        features (:meth:`subprobe.probes.base.ProbeModel.inputs_from_features`)."""
        lengths = [b.input_ids.shape[1] for b in batches]
        if len(batches) == 1:
            ids, attention = batches[0].input_ids, batches[0].attention_mask
        else:
            longest = max(lengths)
            ids = torch.cat([F.pad(b.input_ids, (0, longest - t), value=self.pad_id) for b, t in zip(batches, lengths)])
            attention = torch.cat([F.pad(b.attention_mask, (0, longest - t)) for b, t in zip(batches, lengths)])
        sizes = tuple(b.input_ids.shape[0] for b in batches)
        for i, loop in zip(runs, loops):  # shared masks: drawn before the forward, as the run alone's pre-hook does
            for mask in self.shared[i]:
                mask.resample(True, loop.generator)
        self.host.train()
        streams = run_streams.Streams(tuple(runs), sizes, tuple(loop.generator for loop in loops), tuple(lengths))
        with run_streams.use(streams):
            hidden = self.host.hidden(ids, attention)
        parts = [hidden] if len(batches) == 1 else hidden.split(list(sizes))
        return [loop.probe.model.inputs_from_features(self.host.pooled(h[:, :t], b), b)
                for loop, h, b, t in zip(loops, parts, batches, lengths)]

    def _lookup(self, loops: Sequence[TrainLoop], batches: list[Batch]) -> list[torch.Tensor]:
        """Cached features: one lookup per distinct batch (the runs share one cache)."""
        read: dict[int, torch.Tensor] = {}
        model = loops[0].probe.model
        return [read.setdefault(id(b), model.inputs(b)) for b in batches]


def _sum(values: list[torch.Tensor]) -> torch.Tensor | None:
    if not values:
        return None
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


# -- the loop over the pack's steps -------------------------------------------------------------------------------


def train_pack(
    members: Sequence[PackMember],
    kind: str,
    on_done: Callable[[int, TrainOutcome | BaseException], None],
    *,
    progress: bool = False,
    echo=print,
) -> None:
    """Train the runs of ``members`` together (see the module doc); ``on_done(i, outcome)`` as soon as run ``i``
    ends (its :class:`TrainOutcome`), or fails (its :class:`SubprobeError`: divergence, a checkpoint that does not
    fit). A failure of the shared step itself (a bug) propagates: every run still training stops there (each keeps
    its last checkpoint)."""
    loops: dict[int, TrainLoop] = {}
    for i, m in enumerate(members):
        try:
            loops[i] = TrainLoop(m.probe, m.task, m.train_set, m.dev_set, m.vocabs, replace(m.config, progress=False),
                                 m.pad_id, m.log_path, m.checkpoint_path, m.resume_from, m.tracker, None, m.generator)
        except SubprobeError as exc:
            on_done(i, exc)
    if not loops:
        return
    order = list(loops)
    step = PackedStep([loops[i] for i in order], kind, members[order[0]].pad_id)
    position = {i: k for k, i in enumerate(order)}  # member -> its index among the step's runs
    batches = {i: loops[i].batches() for i in order}
    active = list(order)
    bar = _progress(max(loops[i].total for i in order), progress, min(loops[i].progress.step for i in order))
    checked = False

    def leave(i: int, outcome) -> None:
        active.remove(i)
        loops[i].close()
        on_done(i, outcome)

    try:
        while active:
            work = []
            for i in list(active):
                item = next(batches[i], None)
                if item is None:  # nothing (left) to train: a run resumed after its last step
                    leave(i, loops[i].outcome())
                else:
                    work.append((i, item))
            if not work:
                break
            before = torch.get_rng_state() if not checked else None
            taken = step([position[i] for i, _ in work], [item[2] for _, item in work])
            if before is not None:
                checked = True
                if not torch.equal(before, torch.get_rng_state()):
                    echo("subprobe: a packed step drew from torch's default generator (a module outside subprobe's "
                         "samplers): the packed runs do not repeat their solo runs' random numbers exactly",
                         file=sys.stderr)
            for (i, (epoch, pos, _)), outcome in zip(work, taken):
                loop = loops[i]
                loop.advance(outcome, epoch, pos)
                try:
                    loop.after(outcome)
                except SubprobeError as exc:
                    leave(i, exc)
                    continue
                if loop.progress.finished:  # early stop or its last step: it leaves the pack now
                    leave(i, loop.outcome())
            if bar is not None:
                bar.update(1)
    finally:
        step.close()
        for i in active:
            loops[i].close()
        if bar is not None:
            bar.close()
