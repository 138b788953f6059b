"""Stability of the found subnetworks across seeds: mean pairwise IoU of the kept weights per point.

Subnetwork runs that differ only in replica settings (the seeds: ``replica`` in :mod:`subprobe.config`; every
other setting that changes a result equal) are one point; a point with two or more replicas gets a row (a
replica run twice counts once: its first run directory by name): the mean, minimum and maximum IoU over all pairs
of replicas and the mean weight-level agreement (:mod:`subprobe.masking.compare`).
"""

from __future__ import annotations

from subprobe.config import settings_where
from subprobe.masking.compare import compare
from subprobe.report.render import Table
from subprobe.runs import RunDir

#: Configuration fields that vary between replicas of one point (the seeds; ``replica`` in subprobe.config).
REPLICA_FIELDS = settings_where(replica=True)
#: Configuration fields that do not define a point: the replica fields, and settings that never change a result.
NOT_IN_POINT = frozenset({*REPLICA_FIELDS, *settings_where(in_key=False)})

HEADER = ["series", "task", "setting", "unit", "λmax", "seeds", "mean IoU", "min IoU", "max IoU", "mean agreement",
          "mean density"]


def _point(result: dict) -> tuple:
    config = result.get("config", {})
    return (result.get("series", ""), result["task"],
            tuple(sorted((k, repr(v)) for k, v in config.items() if k not in NOT_IN_POINT)))


def stability_rows(results: list[dict]) -> list[list]:
    """One row per point with two or more seeds of a subnetwork probe (see :data:`HEADER`)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if r.get("probe") == "subnetwork" and RunDir(r["run_dir"]).has_masks:
            groups.setdefault(_point(r), []).append(r)
    rows = []
    for (series, task, _), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))):
        runs = _one_per_seed(runs)
        if len(runs) < 2:
            continue
        subs = [RunDir(r["run_dir"]).read_masks() for r in runs]
        pairs = [compare(a, b).overall for i, a in enumerate(subs) for b in subs[i + 1:]]
        ious = [p.iou for p in pairs]
        config = runs[0].get("config", {})
        rows.append([
            series, task, runs[0].get("setting", ""), config.get("granularity", ""), _strength(config),
            len(runs), f"{sum(ious) / len(ious):.4f}", f"{min(ious):.4f}", f"{max(ious):.4f}",
            f"{sum(p.agreement for p in pairs) / len(pairs):.4f}",
            f"{sum(s.density() for s in subs) / len(subs):.4f}",
        ])
    return rows


def _strength(config: dict) -> object:
    """The λmax cell: the penalty weight, or ``p=...`` for a run held at a --target-density (no λ then)."""
    target = config.get("target_density")
    return f"p={target:g}" if target is not None else config.get("lambda_max", "")


def replica_of(result: dict) -> tuple:
    """Which replica of its point a run is: its replica settings (the seeds)."""
    config = result.get("config", {})
    return tuple(repr(config.get(name)) for name in REPLICA_FIELDS)


def _one_per_seed(runs: list[dict]) -> list[dict]:
    """The first run of each replica by run directory: a rerun of a seed says nothing about stability."""
    first: dict[object, dict] = {}
    for r in sorted(runs, key=lambda r: str(r["run_dir"])):
        first.setdefault(replica_of(r), r)
    return list(first.values())


def stability_table(results: list[dict]) -> Table:
    """The stability table of the report (empty text when no point has two seeds)."""
    return Table(
        "stability", "Stability across seeds (weight-level IoU of the kept weights)", HEADER, stability_rows(results),
        notes=["IoU: weights kept by both runs / weights kept by either, averaged over all pairs of seeds of a point "
               "(a point: every setting equal but the seeds; a seed run twice counts once, its first run directory). "
               "`subprobe compare RUN_A RUN_B` shows one pair by layer and role."],
        empty="No subnetwork point has two or more seeds (run a sweep or reproduce with --seeds N).",
    )
