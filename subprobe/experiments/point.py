"""One grid point, run where an executor puts it (this process, a pool worker, a Ray task, a SLURM job).

A point is a pure function of its configuration: :func:`run_point` trains it with
``subprobe.api.probe(config, resume=True)`` (a killed worker leaves a checkpoint the next call continues
from) and records its state in the store's index under the store's file lock. It returns a small
picklable outcome for the sweep's progress line; the index, not the outcome, is the record.
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
