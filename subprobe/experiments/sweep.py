"""Run a grid of probes into a store: finished points are skipped, a crashed point does not stop the rest."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from pathlib import Path

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError, SubprobeError
from subprobe.experiments.executors import Executor, Job, SerialExecutor
from subprobe.experiments.grids import Grid
from subprobe.experiments.point import PackJob, PointJob
from subprobe.experiments.store import Store
from subprobe.runs import RunDir


def point_values(point: dict, base: dict | None = None, overrides: dict | None = None) -> dict:
    """The configuration values of one point: ``base`` (model, data), the grid's point (profile and axes), then
    ``overrides`` (flags given to sweep/reproduce for every point; never an axis, see :func:`check_overrides`)."""
    return {**(base or {}), **point, **(overrides or {})}


def check_overrides(overrides: dict, grid: Grid, seeds: int = 1) -> None:
    """Refuse an override of a grid axis: it would collapse the axis and make the grid lie about its points."""
    axes = grid.axis_keys() | ({"seed", "reset_seed"} if seeds > 1 else set())
    clash = sorted(set(overrides) & axes)
    if clash:
        flags = ", ".join("--" + k.replace("_", "-") for k in clash)
        raise ConfigError(f"{flags}: an axis of grid {grid.name}; a flag for every point cannot set it "
                          "(edit the grid, or select the axis's values where the command offers it, e.g. --tasks)")


def run_points(points: list[dict], store: Store, base: dict | None = None, echo=print, *,
               overrides: dict | None = None, executor: Executor | None = None, pack: int | None = None
               ) -> dict[str, int]:
    """Run every point (``point_values``) with ``executor`` (default: one after another in this process);
    finished points are skipped. Points that pack (:func:`subprobe.training.packed.pack_key`) train together, up
    to ``pack`` in one process (default: :data:`subprobe.config.DEFAULT_PACK` subnetwork points, every
    compatible MLP-1 or linear point on cached features; 1: each point alone). Returns counts of
    done/skipped/failed."""
    executor = executor or SerialExecutor()
    if pack is not None and pack < 1:
        raise ConfigError(f"--pack must be at least 1, got {pack}")
    counts = {"done": 0, "skipped": 0, "failed": 0}
    known = {f.name for f in dataclasses.fields(ProbeConfig)}
    jobs = []
    for i, point in enumerate(points, start=1):
        values = point_values(point, base, overrides)
        unknown = sorted(set(values) - known)
        if unknown:
            raise SubprobeError(f"grid point {point}: unknown configuration keys {', '.join(unknown)}")
        key, run_dir = store.run_dir(ProbeConfig(**values))
        job = PointJob(i, len(points), key, values, str(run_dir.resolve()), str(store.root.resolve()),
                       executor.threads)
        if store.finished(run_dir):
            counts["skipped"] += 1
            store.record(key, {"status": "done", "run_dir": store.relative(run_dir), "config": values})
            echo(f"{job.label}: finished earlier, skipped")
            continue
        jobs.append(job)
    work = pack_jobs(jobs, pack, echo)
    progress = GridProgress(len(points), counts["skipped"], executor.slots)

    def on_start(job: Job) -> None:
        progress.start(job)
        if executor.slots == 1:
            if isinstance(job, PackJob):
                echo(f"{job.label}: running {', '.join(Path(p.run_dir).name for p in job.jobs)} in one process")
            else:
                echo(f"{job.label}: running")

    busy: list[PointJob] = []

    def on_done(job: Job, outcome: dict) -> None:
        progress.end(job)
        if isinstance(job, PackJob):
            parts = outcome.get("outcomes") or [outcome] * len(job.jobs)  # lost: every point of the pack
            for point, part in zip(job.jobs, parts):
                point_done(point, part)
        else:
            point_done(job, outcome)
        if len(jobs) > 1:
            echo(progress.line())

    def point_done(job: PointJob, outcome: dict) -> None:
        if outcome["status"] == "busy":  # another sweep on this store runs it: wait for it at the end
            busy.append(job)
            progress.started -= 1
            who = f" ({outcome.get('host', '?')}, pid {outcome.get('pid', '?')})" if outcome.get("pid") else ""
            echo(f"{job.label}: running in another sweep{who}; waiting for it after the other points")
            return
        if outcome.get("lost"):  # the worker died before it could record the failure itself
            store.record(job.key, {"status": "failed", "error": outcome["error"]})
        if outcome.get("elsewhere"):
            counts["skipped"] += 1
            progress.skipped += 1
            progress.started -= 1
            echo(f"{job.label}: finished by another sweep, skipped")
        elif outcome["status"] == "done":
            counts["done"] += 1
            progress.done += 1
            echo(f"{job.label}: done in {outcome['seconds']:.0f}s")
        else:
            counts["failed"] += 1
            progress.failed += 1
            where = f" (traceback in {outcome['traceback']})" if outcome.get("traceback") else ""
            verb = "failed with" if where else "failed:"
            echo(f"{job.label}: {verb} {outcome['error']}{where}", file=sys.stderr)

    if work:
        executor.run(work, on_start, on_done)
    if busy:  # the same executor, now waiting on each point's lock: done by the other sweep, or continued here
        waiting, busy[:] = [dataclasses.replace(job, wait=True) for job in busy], []
        executor.run(waiting, on_start, on_done)
    return counts


def point_states(points: list[dict], store: Store, base: dict | None = None, *,
                 overrides: dict | None = None) -> list[dict]:
    """Where every point of a grid stands in ``store``, without running or writing anything: ``number``,
    ``run_dir`` (its name), ``key`` and ``state``: ``done`` (metrics.json there), ``running`` (the index says a
    process runs it, and on this machine that process is alive), ``failed`` (with its ``error``) or ``to go``
    (``interrupted`` too when a checkpoint waits for the next sweep to continue from it)."""
    index = store.load_index()
    host = socket.gethostname()
    states = []
    for i, point in enumerate(points, start=1):
        key, run_dir = store.run_dir(ProbeConfig(**point_values(point, base, overrides)))
        entry, row = index.get(key, {}), {"number": i, "run_dir": run_dir.name, "key": key}
        if store.finished(run_dir):
            row["state"] = "done"
        elif entry.get("status") == "running" and (entry.get("host") != host or _alive(entry.get("pid"))):
            row.update(state="running", host=entry.get("host"), pid=entry.get("pid"))
        elif entry.get("status") == "failed":
            row.update(state="failed", error=entry.get("error", ""))
        else:
            row.update(state="to go", interrupted=RunDir(run_dir).status() in ("checkpoint", "started"))
        states.append(row)
    return states


def _alive(pid) -> bool:
    """Whether a process with this id runs on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


