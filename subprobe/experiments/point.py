"""One grid point, or a pack of them, run where an executor puts it (this process, a pool worker, a Ray task, a
SLURM job).

A point is a pure function of its configuration: :func:`run_point` trains it with
``subprobe.api.probe(config, resume=True)`` (a killed worker leaves a checkpoint the next call continues
from) and records its state in the store's index under the store's file lock. It returns a small
picklable outcome for the sweep's progress line; the index, not the outcome, is the record.

A :class:`PackJob` is several points that train in one process sharing the frozen encoder (``--pack``,
:mod:`subprobe.training.packed`): :func:`run_pack` runs them with :func:`subprobe.many.run_many` and records each
point in the index as it ends, exactly as :func:`run_point` would (a pack is an execution detail: no key, no file
of a run says it was packed). :func:`run_job` runs either kind of job.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from subprobe.errors import SubprobeError


@dataclass(frozen=True)
class PointJob:
    """Everything a worker needs to run one point: plain values only (it is pickled to other processes)."""

    number: int  # 1-based position in the grid
    total: int
    key: str
    values: dict  # ProbeConfig values of the point (its key is config_key of these)
    run_dir: str  # absolute
    store: str  # absolute store root
    threads: int | None = None  # torch threads in the worker (None: leave torch's setting)
    #: wait for another sweep that is running this point (False: report it busy at once, see :func:`run_point`)
    wait: bool = False

    @property
    def label(self) -> str:
        return f"[{self.number}/{self.total}] {Path(self.run_dir).name}"

    @property
    def points(self) -> tuple[PointJob, ...]:
        return (self,)


@dataclass(frozen=True)
class PackJob:
    """Points that train together in one process (their outcomes come back together, see :func:`run_pack`)."""

    jobs: tuple[PointJob, ...]

    @property
    def points(self) -> tuple[PointJob, ...]:
        return self.jobs

    @property
    def threads(self) -> int | None:
        return self.jobs[0].threads

    @property
    def label(self) -> str:
        numbers = ",".join(str(j.number) for j in self.jobs)
        return f"[{numbers}/{self.jobs[0].total}] a pack of {len(self.jobs)}"


def run_job(job: PointJob | PackJob) -> dict:
    """:func:`run_pack` for a pack, :func:`run_point` for a point (what every executor runs)."""
    return run_pack(job) if isinstance(job, PackJob) else run_point(job)


def run_point(job: PointJob) -> dict:
    """Train (or continue) one point into its run directory; ``{"status": "done"|"failed", ...}``."""
    from filelock import Timeout

    from subprobe.experiments.store import Store

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    store = Store(job.store)
    run_dir = Path(job.run_dir)
    lock = store.point_lock(run_dir)
    try:  # one process per point, whichever sweep it belongs to (two sweeps on one store share the work)
        lock.acquire(timeout=-1 if job.wait else 0)
    except Timeout:
        holder = store.load_index().get(job.key, {})  # who runs it, for the message
        return {"status": "busy", "host": holder.get("host"), "pid": holder.get("pid")}
    try:
        if store.finished(run_dir):  # finished by another sweep since this one looked
            return {"status": "done", "elsewhere": True, "seconds": 0.0}
        return _run_locked(job, store, run_dir)
    finally:
        lock.release()


def run_pack(job: PackJob) -> dict:
    """Train the points of ``job`` together (each with ``resume=True``, as :func:`run_point`); each point is
    recorded in the index when it ends. ``{"status": "pack", "outcomes": [outcome of each point, as run_point's]}``.
    A point that another sweep runs is left to it (``busy``), one finished elsewhere is skipped."""
    from filelock import Timeout

    from subprobe.experiments.store import Store

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    store = Store(job.jobs[0].store)
    outcomes: dict[int, dict] = {}
    locks, mine = [], []
    try:
        for point in job.jobs:
            run_dir = Path(point.run_dir)
            lock = store.point_lock(run_dir)
            try:
                lock.acquire(timeout=-1 if point.wait else 0)
            except Timeout:
                holder = store.load_index().get(point.key, {})
                outcomes[point.number] = {"status": "busy", "host": holder.get("host"), "pid": holder.get("pid")}
                continue
            locks.append(lock)
            if store.finished(run_dir):
                outcomes[point.number] = {"status": "done", "elsewhere": True, "seconds": 0.0}
            else:
                mine.append(point)
        if mine:
            outcomes.update(_run_pack_locked(mine, store))
    finally:
        for lock in locks:
            lock.release()
    return {"status": "pack", "outcomes": [outcomes[point.number] for point in job.jobs]}


def _run_pack_locked(points: list[PointJob], store) -> dict[int, dict]:
    """:func:`run_pack` once this process holds the points' locks: each point's outcome by its number."""
    from subprobe.config import ProbeConfig
    from subprobe.many import run_many
    from subprobe.runs import RunDir

    where = {"host": socket.gethostname(), "pid": os.getpid()}
    for point in points:
        store.record(point.key, {"status": "running", "run_dir": store.relative(Path(point.run_dir)),
                                 "config": point.values, **where})
        RunDir(point.run_dir).clear_error()  # see _run_locked
    started = time.perf_counter()
    outcomes: dict[int, dict] = {}

    def ended(i: int, outcome) -> None:
        point = points[i]
        run_dir = Path(point.run_dir)
        if isinstance(outcome, SubprobeError):
            store.record(point.key, {"status": "failed", "error": str(outcome)})
            outcomes[point.number] = {"status": "failed", "error": str(outcome)}
        elif isinstance(outcome, BaseException):  # a bug: its traceback kept in the run directory
            run_dir.mkdir(parents=True, exist_ok=True)
            RunDir(run_dir).write_error("".join(traceback.format_exception(outcome)))
            error = f"{type(outcome).__name__}: {outcome}"
            store.record(point.key, {"status": "failed", "error": error})
            outcomes[point.number] = {"status": "failed", "error": error,
                                      "traceback": str(RunDir(run_dir).error_path)}
        else:
            seconds = time.perf_counter() - started
            store.record(point.key, {"status": "done", "seconds": round(seconds, 1)})
            outcomes[point.number] = {"status": "done", "seconds": seconds}

    configs = [dataclasses.replace(ProbeConfig(**p.values), out=str(p.run_dir), overwrite=False, progress=False)
               for p in points]
    run_many(configs, echo=lambda *a, **k: None, resume=True, pack=len(configs), on_done=ended)
    return outcomes


def _run_locked(job: PointJob, store, run_dir: Path) -> dict:
    """:func:`run_point` once this process holds the point's lock."""
    from subprobe import api
    from subprobe.config import ProbeConfig
    from subprobe.runs import RunDir

    where = {"host": socket.gethostname(), "pid": os.getpid()}
    store.record(job.key, {"status": "running", "run_dir": store.relative(run_dir), "config": job.values, **where})
    started = time.perf_counter()
    config = dataclasses.replace(ProbeConfig(**job.values), out=str(run_dir), overwrite=False, progress=False)
    # the traceback of an earlier attempt is not part of the run: left there, it would make a directory
    # that crashed before config.yaml was written look foreign to resume, and the point could never run again
    RunDir(run_dir).clear_error()
    try:  # an interrupted point continues from its checkpoint
        api.probe(config, echo=lambda *a, **k: None, resume=True)
    except SubprobeError as exc:
        store.record(job.key, {"status": "failed", "error": str(exc)})
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:  # a bug in one point must not stop the grid; keep its traceback
        run_dir.mkdir(parents=True, exist_ok=True)
        RunDir(run_dir).write_error(traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}"
        store.record(job.key, {"status": "failed", "error": error})
        return {"status": "failed", "error": error, "traceback": str(RunDir(run_dir).error_path)}
    seconds = time.perf_counter() - started
    store.record(job.key, {"status": "done", "seconds": round(seconds, 1)})
    return {"status": "done", "seconds": seconds}
