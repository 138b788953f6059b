"""Run a grid of probes into a store: finished points are skipped, a crashed point does not stop the rest."""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path

from subprobe.config import ProbeConfig
from subprobe.errors import SubprobeError
from subprobe.experiments.store import Store


def run_points(points: list[dict], store: Store, base: dict | None = None, echo=print) -> dict[str, int]:
    """Run every point (config overrides on top of ``base``); returns counts of done/skipped/failed."""
    from subprobe.api import probe

    counts = {"done": 0, "skipped": 0, "failed": 0}
    known = {f.name for f in dataclasses.fields(ProbeConfig)}
    for i, point in enumerate(points, start=1):
        values = {**(base or {}), **point}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SubprobeError(f"grid point {point}: unknown configuration keys {', '.join(unknown)}")
        config = ProbeConfig(**values)
        key, run_dir = store.run_dir(config)
        label = f"[{i}/{len(points)}] {run_dir.name}"
        if store.finished(run_dir):
            counts["skipped"] += 1
            store.record(key, {"status": "done", "run_dir": store.relative(run_dir), "config": values})
            echo(f"{label}: finished earlier, skipped")
            continue
        echo(f"{label}: running")
        store.record(key, {"status": "running", "run_dir": store.relative(run_dir), "config": values})
        started = time.perf_counter()
        config = dataclasses.replace(config, out=str(run_dir), overwrite=False, progress=False)
        try:  # an interrupted point continues from its checkpoint
            probe(config, echo=lambda *a, **k: None, resume=True)
        except SubprobeError as exc:
            counts["failed"] += 1
            store.record(key, {"status": "failed", "error": str(exc)})
            echo(f"{label}: failed: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # a bug in one point must not stop the grid; keep its traceback
            counts["failed"] += 1
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            store.record(key, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            echo(f"{label}: failed with {type(exc).__name__}: {exc} (traceback in {run_dir / 'error.txt'})",
                 file=sys.stderr)
            continue
        counts["done"] += 1
        store.record(key, {"status": "done", "seconds": round(time.perf_counter() - started, 1)})
        echo(f"{label}: done in {time.perf_counter() - started:.0f}s")
    return counts


def seeds_axis(points: list[dict], seeds: int) -> list[dict]:
    """Repeat every point for seeds 0..seeds-1 (also the reset seed, so random models differ)."""
    if seeds <= 1:
        return points
    return [{**p, "seed": s, "reset_seed": s} for p in points for s in range(seeds)]


def default_store(out: str | None) -> Store:
    return Store(Path(out) if out else Path("results"))
