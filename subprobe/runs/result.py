"""The outcome of a run: :class:`Result`, its one-paragraph summary and the one builder of ``metrics.json``.

``metrics.json`` is made by :func:`build_metrics` only (the API writes it; the report tests build their
synthetic runs with it), so a key renamed here is renamed for every reader at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError, DamagedFileError
from subprobe.masking.subnetwork import Subnetwork
from subprobe.runs.directory import RunDir

Scores = dict[str, float]


@dataclass(frozen=True)
class MaskFacts:
    """What a subnetwork's hard mask keeps (``None`` fields are left out of ``metrics.json``)."""

    mask_params: int | None
    density: float | None = None
    #: the expected fraction of masked weights kept by a mask sample (weight-weighted expected L0): what training
    #: sees, beside the hard mask's ``density``
    expected_density: float | None = None
    masked_weights: int | None = None
    density_by_layer: dict | None = None
    density_by_role: dict | None = None

    @classmethod
    def of(cls, subnetwork: Subnetwork) -> MaskFacts:
        return cls(
            mask_params=subnetwork.num_mask_params,
            density=subnetwork.density(),
            expected_density=subnetwork.expected_density(),
            masked_weights=subnetwork.num_masked_weights,
            density_by_layer=subnetwork.density_by("layer"),
            density_by_role=subnetwork.density_by("role"),
        )


@dataclass(frozen=True)
class TrainFacts:
    """How training went (``metrics.json``'s ``train``)."""

    steps: int
    total_steps: int
    stopped_early: bool
    seconds: float
    words_per_second: float


def build_metrics(
    *,
    task: str,
    probe: str,
    setting: str,
    model: str,
    primary_metric: str,
    task_facts: dict[str, Any] | None = None,
    scores: dict[str, Scores | None] | None = None,
    soft_scores: dict[str, Scores] | None = None,
    intervals: dict[str, dict[str, list[float]]] | None = None,
    interval_method: dict[str, Any] | None = None,
    masks: MaskFacts | None = None,
    mask_source: dict[str, Any] | None = None,
    coverage: dict | None = None,
    granularity_fallbacks: list[dict] | None = None,
    num_attention_heads: int | None = None,
    reset_params: int | None = None,
    probe_params: int | None = None,
    bits: dict[str, float] | None = None,
    bits_note: str | None = None,
    head_params: int | None = None,
    sentences: dict[str, int] | None = None,
    dropped_long: dict[str, int] | None = None,
    train: TrainFacts | None = None,
    codelength: dict[str, Any] | None = None,
    wall_seconds: float | None = None,
) -> dict:
    """The content of ``metrics.json``, in its key order; pieces given as None are left out.

    ``scores``: split -> scores (hard mask for subnetworks; None for a split that was not scored);
    ``soft_scores``: split -> scores with the soft (expected) mask, written as ``<split>_soft``.
    ``intervals``: ``dev``, ``dev_soft``, ... -> metric -> ``[lo, hi]``, each written as ``<key>_ci`` after its
    scores; ``interval_method``: how (``ci``; :func:`subprobe.metrics.bootstrap.method`).
    ``mask_source``: subnetwork runs, where the mask comes from (written after the densities): ``mask_source``
    (learnt | random-like | complement), ``mask_source_run`` (the control's source run) and ``target_density``.
    """
    metrics: dict[str, Any] = {
        "task": task,
        "probe": probe,
        "setting": setting,
        "model": model,
        "primary_metric": primary_metric,
    }
    metrics.update(task_facts or {})  # e.g. dep: how heads were decoded for every score below
    intervals = intervals or {}
    for split, values in (scores or {}).items():
        metrics[split] = values
        if split in intervals:
            metrics[f"{split}_ci"] = intervals[split]
        if soft_scores and split in soft_scores:
            metrics[f"{split}_soft"] = soft_scores[split]
            if f"{split}_soft" in intervals:
                metrics[f"{split}_soft_ci"] = intervals[f"{split}_soft"]
    if intervals and interval_method is not None:
        metrics["ci"] = interval_method
    if masks is not None:
        for key in ("mask_params", "masked_weights", "density", "expected_density", "density_by_layer",
                    "density_by_role"):
            if getattr(masks, key) is not None:
                metrics[key] = getattr(masks, key)
    metrics.update({k: v for k, v in (mask_source or {}).items() if v is not None})
    optional = {
        "coverage": coverage,  # masked weights / block projection weights, missing roles
        "granularity_fallbacks": granularity_fallbacks,  # matrices whose block is not the one asked for
        "num_attention_heads": num_attention_heads,  # for the report's per-head localisation
        "reset_params": reset_params,
        "probe_params": probe_params,
        "bits": bits,
        "bits_note": bits_note,
        "head_params": head_params,
        "sentences": sentences,
        "dropped_long": dropped_long,
    }
    metrics.update({k: v for k, v in optional.items() if v is not None})
    if train is not None:
        metrics["train"] = {
            "steps": train.steps,
            "total_steps": train.total_steps,
            "stopped_early": train.stopped_early,
            "seconds": round(train.seconds, 1),
            "words_per_second": round(train.words_per_second, 1),
        }
    if codelength is not None:  # an MDL block run: the next block's online code (subprobe.metrics.online_code)
        metrics["codelength"] = codelength
    if wall_seconds is not None:
        metrics["wall_seconds"] = round(wall_seconds, 1)
    return metrics


