"""``subprobe export RUN_DIR --model-dir DIR``: a subnetwork as a plain Hugging Face model directory.

The run's encoder is loaded as the run loaded it (fp32; the seeded re-initialisation of a reset
run is repeated), :meth:`Subnetwork.bake` zeroes every weight the hard mask drops, and the model is
written with ``save_pretrained`` (config + safetensors) beside its tokenizer and a model card
(``README.md`` with metadata). ``AutoModel.from_pretrained(DIR)`` loads it without subprobe.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import yaml

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.probes.registry import DEFAULT_PROBE
from subprobe.tasks.registry import DEFAULT_TASK
from subprobe.version import __version__

#: Settings that do not change what a run computes (left out of the reproducing command).
_NOT_IN_COMMAND = ("out", "overwrite", "progress", "dry_run", "predict", "report_to", "checkpoint_every")


def export_run(
    run_dir: str | Path, out: str | Path, *, overwrite: bool = False, command: str | None = None,
    device: str = "cpu", echo=print,
) -> Path:
    """Export the subnetwork of the finished run ``run_dir`` to the directory ``out``; returns ``out``. ``device``:
    where the hard mask is baked into the weights (the files written are the same)."""
    from subprobe.atomic import atomic_dir, write_text
    from subprobe.device import resolve_device
    from subprobe.models.loading import quiet_transformers
    from subprobe.models.reset import apply_setting
    from subprobe.probes.registry import families, probe_family
    from subprobe.runs.rebuild import load_model, read_finished

    finished, out = read_finished(run_dir), Path(out)
    run, cfg, metrics = finished.run, finished.config, finished.metrics
    run_dir = run.path
    if not probe_family(cfg.probe).exports or not run.has_masks:
        exportable = " or ".join(f.name for f in families() if f.exports)
        raise ConfigError(
            f"{run_dir}: a --probe {cfg.probe} run has no mask to bake into the model; export a {exportable} run"
        )
    _check_out(out, run_dir, overwrite)
    where = resolve_device(device)
    subnetwork = run.read_masks()
    loaded = load_model(cfg.model)
    encoder, tokenizer = loaded.encoder, loaded.tokenizer
    apply_setting(encoder, cfg.setting, cfg.init, cfg.reset_seed)  # the run's weights, before its masks
    encoder.to(where)
    subnetwork.bake(encoder)
    encoder.to("cpu")
    command = command or f"subprobe export {shlex.quote(str(run_dir))} --model-dir {shlex.quote(str(out))}"
    card = model_card(cfg, metrics, subnetwork.density(), __version__, probe_command(cfg), command)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written into a temporary directory beside --model-dir, which then replaces it: never half an export
    with atomic_dir(out) as tmp, quiet_transformers():
        encoder.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        write_text(tmp / "README.md", card)
    echo(f"exported {cfg.model} with the hard mask of {run_dir} (density {subnetwork.density():.4f}) to {out}")
    return out


def _check_out(out: Path, run_dir: Path, overwrite: bool) -> None:
    """Refuse a --model-dir that export must not replace: the run directory or a folder holding it, a file, a
    non-empty directory without --overwrite, or (even with --overwrite) a directory that is not a model."""
    resolved, source = out.resolve(), run_dir.resolve()
    if resolved == source or source.is_relative_to(resolved):
        raise ConfigError(f"--model-dir {out}: holds the run directory {run_dir} itself; choose another --model-dir")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--model-dir {out}: exists and is not a directory; choose another --model-dir")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--model-dir {out}: directory is not empty; pass --overwrite to replace it, or choose "
                              "another")
        if not (out / "config.json").is_file():
            raise ConfigError(
                f"--model-dir {out}: not an exported model (no config.json), so --overwrite will not delete it; "
                "choose another --model-dir"
            )


def probe_command(cfg: ProbeConfig) -> str:
    """A ``subprobe probe`` command line that defines the same run (every non-default setting)."""
    default = ProbeConfig(task=DEFAULT_TASK, probe=DEFAULT_PROBE)  # what a bare `subprobe probe` is given
    parts = ["subprobe", "probe"]
    for f in dataclasses.fields(ProbeConfig):
        value = getattr(cfg, f.name)
        if f.name in _NOT_IN_COMMAND or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _hub_id(model: str) -> str | None:
    """The Hub id of ``model`` for the card's ``base_model`` (None for a local path)."""
    from subprobe.models.loading import DEFAULT_MODEL

    if model == DEFAULT_MODEL:
        return "sentence-transformers/all-MiniLM-L6-v2"
    if Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        return None
    return model


def model_card(cfg: ProbeConfig, metrics: dict, density: float, version: str, probe_cmd: str, export_cmd: str) -> str:
    """README.md of an exported subnetwork: YAML metadata, then what it is and how it was made."""
    base = _hub_id(cfg.model)
    scores = {split: metrics.get(split) for split in ("dev", "test") if metrics.get(split)}
    meta: dict = {"library_name": "transformers"}
    if base:
        meta["base_model"] = base
    meta["tags"] = ["subprobe", "subnetwork-probing", "pruned", cfg.task]
    meta["subprobe"] = {
        "version": version,
        "base_model": cfg.model,
        "task": cfg.task,
        "setting": cfg.setting,
        "granularity": cfg.granularity,
        "layout": cfg.layout,
        "lambda_max": cfg.lambda_max,
        "seed": cfg.seed,
        "density": density,
        "mask_params": metrics.get("mask_params"),
        "primary_metric": metrics.get("primary_metric"),
        **{split: values for split, values in scores.items()},
        "command": probe_cmd,
        "export_command": export_cmd,
    }
    key = metrics.get("primary_metric", "")
    rows = "\n".join(
        f"| {split} | {values[key]:.4f} |" for split, values in scores.items() if key in values
    )
    return (
        "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"
        f"# Subnetwork of {cfg.model} for {cfg.task}\n\n"
        f"The weights of `{cfg.model}` ({cfg.setting}) with the hard mask found by subprobe {version} "
        f"(subnetwork probing, Cao, Sanh & Rush 2021) baked in: every masked weight the mask drops is exactly "
        f"zero. Masked matrices: Q, K, V, attention output, FFN-in and FFN-out of every layer; biases, "
        f"LayerNorms and embeddings are unchanged. Granularity `{cfg.granularity}` ({cfg.layout} layout), "
        f"density {density:.4f} (fraction of masked weights kept).\n\n"
        "The task head is not part of this model; the task scores below are the probe's (hard mask, "
        f"fraction in [0, 1]):\n\n| split | {key} |\n|---|---|\n{rows}\n\n"
        "```python\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        'model = AutoModel.from_pretrained("path/to/this/directory")\n'
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")\n```\n\n'
        "The model was saved without a pooler (the probe reads token states); `AutoModel` adds a freshly "
        "initialised one unless the family takes `add_pooling_layer=False`.\n"
        + ("Trained in bf16: the probe's scores were computed with bf16 weights, this model is fp32.\n"
           if cfg.precision == "bf16" else "")
        + f"\nMade with:\n\n```\n{probe_cmd}\n{export_cmd}\n```\n"
    )

