"""``subprobe reproduce NAME``: run a built-in experiment -- its grid into a store, then its writer's tables or
figures (the paper's tables and figures, and the selectivity, density, MDL and morphology grids beyond it). The
experiments are the grid files of :mod:`subprobe.experiments.grids`; each names its writer
(:data:`subprobe.experiments.writers.WRITERS`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from subprobe.errors import ConfigError, did_you_mean
from subprobe.experiments.grids import Grid, builtin_grids, load_grid
from subprobe.experiments.sweep import check_overrides, default_store, point_values, run_points, seeds_axis
from subprobe.experiments.writers import EXPANDS, STORE_RECORDS, WRITERS


def experiments() -> tuple[str, ...]:
    """The names ``subprobe reproduce`` takes: the built-in grids."""
    return builtin_grids()


@dataclass(frozen=True)
class Planned:
    """The points of an experiment, as :func:`reproduce` runs them: the grid, the profile it picked, the points
    (MDL's expanded into their block runs), and the values every point shares (``base``, ``overrides``)."""

    grid: Grid
    profile: str | None
    points: list[dict]
    base: dict
    overrides: dict
    writer: str


def experiment_points(
    what: str,
    *,
    profile: str | None = None,
    model: str | None = None,
    tasks: list[str] | None = None,
    seeds: int = 1,
    data_dir: str | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    overrides: dict | None = None,
) -> Planned:
    """The points ``reproduce(what, ...)`` would run, checked, without running or writing anything."""
    if what not in experiments():
        raise ConfigError(f"reproduce {what!r} is not known{did_you_mean(what, experiments())}; use one of "
                          f"{', '.join(experiments())}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    grid = load_grid(what)
    writer = grid.writer or grid.name
    if writer not in WRITERS:
        raise ConfigError(f"grid {grid.name} names no writer (`writer:`, one of {', '.join(WRITERS)}); add one")
    profile = grid.profile_named(profile)
    points = seeds_axis(grid.points(profile, task=tasks), seeds)
    base = {k: v for k, v in (("model", model), ("data_dir", data_dir)) if v}
    if device:  # where the runs compute; not part of a run's key (see store.NON_RESULT_FIELDS)
        base["device"] = device
    if gradient_checkpointing:
        base["gradient_checkpointing"] = True
    overrides = dict(overrides or {})
    check_overrides(overrides, grid, seeds)
    expand = EXPANDS.get(writer)
    if expand is not None:  # e.g. MDL: every point becomes its online code's block runs (each a whole configuration)
        points, base, overrides = expand([point_values(p, base, overrides) for p in points]), {}, {}
    return Planned(grid, profile, points, base, overrides, writer)


def reproduce(
    what: str,
    *,
    profile: str | None = None,
    model: str | None = None,
    tasks: list[str] | None = None,
    seeds: int = 1,
    out: str | None = None,
    data_dir: str | None = None,
    echo=print,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    overrides: dict | None = None,
    executor=None,
    pack: int | None = None,
) -> dict:
    """Run (or resume) the grid of the experiment ``what`` and write its files into the store root ``out``
    (default ``results``).

    ``profile``: one the grid defines (default: quick when it defines it, else its first). ``overrides``:
    configuration values for every point (not an axis of the grid; part of each point's key), e.g.
    ``{"max_train_samples": 300, "epochs": 1}``. ``executor``: where the points run
    (:func:`subprobe.experiments.executors.make_executor`; default one after another in this process). ``pack``:
    points trained together in one process at most (:func:`subprobe.experiments.sweep.run_points`).
    Returns the run counts (``counts``) and what the experiment's writer returns (``markdown`` and more)."""
    planned = experiment_points(what, profile=profile, model=model, tasks=tasks, seeds=seeds, data_dir=data_dir,
                                device=device, gradient_checkpointing=gradient_checkpointing, overrides=overrides)
    points, base, overrides, writer = planned.points, planned.base, planned.overrides, planned.writer
    write = WRITERS[writer]
    store = default_store(out)
    counts = run_points(points, store, base, echo=echo, overrides=overrides, executor=executor, pack=pack)
    wanted = {store.run_dir(_config(point_values(p, base, overrides)))[1].name for p in points}
    root = Path(store.root)
    if writer in STORE_RECORDS:
        results = store.results()
    else:
        from subprobe.report.loading import load_results

        results = load_results(root)
    results = [r for r in results if Path(r["run_dir"]).name in wanted]
    written = write(what, results, root, model or _config({}).model, echo)
    echo(f"{what}: {counts['done']} run(s) done, {counts['skipped']} skipped (finished earlier), "
         f"{counts['failed']} failed; {written.pop('files')} in {root}")
    return {"counts": counts, **written}


def _config(values: dict):
    from subprobe.config import ProbeConfig

    return ProbeConfig(**values)
