"""Wall time of a whole grid: ``subprobe reproduce figure1`` one point at a time, with ``--jobs 2``, and packed.

    python benchmarks/pack_wall.py [--what figure1] [--tasks upos] [--profile quick] [--pack 8]
                                   [--variants serial,jobs2,pack] [--rounds 1] [--out bench-out/pack_wall]

The issue's targets: ``reproduce figure1 --tasks upos --profile quick`` packed at least 2x faster than one point at a
time (the local executor, torch's threads) and at least 1.2x faster than ``--jobs 2``, with the same results within
seed noise. Each variant runs ``python -m subprobe reproduce ...`` in a subprocess into its own fresh store
(``OUT/<variant>-<round>``), one after the other (``--rounds R`` repeats them, the order rotating, so that a change
of load hits every variant); this process times them and prints, beside the 1-minute load average before and after
each:

* each variant's wall time and the ratios ``serial / pack`` and ``jobs2 / pack`` (best round of each);
* the results against the serial store's, point by point (the same key): the largest difference of every dev and test
  figure, and how many points each store finished.

Variants: ``serial`` (``--pack 1``), ``jobs2`` (``--pack 1 --jobs 2``), ``pack`` (``--pack K``), ``pack_jobs2``
(``--pack K --jobs 2``: two packs at once). Arguments after ``--`` go to every ``reproduce`` (e.g. ``-- --model
PATH --max-train-samples 64`` for a short check). Writes ``OUT/pack_wall.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``subprobe`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from subprobe.experiments.store import Store  # noqa: E402

VARIANTS = {
    "serial": ["--pack", "1"],
    "jobs2": ["--pack", "1", "--jobs", "2"],
    "pack": ["--pack", "{pack}"],
    "pack_jobs2": ["--pack", "{pack}", "--jobs", "2"],
}


def command(args, variant: str, store: Path) -> list[str]:
    """The ``reproduce`` command line of ``variant`` writing into ``store``."""
    flags = [f.format(pack=args.pack) for f in VARIANTS[variant]]
    return [sys.executable, "-m", "subprobe", "reproduce", args.what, "--tasks", *args.tasks, "--profile", args.profile,
            "--store", str(store), *flags, *args.extra]


def run_variant(args, variant: str, store: Path) -> dict:
    """One timed ``reproduce`` of ``variant``: wall seconds, load before and after, exit status, last output line."""
    cmd = command(args, variant, store)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return {"variant": variant, "store": str(store), "seconds": seconds, "returncode": done.returncode,
            "load_before": load_before, "load_after": os.getloadavg()[0], "last_line": lines[-1] if lines else "",
            "command": " ".join(cmd)}


def figures_by_key(store: Path) -> dict[str, dict[str, float]]:
    """key -> {"dev.accuracy": ..., "test.accuracy": ..., ...}: every numeric dev and test figure of each finished
    point of ``store``."""
    index = Store(store).load_index()
    by_dir = {str(Store(store).resolve(e.get("run_dir", ""))): key for key, e in index.items()}
    out: dict[str, dict[str, float]] = {}
    for metrics in Store(store).results():
        figures = {}
        for split in ("dev", "test"):
            for name, value in (metrics.get(split) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    figures[f"{split}.{name}"] = float(value)
        out[by_dir.get(metrics["run_dir"], metrics["run_dir"])] = figures
    return out


def compare(reference: dict, other: dict) -> dict:
    """Points both stores finished, and the largest absolute difference of each figure over them."""
    common = sorted(set(reference) & set(other))
    largest: dict[str, float] = {}
    for key in common:
        for name, value in reference[key].items():
            if name in other[key]:
                largest[name] = max(largest.get(name, 0.0), abs(value - other[key][name]))
    return {"points": len(other), "common": len(common), "largest_difference": largest}


def report(runs: list[dict], stores: dict[str, dict], reference: str) -> dict:
    """The best round of each variant, the ratios to ``pack``, and every store's results against ``reference``'s. A
    variant with failed points still counts (every variant runs the same points: one that fails fails in each), but
    the table says so beside it."""
    best: dict[str, dict] = {}
    for run in runs:
        if run["variant"] not in best or run["seconds"] < best[run["variant"]]["seconds"]:
            best[run["variant"]] = run
    ratios = {}
    for packed in ("pack", "pack_jobs2"):
        for other in ("serial", "jobs2"):
            if packed in best and other in best:
                ratios[f"{other}_over_{packed}"] = best[other]["seconds"] / best[packed]["seconds"]
    results = {name: compare(stores[reference], figures) for name, figures in stores.items()} if reference in stores \
        else {}
    return {"best": best, "ratios": ratios, "results_vs_" + reference: results, "runs": runs}


def table(res: dict, reference: str) -> str:
    lines = []
    for run in res["runs"]:
        status = "" if run["returncode"] == 0 else f"  FAILED ({run['returncode']}): {run['last_line'][:120]}"
        lines.append(f"{run['variant']:<11} {run['seconds']:8.1f} s  (load {run['load_before']:.2f} -> "
                     f"{run['load_after']:.2f}){status}")
    lines.append("wall-time ratios (best round of each): " + (", ".join(
        f"{k.replace('_over_', ' / ')} {v:.2f}x" for k, v in res["ratios"].items()) or "none")
                 + ("" if all(r["returncode"] == 0 for r in res["runs"]) else " (some points FAILED: see above)"))
    for name, cmp in res.get("results_vs_" + reference, {}).items():
        worst = ", ".join(f"{k} {v:.4f}" for k, v in sorted(cmp["largest_difference"].items()))
        lines.append(f"results of {name} vs {reference}: {cmp['common']} of {cmp['points']} points matched; largest "
                     f"differences: {worst or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="figure1", help="the reproduce target (default: figure1)")
    parser.add_argument("--tasks", nargs="+", default=["upos"])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--pack", type=int, default=8, help="K of the packed variants (default: 8)")
    parser.add_argument("--variants", default="serial,jobs2,pack", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every variant, the order rotating (default 1)")
    parser.add_argument("--out", default="bench-out/pack_wall", help="a folder for the stores (must not exist yet)")
    args = parser.parse_args(argv)
    args.extra = extra
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out} exists: give a new folder (each variant needs a fresh store to time a whole grid)")
    out.mkdir(parents=True)
    print(f"pack_wall: reproduce {args.what} --tasks {' '.join(args.tasks)} --profile {args.profile}, K = {args.pack}, "
          f"{args.rounds} round(s) of {', '.join(variants)}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
          flush=True)
    runs, stores = [], {}
    for r in range(args.rounds):
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            run = run_variant(args, variant, out / f"{variant}-{r}")
            print(f"  {variant}: {run['seconds']:.1f} s (load {run['load_before']:.2f} -> {run['load_after']:.2f})"
                  + ("" if run["returncode"] == 0 else f" FAILED: {run['last_line'][:200]}"), flush=True)
            runs.append(run)
            if variant not in stores:
                stores[variant] = figures_by_key(Path(run["store"]))
    reference = "serial" if "serial" in stores else next(iter(stores), "")
    res = report(runs, stores, reference)
    res["settings"] = {"what": args.what, "tasks": args.tasks, "profile": args.profile, "pack": args.pack,
                       "extra": extra, "cpus": os.cpu_count()}
    (out / "pack_wall.json").write_text(json.dumps(res, indent=2) + "\n")
    print(table(res, reference))
    print(f"written {out / 'pack_wall.json'}")
    return 0 if all(run["returncode"] == 0 for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
