"""Finished runs for the report: from a results store (index.json) or any directory of run directories.

A result is its ``metrics.json`` plus ``run_dir``, ``config`` (what the run recorded) and ``series``; the report
reads a run's settings through :func:`settings` (typed, every default from :class:`subprobe.config.ProbeConfig`)
and what its probe is through :func:`family` (the probe registry).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from subprobe.config import ProbeConfig
from subprobe.errors import SubprobeError
from subprobe.probes.family import ProbeFamily
from subprobe.probes.registry import find_family
from subprobe.runs import RunDir, read_json

#: metrics.json keys a finished probing run has (a dry run writes none of these).
REQUIRED = ("task", "probe", "setting", "primary_metric")


def load_results(root: str | Path) -> list[dict]:
    """Every finished run under ``root``: its metrics.json plus ``run_dir`` (absolute) and ``config``.

    ``root`` is a store root (``index.json`` + ``runs/``) or a plain directory searched recursively
    for ``metrics.json``. ``config`` is the run's config.yaml overlaid with the store's grid point.
    """
    root = Path(root)
    if not root.is_dir():
        raise SubprobeError(f"{root}: no such directory; give a results store (with index.json) or a runs directory")
    found: dict[Path, dict] = {}
    index_path = root / "index.json"
    if index_path.is_file():
        for entry in read_json(index_path).values():
            run_dir = _resolve(root, entry.get("run_dir", ""))
            if run_dir is not None:
                found.setdefault(run_dir, entry.get("config") or {})
        candidates = sorted((root / "runs").glob(f"*/{RunDir.METRICS}")) if (root / "runs").is_dir() else []
    else:
        candidates = sorted(root.rglob(RunDir.METRICS))
    for metrics_path in candidates:
        found.setdefault(metrics_path.parent.resolve(), {})
    results = []
    for run_dir, point in sorted(found.items(), key=lambda kv: str(kv[0])):
        try:
            metrics = RunDir(run_dir).read_metrics()
        except (OSError, ValueError):
            continue
        if not isinstance(metrics, dict) or any(k not in metrics for k in REQUIRED):
            continue
        metrics["run_dir"] = str(run_dir)
        metrics["config"] = {**_read_config(run_dir), **point}
        results.append(metrics)
    label_series(results)
    return results


def settings(result: dict) -> ProbeConfig:
    """The run's settings, typed: its recorded ``config`` with :class:`ProbeConfig`'s defaults for the rest."""
    return ProbeConfig.from_recorded(result.get("config") or {})


def family(result: dict) -> ProbeFamily | None:
    """The run's probe family (None for a probe this version does not know)."""
    return find_family(str(result.get("probe", "")))


def has_masks(result: dict) -> bool:
    """The run's probe learns or freezes masks over the encoder's weights (its run directory holds them)."""
    found = family(result)
    return found is not None and found.masks


def unit_label(result: dict) -> str:
    """The run's probe unit as tables show it (``neuron``, ``r=25``; "" for a probe without one)."""
    found = family(result)
    return "" if found is None else found.unit_label(settings(result))


def run_label(result: dict) -> str:
    """The run's unit and the settings that tell it apart from other runs of its probe (the list of runs)."""
    found = family(result)
    return "" if found is None else found.run_label(settings(result))


#: Configuration fields that set how much a run trained and was scored on (its budget).
BUDGET_FIELDS = ("max_train_samples", "max_eval_samples", "epochs")


def budget_of(result: dict) -> tuple:
    cfg = result.get("config", {})
    return tuple(cfg.get(k) for k in BUDGET_FIELDS)


def label_series(results: list[dict]) -> None:
    """Give every result a ``series``: the model's name, plus the budget when the results hold several.

    Tables, curves and selections group by series, so that a directory holding runs of different
    models or budgets (Table 1's 3000 sentences x 3 epochs beside Figure 1's 1500 x 2) never averages
    them into one cell or draws them on one curve.
    """
    several = len({budget_of(r) for r in results if "codelength" not in r}) > 1  # MDL blocks: one budget each
    for r in results:
        name = Path(str(r.get("model", ""))).name
        if several:
            train, evals, epochs = budget_of(r)
            name += f" [train {train or 'all'}, eval {evals or 'all'}, {epochs} ep]"
        r["series"] = name


def _resolve(root: Path, run_dir: str) -> Path | None:
    """The run directory of an index entry: as recorded (absolute or relative to here) or under ROOT/runs."""
    if not run_dir:
        return None
    recorded = Path(run_dir)
    for candidate in (recorded, root / "runs" / recorded.name, root.parent / recorded):
        if RunDir(candidate).finished:
            return candidate.resolve()
    return None


def _read_config(run_dir: Path) -> dict:
    run = RunDir(run_dir)
    if not run.has_config:
        return {}
    try:
        data = run.read_settings()
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
