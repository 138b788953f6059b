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


def load_results(root: str | Path, notes: list[str] | None = None) -> list[dict]:
    """Every finished run under ``root``: its metrics.json plus ``run_dir`` (absolute) and ``config``.

    ``root`` is a store root (``index.json`` + ``runs/``) or a plain directory searched recursively
    for ``metrics.json``. ``config`` is the run's config.yaml overlaid with the store's grid point.
    An index entry names its run directory inside ``ROOT/runs`` only (by its last path component: the
    index of a store someone sent you cannot point the report elsewhere). ``notes`` (when given) receives
    one line for everything left out: failed or unfinished points, unreadable or foreign metrics files.
    """
    root = Path(root)
    notes = notes if notes is not None else []
    if not root.is_dir():
        raise SubprobeError(f"{root}: no such directory; give a results store (with index.json) or a runs directory")
    found: dict[Path, dict] = {}
    index_path = root / "index.json"
    index = _read_index(index_path, notes) if index_path.is_file() else None
    if index is not None:
        states: dict[str, int] = {}
        for key, entry in index.items():
            run_dir = store_run_dir(root, entry.get("run_dir"))
            status = str(entry.get("status", "unknown"))
            if run_dir is not None and RunDir(run_dir).finished:
                found.setdefault(run_dir.resolve(), entry.get("config") if isinstance(entry.get("config"), dict)
                                 else {})
            else:
                states[status] = states.get(status, 0) + 1
                if status == "failed":
                    notes.append(f"{index_path}: point {key} failed ({str(entry.get('error', ''))[:120]}); not in "
                                 "the report (run the sweep again to retry it)")
        for status, count in sorted(states.items()):
            if status == "done":  # recorded as done, but no finished run directory under ROOT/runs
                notes.append(f"{index_path}: {count} point(s) marked done have no finished run directory under "
                             f"{root / 'runs'}; not in the report")
            elif status != "failed":
                notes.append(f"{index_path}: {count} point(s) {status}, not finished; not in the report")
        candidates = sorted((root / "runs").glob(f"*/{RunDir.METRICS}")) if (root / "runs").is_dir() else []
    else:
        candidates = sorted(root.rglob(RunDir.METRICS))
    for metrics_path in candidates:
        found.setdefault(metrics_path.parent.resolve(), {})
    results = []
    for run_dir, point in sorted(found.items(), key=lambda kv: str(kv[0])):
        try:
            metrics = RunDir(run_dir).read_metrics()
        except (OSError, ValueError) as exc:
            notes.append(f"{exc}" if isinstance(exc, SubprobeError) else f"{run_dir}/{RunDir.METRICS}: cannot be "
                         f"read ({type(exc).__name__}); not in the report")
            continue
        missing = [k for k in REQUIRED if k not in metrics]
        if missing:
            notes.append(f"{run_dir}/{RunDir.METRICS}: no {', '.join(missing)} (not a probing run, or written by "
                         "a much older subprobe); not in the report: train it again")
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
def _read_index(path: Path, notes: list[str]) -> dict | None:
    """``index.json`` as a mapping of entries; a damaged one is noted and the runs are read without it."""
    try:
        index = read_json(path)
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: cannot be read ({getattr(exc, 'reason', type(exc).__name__)}); the report reads the "
                     "run directories under runs/ instead")
        return None
    if not isinstance(index, dict) or not all(isinstance(e, dict) for e in index.values()):
        notes.append(f"{path}: not a subprobe store index; the report reads the run directories under runs/ instead")
        return None
    return index


def store_run_dir(root: Path, recorded) -> Path | None:
    """The run directory an index entry names, always ``ROOT/runs/<name>``: only the last component of what the
    index records is used (an absolute path or ``..`` in someone else's index cannot lead outside the store;
    a store that was moved still finds its runs). None for an entry without a usable name."""
    if not isinstance(recorded, str) or not recorded:
        return None
    name = Path(recorded.replace("\\", "/")).name
    if name in ("", ".", ".."):
        return None
    return root / "runs" / name


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


def _read_config(run_dir: Path) -> dict:
    run = RunDir(run_dir)
    if not run.has_config:
        return {}
    try:
        data = run.read_settings()
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
