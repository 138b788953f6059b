"""``subprobe.probe_many(configs)``: several runs in one process, trained together where they share the frozen
encoder (packed training, :mod:`subprobe.training.packed`); a run that cannot pack runs alone, as
:func:`subprobe.api.probe` runs it.

Every run keeps its own run directory, written as :func:`~subprobe.api.probe` writes it (a pack is an execution
detail: the same ``config.yaml``, checkpoints that either kind of run continues, the same ``metrics.json``). The
runs of a pack read the data once and load the encoder once: each run gets a copy whose frozen tensors are the
first run's (checked equal, then shared), so the pack holds one set of frozen weights.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence

from subprobe.api import Plan, plan
from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError, SubprobeError
from subprobe.runs import RunDir
from subprobe.runs.result import Result

#: ``on_done(i, outcome)``: run ``i`` of the call ended with its Result, or failed with this exception
OnDone = Callable[[int, "Result | BaseException"], None]


def probe_many(configs: Sequence[ProbeConfig], *, echo=print, resume: bool = False, pack: int | None = None
               ) -> list[Result]:
    """Run every configuration (as :func:`subprobe.probe` would, one run directory each) in this process; runs that
    read the same frozen weights and data with the same batch budget train together, up to ``pack`` at once
    (default: :data:`subprobe.config.DEFAULT_PACK` runs of subnetwork probes, every MLP-1 or linear probe on
    cached features; ``pack=1``: one after another, each exactly as :func:`subprobe.probe` runs it). ``resume``: as
    for :func:`subprobe.probe`, for every run.

    Returns the Results in the order of ``configs``. A run that fails does not stop the others: once they have
    finished, the first failure is raised."""
    results = run_many(configs, echo=echo, resume=resume, pack=pack)
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome
    return results  # type: ignore[return-value]


def run_many(configs: Sequence[ProbeConfig], *, echo=print, resume: bool = False, pack: int | None = None,
             on_done: OnDone | None = None) -> list[Result | BaseException]:
    """:func:`probe_many`, each run's failure returned in its place instead of raised (and handed to ``on_done`` as
    each run ends). A bug (not a :class:`SubprobeError`) fails the runs it stopped; Ctrl-C stops them all."""
    from subprobe.training import distributed
    from subprobe.training.packed import alone_note, group_packs, pack_key

    if pack is not None and pack < 1:
        raise ConfigError(f"--pack must be at least 1, got {pack}")
    results: list[Result | BaseException | None] = [None] * len(configs)
    say = _once(echo)

    def done(i: int, outcome) -> None:
        results[i] = outcome
        if on_done is not None:
            on_done(i, outcome)

    plans: dict[int, Plan] = {}
    outs: dict = {}
    for i, config in enumerate(configs):
        try:
            planned = plan(config, echo=say, resume=resume)
            if isinstance(planned, Result):
                done(i, planned)
                continue
            if planned.out.resolve() in outs:
                raise ConfigError(f"--out {planned.out}: run {outs[planned.out.resolve()] + 1} of this call writes "
                                  "there too; give every run its own --out")
            outs[planned.out.resolve()] = i
            plans[i] = _with_device(planned, config, say)
        except SubprobeError as exc:
            done(i, exc)
    order = list(plans)
    alone = distributed.from_env().active  # a data-parallel launch: every run alone, as probe runs it
    keys = [None if alone else pack_key(plans[i].cfg) for i in order]
    note = alone_note([plans[i].cfg for i in order]) if pack != 1 and len(order) > 1 and not alone else None
    if note:
        say(note, file=sys.stderr)
    for group in group_packs(keys, pack):
        indices = [order[j] for j in group]
        if len(indices) == 1:
            _alone(indices[0], configs[indices[0]], resume, say, done)
        else:
            _pack([(i, plans[i]) for i in indices], resume, say, done)
    return results  # type: ignore[return-value]


def _with_device(planned: Plan, given: ProbeConfig, echo) -> Plan:
    """The plan with the precision its device gives it (a profile's bf16 becomes fp32 where bf16 is emulated):
    what decides whether runs pack."""
    from subprobe.api import _device_and_precision

    _, cfg = _device_and_precision(planned.cfg, given, echo)
    return dataclasses.replace(planned, cfg=cfg)


def _once(echo):
    """``echo`` that says each line once (notes every run of a call would repeat)."""
    said: set[str] = set()

    def say(*args, **kwargs) -> None:
        text = " ".join(map(str, args))
        if "file" in kwargs and text in said:
            return
        said.add(text)
        echo(*args, **kwargs)

    return say


def _alone(i: int, config: ProbeConfig, resume: bool, echo, done) -> None:
    """Run ``i`` by itself, exactly as :func:`subprobe.api.probe` runs it."""
    from subprobe import api

    try:
        result = api.probe(config, echo=echo, resume=resume)
    except Exception as exc:  # noqa: BLE001 -- a failure (or a bug) in one run must not stop the others
        done(i, exc)
        return
    done(i, result)


def _pack(planned: list[tuple[int, Plan]], resume: bool, echo, done) -> None:
    """Train the runs of ``planned`` (they pack: see :func:`subprobe.training.packed.pack_key`) together."""
    from subprobe import api
    from subprobe.device import resolve_device
    from subprobe.runs.resume import open_run_dir
    from subprobe.training import distributed
    from subprobe.training.packed import pack_kind

    first = planned[0][1]
    try:
        raw = api.read_data(first, echo)  # one data for all: the same files, limits and labels
        device = resolve_device(first.cfg.device)
    except SubprobeError as exc:
        for i, _ in planned:
            done(i, exc)
        return
    starting = []
    for i, p in planned:
        try:
            starting.append((i, p, open_run_dir(p.cfg, p.out, p.paths, resume=resume, echo=echo)))
        except SubprobeError as exc:
            done(i, exc)
    if not starting:
        return
    echo(f"training {len(starting)} runs in one process ({pack_kind(first.cfg)} pack): "
         + ", ".join(str(p.out) for _, p, _ in starting), file=sys.stderr)
    api.set_seed(first.cfg.seed)
    started = time.perf_counter()
    try:
        data = api.prepare_data(first.cfg, first.task, raw, device, echo)
    except SubprobeError as exc:
        for i, _, _ in starting:
            done(i, exc)
        return
    runs = _build(starting, data, device, distributed.SINGLE, echo, done)
    if runs:
        _train(runs, pack_kind(first.cfg), data, started, echo, done)


@dataclasses.dataclass
class _Run:
    """One run of a pack, built: what training and finishing it take."""

    index: int
    plan: Plan
    built: object
    head: object
    reset_params: int
    checkpoint: dict | None
    tracker: object
    generator: object


def _build(starting, data, device, ranks, echo, done) -> list[_Run]:
    """Every run's probe over its own copy of the encoder (each seeded as the run alone is: the head drawn, then its
    random stream taken); the copies' frozen tensors shared with the first run's; each run directory started."""
    from subprobe import api
    from subprobe.models import streams as run_streams
    from subprobe.runs.tracking import open_tracker
    from subprobe.training.packed import share_frozen

    base = data.encoder
    runs: list[_Run] = []
    for n, (i, p, checkpoint) in enumerate(starting):
        encoder = base if n == len(starting) - 1 else copy.deepcopy(base)
        try:
            built, head, reset_params = api.build(p.cfg, p.task, dataclasses.replace(data, encoder=encoder), device)
            generator = run_streams.generator_now(device)  # what the run alone draws from when training starts
            if runs:
                share_frozen(_features(built), _features(runs[0].built))
            api.start_run_dir(RunDir(p.out), p.cfg, p.paths, data.vocabs, checkpoint, device, ranks, echo)
            tracker = open_tracker(p.cfg, p.out)
        except SubprobeError as exc:
            done(i, exc)
            continue
        runs.append(_Run(i, p, built, head, reset_params, checkpoint, tracker, generator))
    if runs and _cached(runs[0].built):  # one feature cache for all: the encoder runs once over the data
        api.fill_cached_features(runs[0].built, data, runs[0].plan.cfg)
        for run in runs[1:]:
            run.built.model.features.cache = runs[0].built.model.features.cache
    return runs


def _cached(built) -> bool:
    from subprobe.probes.cached import CachedFeatures

    return isinstance(built.model.features, CachedFeatures)


def _features(built):
    """The encoder features module of a built probe (the source of a feature cache)."""
    return built.model.features.source if _cached(built) else built.model.features


def _train(runs: list[_Run], kind: str, data, started: float, echo, done) -> None:
    """Train the built runs together; each is scored and written as soon as it ends."""
    from subprobe import api
    from subprobe.training.packed import PackMember, train_pack

    members = [
        PackMember(r.built, r.plan.task, data.splits["train"], data.splits.get("dev"), data.vocabs, r.plan.cfg,
                   data.pad_id, r.generator, RunDir(r.plan.out).log_path, RunDir(r.plan.out).checkpoint_path,
                   r.checkpoint, r.tracker)
        for r in runs
    ]
    ended: set[int] = set()

    def finished(k: int, outcome) -> None:
        run = runs[k]
        ended.add(k)
        if isinstance(outcome, BaseException):
            run.tracker.close(failed=True)
            done(run.index, outcome)
            return
        try:
            result = api.finish_run(run.plan.cfg, run.plan.task, run.built, run.head, run.reset_params, data,
                                    RunDir(run.plan.out), outcome, run.tracker, started, echo)
        except Exception as exc:  # noqa: BLE001 -- one run's failure (or a bug) must not stop the others
            run.tracker.close(failed=True)
            done(run.index, exc)
            return
        done(run.index, result)

    try:
        train_pack(members, kind, finished, progress=any(r.plan.cfg.progress for r in runs), echo=echo)
    except Exception as exc:  # a bug in the shared step: every run still training fails with it
        for k, run in enumerate(runs):
            if k not in ended:
                run.tracker.close(failed=True)
                done(run.index, exc)
    except BaseException:
        for k, run in enumerate(runs):
            if k not in ended:
                run.tracker.close(failed=True)
        if runs:
            echo("interrupted; continue with: subprobe probe --resume RUN_DIR for each of "
                 + ", ".join(str(r.plan.out) for k, r in enumerate(runs) if k not in ended), file=sys.stderr)
        raise
