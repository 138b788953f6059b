"""Continue an interrupted run (``subprobe probe --resume RUN_DIR``, ``probe(config, resume=True)``).

Resume semantics, for the command line and for sweep runners alike, by what ``--out`` holds:

* nothing (missing or empty directory): a new run starts there;
* a finished run (``metrics.json``): nothing is trained; its metrics are read back and returned;
* a checkpoint: training continues from it and ends exactly as an uninterrupted run would;
* a run without a checkpoint yet (``config.yaml`` only): it starts again from the beginning.

The configuration must be the one saved in ``config.yaml``, except the settings in
``RESUME_OVERRIDES`` (learning rates, to continue a diverged run more gently, and cosmetics); a
data file whose SHA-256 differs from the one recorded in ``env.json`` is refused.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import yaml

from subprobe.config import ProbeConfig, settings_where
from subprobe.data.sources import sha256_of
from subprobe.env import environment_stamp
from subprobe.errors import ConfigError
from subprobe.runs.directory import RunDir, config_differences, prepare_run_dir
from subprobe.training.checkpoint import load_checkpoint, remove_stale_temporaries

#: Settings that may change when a run is resumed (``on_resume="may-change"``, see :func:`subprobe.config.option`).
RESUME_OVERRIDES = settings_where(on_resume="may-change")
#: Settings that do not define the run (never compared): those that may change and those resuming sets itself.
_NOT_COMPARED = {*settings_where(on_resume="set-by-resume"), *RESUME_OVERRIDES}


def resume_config(run_dir: str | Path, **overrides) -> ProbeConfig:
    """The configuration that continues the run in ``run_dir``: the saved one with ``overrides`` (only
    ``RESUME_OVERRIDES``) applied; :func:`subprobe.api.resume` runs it (see the module doc)."""
    known = {f.name for f in dataclasses.fields(ProbeConfig)}
    unknown = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES if k in known)
        raise ConfigError(
            f"--resume continues {run_dir} with the configuration saved in its {RunDir.CONFIG}, so {flags} cannot "
            f"change; drop {flags} (only {allowed} may be given) or start a new run with another --out"
        )
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run directory; give the --out directory of an earlier run")
    if not run.has_config:
        raise ConfigError(
            f"--resume {run_dir}: no {RunDir.CONFIG} in it, so it is not a subprobe run directory; "
            "give the --out directory of an earlier run"
        )
    config = run.read_config()
    values = {k: v for k, v in overrides.items() if k in known}
    return dataclasses.replace(config, out=str(run.path), overwrite=False, dry_run=False, **values)


def _saved_config(out: Path) -> dict:
    run = RunDir(out)
    try:
        saved = run.read_settings()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{run.config_path}: cannot be read ({type(exc).__name__}); this run cannot be resumed, "
            "start a new one with another --out"
        ) from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{run.config_path}: not a run configuration; start a new run with another --out")
    return saved


def check_same_config(cfg: ProbeConfig, out: Path) -> dict:
    """Refuse to continue ``out`` with a different configuration; returns the saved one."""
    saved = _saved_config(out)
    diff = config_differences(saved, dataclasses.asdict(cfg), _NOT_COMPARED)
    if diff:
        shown = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")
        raise ConfigError(
            f"--out {out}: this run was started with a different configuration ({shown}); "
            f"continue it with its own settings (`subprobe probe --resume {out}`) or choose another --out"
        )
    return saved


def open_run_dir(cfg: ProbeConfig, out: Path, paths: dict, *, resume: bool, echo=print) -> dict | None:
    """Prepare ``out`` for a run; return the checkpoint to continue from (None: start afresh)."""
    run = RunDir(out)
    if not resume:
        prepare_run_dir(out, cfg.overwrite)
        return None
    if cfg.overwrite:
        raise ConfigError(
            "--resume and --overwrite contradict each other (--resume continues the run, --overwrite deletes it); "
            "drop one of them"
        )
    status = run.status()
    if status in ("missing", "empty"):
        prepare_run_dir(out, False)
        return None
    if status == "foreign":
        raise ConfigError(
            f"--out {out}: holds files but no subprobe run (no {RunDir.CONFIG}), so there is nothing to resume; "
            "choose another --out"
        )
    check_same_config(cfg, out)
    if status == "started":
        echo(f"{out}: no checkpoint was written yet; training again from the beginning", file=sys.stderr)
        prepare_run_dir(out, True)
        return None
    _check_data(out, paths)
    remove_stale_temporaries(out)
    return load_checkpoint(run.checkpoint_path)


def _check_data(out: Path, paths: dict) -> None:
    try:
        recorded = RunDir(out).read_env().get("data", {})
    except (OSError, ValueError):
        return  # env.json missing or damaged: nothing to compare with
    for split, path in paths.items():
        entry = recorded.get(split)
        if path is None or not entry:
            continue
        if sha256_of(path) != entry.get("sha256"):
            raise ConfigError(
                f"--{split} {path}: the file changed since this run started (its SHA-256 differs from env.json); "
                "restore the original file to resume, or start a new run with another --out"
            )


def record_resume(out: Path, cfg: ProbeConfig, vocabs: dict, payload: dict, echo=print) -> None:
    """Check the vocabularies, note the resumption in env.json and save changed learning rates."""
    run = RunDir(out)
    try:
        saved_vocab = run.read_vocab()
    except (OSError, ValueError):
        saved_vocab = None
    now = {k: list(v.labels) for k, v in vocabs.items()}
    if saved_vocab is not None and saved_vocab != now:
        raise ConfigError(
            f"{run.vocab_path}: the label vocabulary of the training data changed since this run started; "
            "resume with the original data or start a new run with another --out"
        )
    saved = _saved_config(out)
    changed = {k: [saved.get(k), v] for k, v in dataclasses.asdict(cfg).items() if k in RESUME_OVERRIDES and k in saved}
    changed = {k: v for k, v in changed.items() if v[0] != v[1] and k != "progress"}
    try:
        env = run.read_env()
    except (OSError, ValueError):
        env = {}
    stamp = environment_stamp(cfg.seed)
    before, after = env.get("packages", {}), stamp["packages"]
    moved = [f"{k} {before[k]} -> {after.get(k)}" for k in before if before[k] != after.get(k)]
    if moved:
        echo(
            f"note: versions changed since this run started ({', '.join(moved)}); "
            "the result may differ from an uninterrupted run",
            file=sys.stderr,
        )
    step = payload["progress"]["step"]
    env.setdefault("resumes", []).append(
        {"from_step": step, "argv": stamp["argv"], "changed": changed, "packages": after}
    )
    run.write_env(env)
    if changed:
        run.write_config(cfg)
    echo(f"{out}: resuming from the checkpoint at step {step}", file=sys.stderr)