@dataclass
class Result:
    """Outcome of one probing run."""

    config: ProbeConfig
    metrics: dict
    run_dir: Path | None
    subnetwork: Subnetwork | None = None  # subnetwork probes: the trained mask
    history: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines describing the finished run."""
        return summary(self.metrics, self.run_dir)

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        """The Result of a finished run directory (nothing is trained)."""
        run = RunDir(run_dir).require_finished()
        return cls(run.read_config(), read_metrics(run), run.path, *_masks_and_log(run))


def read_metrics(run: RunDir) -> dict:
    """``metrics.json`` of ``run`` (ConfigError when it cannot be read)."""
    try:
        return run.read_metrics()
    except DamagedFileError:  # says which file and what to do
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{run.metrics_path}: cannot be read ({type(exc).__name__}); move the run directory away and run it again"
        ) from None


def _masks_and_log(run: RunDir) -> tuple[Subnetwork | None, list[dict]]:
    return (run.read_masks() if run.has_masks else None), run.read_log()


def finished(cfg: ProbeConfig, run: RunDir) -> Result:
    """The Result of the finished run ``run`` made with ``cfg`` (already checked to be its configuration)."""
    return Result(cfg, read_metrics(run), run.path, *_masks_and_log(run))


def summary(metrics: dict, run_dir: Path | None) -> str:
    """A few lines describing a finished run."""
    key = metrics.get("primary_metric")
    lines = [f"subprobe: {metrics.get('task')} / {metrics.get('probe')} / {metrics.get('setting')} on "
             f"{metrics.get('model')}"]
    for split in ("dev", "test"):
        if isinstance(metrics.get(split), dict) and key in metrics[split]:
            text = f"  {split:<4} {key} {metrics[split][key]:.4f}"
            if metrics.get(f"{split}_soft"):
                soft = metrics[f"{split}_soft"][key]
                text = f"  {split:<4} {key} hard mask {metrics[split][key]:.4f} | soft mask {soft:.4f}"
            lines.append(text)
    if "density" in metrics and "mask_params" in metrics:
        lines.append(
            f"  mask params {metrics['mask_params']:,} | density {metrics['density']:.4f} "
            "(hard mask, fraction of masked weights kept)"
        )
    bits = metrics.get("bits")  # metrics.json of older versions may lack the keys below
    if isinstance(bits, dict) and {"lower", "upper"} <= set(bits):
        note = f" ({metrics['bits_note']})" if metrics.get("bits_note") else ""
        lines.append(f"  complexity {bits['lower']:,.0f} .. {bits['upper']:,.0f} bits{note}")
    train = metrics.get("train")
    if isinstance(train, dict) and {"steps", "total_steps", "seconds", "words_per_second"} <= set(train):
        lines.append(
            f"  trained {train['steps']}/{train['total_steps']} steps in {train['seconds']:.0f}s "
            f"({train['words_per_second']:.0f} words/s){' (early stop)' if train.get('stopped_early') else ''}"
        )
    if run_dir is not None:
        lines.append(f"  run directory {run_dir}")
    return "\n".join(lines)


def show_run(run_dir: str | Path) -> str:
    """``subprobe show RUN_DIR``: a finished run's summary (:func:`summary`), or where an unfinished one stands
    (its last dev check, the command that continues it), with the settings that differ from the defaults.
    Nothing is loaded but the run's own small files (no model, no masks)."""
    import dataclasses

    run = RunDir(run_dir)
    state = run.status()
    if state in ("missing", "empty", "foreign"):
        why = {"missing": "no such run directory", "empty": "an empty directory",
               "foreign": "holds files but no subprobe run (no config.yaml)"}[state]
        raise ConfigError(f"{run.path}: {why}; give the --out directory of a run")
    config = run.read_config()
    defaults = {f.name: f.default for f in dataclasses.fields(ProbeConfig)}
    changed = [f"{k}={v}" for k, v in vars(config).items() if v != defaults[k] and k != "out"]
    settings = "  settings " + (", ".join(changed) if changed else "all defaults")
    if state == "finished":
        return f"{summary(read_metrics(run), run.path)}\n{settings}"
    log = run.read_log()
    last = log[-1] if log else {}
    where = (f"last dev check at step {last.get('step')}"
             + (f" (dev {_dev_line(last)})" if _dev_line(last) else "") if last else "no dev check yet")
    kind = "interrupted after a checkpoint" if state == "checkpoint" else "started, no checkpoint yet"
    lines = [f"subprobe: {config.task} / {config.probe} / {config.setting} on {config.model}: unfinished ({kind}; "
             f"{where})", settings, f"  run directory {run.path}",
             f"  continue with: subprobe probe --resume {run.path}"]
    return "\n".join(lines)


def _dev_line(record: dict) -> str:
    """``accuracy 0.9012`` from a log record's dev metrics ("" when it has none)."""
    dev = {k[len("dev/"):]: v for k, v in record.items() if k.startswith("dev/") and isinstance(v, int | float)}
    if not dev and isinstance(record.get("dev"), dict):
        dev = {k: v for k, v in record["dev"].items() if isinstance(v, int | float)}
    return ", ".join(f"{k} {v:.4f}" for k, v in list(dev.items())[:2])