#: The states of :func:`point_states`, in the order ``--list`` counts them.
STATES = ("done", "running", "failed", "to go")


def list_points(points: list[dict], store: Store, base: dict | None = None, *, overrides: dict | None = None,
                title: str = "grid") -> str:
    """``sweep --list`` / ``reproduce --list``: one line per point (its state and run directory) and the counts."""
    states = point_states(points, store, base, overrides=overrides)
    width = len(str(len(states)))
    lines = [f"{title}: {len(states)} point(s) in store {store.root}"]
    for row in states:
        state = row["state"]
        detail = ""
        if state == "failed":
            detail = f" -- {row['error']}"
        elif state == "running":
            detail = f" -- on {row.get('host', '?')}, pid {row.get('pid', '?')}"
        elif row.get("interrupted"):
            detail = " -- interrupted: continues from its checkpoint"
        lines.append(f"  [{row['number']:>{width}}/{len(states)}] {state:<8} {row['run_dir']}{detail}")
    counts = {state: sum(row["state"] == state for row in states) for state in STATES}
    lines.append(", ".join(f"{counts[state]} {state}" for state in STATES))
    return "\n".join(lines)


def pack_jobs(jobs: list[PointJob], pack: int | None = None, echo=None) -> list[Job]:
    """``jobs`` as the executor runs them: the points that pack together (see :func:`run_points`) as one
    :class:`PackJob` each, the others alone; ``pack=1``: every point alone (no pack is formed). ``echo``: where to
    say, in one line, which points train alone and why (points that cannot pack)."""
    from subprobe.resolve import resolve
    from subprobe.training.packed import alone_note, group_packs, pack_key

    if pack == 1 or len(jobs) < 2:
        return list(jobs)
    keys, configs = [], []
    for job in jobs:
        try:
            cfg = resolve(ProbeConfig(**job.values))
        except ConfigError:  # a bad point fails alone, with its own message
            keys.append(None)
            continue
        keys.append(pack_key(cfg))
        configs.append(cfg)
    note = alone_note(configs, "point")
    if note and echo is not None:
        echo(note, file=sys.stderr)
    return [jobs[g[0]] if len(g) == 1 else PackJob(tuple(jobs[i] for i in g)) for g in group_packs(keys, pack)]


class GridProgress:
    """done / running (in how many packs) / failed / to go for a whole grid, and an ETA from this sweep's pace so
    far. ``slots``: jobs (points or packs) the executor runs at once."""

    def __init__(self, total: int, skipped: int, slots: int) -> None:
        self.total, self.skipped, self.slots = total, skipped, slots
        self.done = self.failed = self.started = 0
        self.began = time.perf_counter()
        # started jobs not yet ended (by id, in order) -> (the job, held so that its id stays its own; its points)
        self.in_flight: dict[int, tuple[object, int]] = {}

    def start(self, job) -> None:
        self.started += len(job.points)
        self.in_flight[id(job)] = (job, len(job.points))

    def end(self, job) -> None:
        self.in_flight.pop(id(job), None)

    def line(self) -> str:
        finished = self.done + self.failed
        sizes = [n for _, n in self.in_flight.values()][: self.slots]  # the jobs running now (in submission order)
        packs = [n for n in sizes if n > 1]
        running = sum(sizes) if packs else min(self.slots, self.started - finished)
        to_go = self.total - self.skipped - finished - running
        text = f"grid: {self.skipped + self.done} done, {running} running{_packs(packs, len(sizes) - len(packs))}, "
        text += f"{self.failed} failed, {to_go} to go (of {self.total})"
        left = running + to_go
        if left and finished:
            seconds = (time.perf_counter() - self.began) / finished * left
            text += f"; ETA {format_seconds(seconds)}"
        return text


def _packs(packs: list[int], alone: int) -> str:
    """`` (2 packs of 4)``, `` (3 packs: 4+4+3, 1 alone)``; "" without packs."""
    if not packs:
        return ""
    noun = "pack" if len(packs) == 1 else "packs"
    sizes = f" of {packs[0]}" if len(set(packs)) == 1 else ": " + "+".join(map(str, packs))
    return f" ({len(packs)} {noun}{sizes}{f', {alone} alone' if alone else ''})"


def format_seconds(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def seeds_axis(points: list[dict], seeds: int) -> list[dict]:
    """Repeat every point for seeds 0..seeds-1 (also the reset seed, so random models differ)."""
    if seeds <= 1:
        return points
    return [{**p, "seed": s, "reset_seed": s} for p in points for s in range(seeds)]


def default_store(out: str | None) -> Store:
    return Store(Path(out) if out else Path("results"))
