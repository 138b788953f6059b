"""Where the points of a grid run: this process, a local process pool, Ray tasks, or SLURM jobs (submitit).

Every executor does one thing: run :func:`subprobe.experiments.point.run_job` on each job (a point, or a pack of
points that train in one process: one pool job, Ray task or SLURM array task) and hand each outcome back as it
arrives (``on_done``). The point itself records its state in the store's index, under the store's lock, so the
index stays the one source of truth whichever executor ran it (and whether or not the sweep that submitted it is
still alive). An executor never changes what a point computes: the executor, ``--jobs``, ``--threads`` and
``--pack`` are not part of a point's configuration or key.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from subprobe.errors import ConfigError
from subprobe.experiments.point import PackJob, PointJob, run_job

Job = PointJob | PackJob
OnStart = Callable[[Job], None]
OnDone = Callable[[Job, dict], None]

EXECUTORS = ("local", "ray", "slurm")


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def lost(exc: BaseException, where: str) -> dict:
    """The outcome of a point whose worker died before it could record anything itself."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"status": "failed", "error": f"{where}: {type(exc).__name__}{': ' + message if message else ''}",
            "lost": True}


class Executor:
    """Runs jobs; ``slots`` is how many jobs (points or packs) run at once (for the progress line)."""

    name = "serial"
    slots = 1
    threads: int | None = None  # torch threads each point gets (None: this process's setting)

    def run(self, jobs: list[Job], on_start: OnStart, on_done: OnDone) -> None:
        raise NotImplementedError


class SerialExecutor(Executor):
    """One point after another in this process (``--jobs 1``, the default)."""

    def run(self, jobs: list[Job], on_start: OnStart, on_done: OnDone) -> None:
        for job in jobs:
            on_start(job)
            on_done(job, run_job(job))


class LocalExecutor(Executor):
    """A pool of ``jobs`` worker processes on this machine, each with ``threads`` torch threads (default:
    the CPUs divided by ``jobs``). A worker that dies (killed, out of memory) breaks the pool: a new pool
    takes the points that had not finished, each resuming from its checkpoint, at most ``restarts`` times."""

    name = "local"

    def __init__(self, jobs: int, threads: int | None = None, restarts: int = 2) -> None:
        self.slots = jobs
        self.threads = threads or max(1, cpu_count() // jobs)
        self.restarts = restarts

    def run(self, jobs: list[Job], on_start: OnStart, on_done: OnDone) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        # spawn: a forked child of a process that has run torch threads can deadlock
        context = multiprocessing.get_context("spawn")
        todo, attempt = list(jobs), 0
        while todo:
            pool = ProcessPoolExecutor(max_workers=self.slots, mp_context=context, initializer=_die_with_parent,
                                       initargs=(os.getpid(),))
            try:
                futures = {}
                for job in todo:
                    futures[pool.submit(run_job, job)] = job
                    on_start(job)
                broken: BaseException | None = None
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        job = futures[future]
                        try:
                            outcome = future.result()
                        except BrokenProcessPool as exc:
                            broken = exc
                            continue
                        todo.remove(job)
                        on_done(job, outcome)
            except BaseException:  # Ctrl-C, SIGTERM, an error in a callback: stop the workers, do not wait for them
                _stop_workers(pool)
                raise
            pool.shutdown(wait=True)
            if broken is None:
                return
            attempt += 1
            if attempt > self.restarts:
                for job in todo:
                    on_done(job, lost(broken, "a worker process died"))
                return


def _die_with_parent(parent: int) -> None:
    """Pool worker initialiser: exit when the sweep process that started this worker is gone (killed with
    SIGKILL, it cannot stop its workers). Without this, a worker would finish its point and then wait for work
    forever; with it, the point is left as any killed run is (its last checkpoint) and the next sweep continues
    it."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="subprobe-parent-watch", daemon=True).start()


def _stop_workers(pool) -> None:
    """Terminate the workers of a ProcessPoolExecutor now (their points keep their last checkpoints) and drop
    the queued points. ``ProcessPoolExecutor`` has no public way to do this before Python 3.14."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.terminate()
        except (OSError, ValueError):  # already gone
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=10)


def ray_gpu_request(device: str | None, cluster_gpus: float) -> tuple[float, str | None]:
    """(GPUs each Ray task asks for, the ``--device`` the task runs with) for the sweep's ``--device``.

    ``cuda`` or ``cuda:N``: one GPU, and the task runs on ``cuda`` (Ray makes the GPU it grants the task's only
    visible one, so an index would point at a GPU the task cannot see); ``auto`` (or none given): one GPU when the
    cluster has any (the task's ``auto`` then resolves to it), else none; ``cpu``/``mps``: none.
    """
    spec = (device or "auto").strip().lower()
    if spec.startswith("cuda"):
        return 1.0, "cuda"
    if spec == "auto":
        return (1.0 if cluster_gpus > 0 else 0.0), device
    return 0.0, device


class RayExecutor(Executor):
    """Each point is a Ray task asking for ``cpus`` CPUs (its torch threads) and the GPUs its device needs
    (:func:`ray_gpu_request`). Joins the cluster at ``address``, or the Ray instance this process has already
    started, or starts a local one. ``jobs`` caps how many points are in flight (default: as many as the cluster
    schedules)."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None, cpus: float = 1,
                 device: str | None = None, retries: int = 2) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'subprobe[ray]'") from exc
        self.address, self.jobs, self.cpus, self.device, self.retries = address, jobs, cpus, device, retries
        self.gpus: float | None = None  # known once the cluster is joined (see ray_gpu_request)
        self.threads = max(1, int(cpus))
        self.slots = jobs or 1

    def run(self, jobs: list[Job], on_start: OnStart, on_done: OnDone) -> None:

        import ray

        started_here = not ray.is_initialized()
        if started_here:
            _keeping_sigterm(lambda: ray.init(address=self.address, include_dashboard=False, log_to_driver=False))
        resources = ray.cluster_resources()
        self.gpus, device = ray_gpu_request(self.device, resources.get("GPU", 0))
        if device != self.device:  # where the task runs is not part of a point's key
            jobs = [_on_device(job, device) for job in jobs]
        if self.jobs is None:
            self.slots = max(1, int(resources.get("CPU", 1) // max(self.cpus, 1e-9)))
        task = ray.remote(run_job).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries)
        queue, in_flight = list(jobs), {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.slots:
                    job = queue.pop(0)
                    in_flight[task.remote(job)] = job
                    on_start(job)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                job = in_flight.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # the worker died, retries spent
                    outcome = lost(exc, "the Ray task died")
                on_done(job, outcome)
        except BaseException:  # Ctrl-C, SIGTERM: stop the points in flight (they keep their last checkpoints)
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 -- already finished or gone; nothing to stop
                    pass
            raise
        finally:
            if started_here:
                ray.shutdown()


def _on_device(job: Job, device: str | None) -> Job:
    """``job`` with every point's ``--device`` set to ``device``."""
    import dataclasses

    if isinstance(job, PackJob):
        return PackJob(tuple(_on_device(point, device) for point in job.jobs))
    return dataclasses.replace(job, values={**job.values, "device": device})


def _keeping_sigterm(start) -> None:
    """Run ``start()`` and put back the SIGTERM handler it replaced (``ray.init`` installs one that exits at once;
    the command line's handler stops the sweep cleanly, cancelling the tasks in flight)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        start()
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        start()
    finally:
        signal.signal(signal.SIGTERM, previous)


class SlurmExecutor(Executor):
    """The points as one SLURM job array submitted with submitit; submitit's logs and pickles go to
    ``folder`` (in the store). ``cluster="local"`` runs the same code path on submitit's local executor
    (one subprocess per point), which is how the tests exercise it."""

    name = "slurm"

    def __init__(self, folder: str | Path, *, partition: str | None = None, time: str | None = None,
                 gpus_per_task: int | None = None, cpus_per_task: int | None = None,
                 array_parallelism: int | None = None, cluster: str = "slurm", poll_seconds: float = 10.0) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--executor slurm needs submitit: pip install 'subprobe[slurm]'") from exc
        self.folder, self.cluster, self.poll_seconds = Path(folder), cluster, poll_seconds
        self.parameters: dict = {}
        if time is not None:
            self.parameters["timeout_min"] = slurm_minutes(time)
        if cpus_per_task is not None:
            self.parameters["cpus_per_task"] = cpus_per_task
        if gpus_per_task is not None:
            self.parameters["slurm_gpus_per_task"] = gpus_per_task
        if partition is not None:
            self.parameters["slurm_partition"] = partition
        if array_parallelism is not None:
            self.parameters["slurm_array_parallelism"] = array_parallelism
        self.threads = cpus_per_task
        self.slots = array_parallelism or 1

    def run(self, jobs: list[Job], on_start: OnStart, on_done: OnDone) -> None:
        import submitit
        from submitit.helpers import as_completed

        if self.cluster == "slurm" and shutil.which("srun") is None:  # before anything is submitted
            raise ConfigError("--executor slurm: this machine is not part of a SLURM cluster (no srun command); run "
                              "the sweep on a SLURM login node, or use --executor local or ray")

        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        executor.update_parameters(name="subprobe", **self.parameters)
        submitted = executor.map_array(run_job, jobs)
        if not self.parameters.get("slurm_array_parallelism"):
            self.slots = len(jobs)
        by_id = {}
        for job, handle in zip(jobs, submitted):
            by_id[handle.job_id] = job
            on_start(job)
        for handle in as_completed(submitted, poll_frequency=self.poll_seconds):
            job = by_id[handle.job_id]
            try:
                outcome = handle.result()
            except Exception as exc:  # the job died (time limit, node failure, cancelled)
                outcome = lost(exc, f"SLURM job {handle.job_id} (logs in {self.folder})")
            on_done(job, outcome)


def slurm_minutes(text: str) -> int:
    """``--slurm-time`` as minutes: ``90``, ``1:30:00`` (H:MM:SS) or ``2-00:00:00`` (D-HH:MM:SS)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ConfigError(f"--slurm-time {text!r}: use minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS (2-00:00:00)")
    days, first, second, third = match.groups()
    if second is None:  # plain minutes (or D-HH)
        minutes = int(first) * (60 if days else 1)
    elif third is None:  # H:MM
        minutes = int(first) * 60 + int(second)
    else:  # H:MM:SS, seconds rounded up
        minutes = int(first) * 60 + int(second) + (1 if int(third) else 0)
    return minutes + int(days or 0) * 24 * 60


def make_executor(name: str = "local", *, jobs: int | None = None, threads: int | None = None,
                  store: str | Path = "results", device: str | None = None, ray_address: str | None = None,
                  slurm: dict | None = None) -> Executor:
    """The executor of ``--executor NAME`` with its options (checked: one-line errors)."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not known; use one of {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if ray_address and name != "ray":
        raise ConfigError(f"--ray-address only applies to --executor ray, not --executor {name}")
    given_slurm = {k: v for k, v in (slurm or {}).items() if v is not None}
    if given_slurm and name != "slurm":
        flags = ", ".join("--slurm-" + k.replace("_", "-") for k in sorted(given_slurm))
        raise ConfigError(f"{flags} only apply to --executor slurm, not --executor {name}")
    if name == "local":
        if (jobs or 1) == 1:
            return SerialExecutor()
        return LocalExecutor(jobs, threads)
    if name == "ray":
        return RayExecutor(ray_address, jobs, cpus=threads or 1, device=device)
    options = dict(given_slurm)
    if jobs is not None and "array_parallelism" not in options:
        options["array_parallelism"] = jobs
    if threads is not None and "cpus_per_task" not in options:
        options["cpus_per_task"] = threads
    return SlurmExecutor(Path(store) / "slurm", **options)
