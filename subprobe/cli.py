"""Command line: ``subprobe probe | mdl | sweep | reproduce | report | data check | data get | ...`` (flags
generated from the config dataclasses)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from subprobe.errors import SubprobeError, WriteError

#: Order of the flag groups in ``subprobe probe --help`` (a field's ``group`` metadata; others go last).
GROUP_ORDER = ("task and probe", "data", "model", "masks", "training", "output")

#: ``--data-dir`` of every command.
DATA_DIR_HELP = (
    "dataset root holding ud-english-ewt/ or UD_English-EWT/ (either EWT naming) and conll2003/ "
    "(default: $SUBPROBE_DATA; with neither, the UD tasks read the embedded UD English-EWT r2.1)"
)


class TaskNames(tuple):
    """The task registry's names as argparse choices: a parametrised task's instances (``feats:Number`` for
    ``feats:KEY``) are choices too."""

    def __new__(cls):
        from subprobe.tasks.registry import TASK_NAMES

        return super().__new__(cls, TASK_NAMES)

    def __contains__(self, item: object) -> bool:
        from subprobe.tasks.registry import entry_of

        return isinstance(item, str) and entry_of(item) is not None


class ShownChoices(tuple):
    """The choices of a ``Literal`` field, listed in ``--help``. Membership is checked by the
    configuration (``check_types``), which reports one ``subprobe: error:`` line instead of argparse's
    usage dump, so argparse itself accepts any value here."""

    def __contains__(self, item: object) -> bool:
        return True


def _show_default(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _registry_choices() -> dict[str, tuple[str, ...]]:
    """Fields whose values are the names of a registry (checked by it): field -> the names."""
    from subprobe.probes.registry import PROBE_NAMES
    from subprobe.tasks.registry import TASK_NAMES

    return {"task": TASK_NAMES, "probe": PROBE_NAMES}


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (),
                             overrides: bool = False) -> None:
    """One flag per field, in argument groups by the field's ``group``: choices from ``Literal`` types and the
    registries, the default in every help line (unless the help text already says what the default is).
    ``overrides``: the flags of sweep/reproduce that set a field for every point; they default to absent (the grid
    decides)."""
    hints = typing.get_type_hints(cls)
    named = _registry_choices()
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    names = [g for g in GROUP_ORDER if any(f.metadata.get("group") == g for f in fields)]
    names += sorted({f.metadata.get("group", "other") for f in fields} - set(names))
    title = "{} options for every point (default: the grid's value)" if overrides else "{} options"
    groups = {name: parser.add_argument_group(title.format(name)) for name in names}
    for f in fields:
        group = groups[f.metadata.get("group", "other")]
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = f.metadata.get("help", "")
        if "(default" not in help_text and not overrides:
            help_text += f" (default: {_show_default(f.default)})"
        help_text = help_text.replace("%", "%%")
        default = argparse.SUPPRESS if overrides else f.default
        if kind is bool:
            action = group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            action.help = help_text  # set afterwards: Python < 3.13 would append its own "(default: ...)"
        elif typing.get_origin(kind) is typing.Literal or f.name in named:
            choices = ShownChoices(named.get(f.name) or typing.get_args(kind))
            group.add_argument(flag, type=str, default=default, choices=choices, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=default, metavar=f.name.upper(), help=help_text)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line ``subprobe: error: ...`` (no usage dump), exit 2."""

    def error(self, message: str):
        self.exit(2, f"subprobe: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from subprobe import __version__
    from subprobe.config import ProbeConfig

    parser = _Parser(
        prog="subprobe", description="Subnetwork probing (Cao, Sanh & Rush 2021) and its baselines."
    )
    parser.add_argument("--version", action="version", version=f"subprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    probe = sub.add_parser("probe", help="train one probe and write its run directory")
    _add_dataclass_arguments(probe, ProbeConfig)
    _add_runtime_arguments(probe)
    probe.add_argument(
        "--config", metavar="YAML", help="read settings from a YAML file; flags override it (default: none)"
    )
    probe.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its checkpoint, with the settings saved in RUN_DIR/config.yaml "
        "(a finished run is only reported; default: none, a new run)",
    )

    mdl = sub.add_parser(
        "mdl", help="MDL probing (Voita & Titov 2020): the online codelength of the task's labels under a probe",
        description="Train the probe on growing prefixes of the training data (0.1% .. 100%), code each next block "
        "with the probe trained on what came before, and write OUT/mdl.json (online and uniform codelengths, "
        "compression, per-block codelengths). Each block is an ordinary run in OUT/blocks/; running the command "
        "again continues where it stopped.",
    )
    _add_dataclass_arguments(mdl, ProbeConfig, skip=("mdl_block_end", "dry_run"))
    _add_runtime_arguments(mdl)
    mdl.add_argument(
        "--config", metavar="YAML", help="read settings from a YAML file; flags override it (default: none)"
    )
    mdl.add_argument(
        "--min-steps", type=int, default=50, metavar="N",
        help="the fewest optimiser steps of a block's probe: small prefixes train more epochs (default: 50)",
    )
    from subprobe.experiments.grids import builtin_grids, load_grid

    sweep = sub.add_parser("sweep", help="run a grid of probes (YAML: axes and profiles) into a resumable store")
    sweep.add_argument("grid", help=f"grid YAML file, or a built-in grid name ({', '.join(builtin_grids())})")
    _add_grid_arguments(sweep)

    reproduce = sub.add_parser("reproduce", help="run one of the paper's experiments (or another built-in grid) and "
                               "write its tables or figures")
    reproduce.add_argument(
        "what", choices=builtin_grids(), metavar="EXPERIMENT",
        help="which experiment: " + "; ".join(f"{name}: {load_grid(name).description}" for name in builtin_grids()),
    )
    _add_grid_arguments(reproduce)
    reproduce.add_argument(
        "--tasks", nargs="+", default=None, choices=TaskNames(), metavar="TASK",
        help="tasks to run, among the grid's: " + ", ".join(TaskNames()) + " (default: all of the grid's)",
    )

    report = sub.add_parser(
        "report", help="write a static HTML report (tables, Pareto curves, localisation, runs) and report.md"
    )
    report.add_argument("runs_dir", metavar="RUNS_DIR", help="results store (with index.json) or a directory of runs")
    report.add_argument(
        "--out", required=True, metavar="DIR", help="directory for index.html, report.md and figures (required)"
    )
    report.add_argument("--split", default="dev", choices=["dev", "test"], help="split of the numbers (default: dev)")
    report.add_argument(
        "--num-heads", type=int, default=None, metavar="N",
        help="attention heads of the model (default: from metrics.json or the model's config)",
    )

    predict = sub.add_parser("predict", help="tag a file with a trained probe (scores too when it has gold labels)")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="directory of a finished run")
    predict.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="CoNLL-U (upos, dep), CoNLL-2003 columns (ner) or plain text (required)",
    )
    predict.add_argument("--out", required=True, metavar="FILE", help="file to write the predictions to (required)")
    predict.add_argument(
        "--input-format",
        default="auto",
        choices=["auto", "conllu", "conll2003", "text"],
        help="format of --input; text: one sentence per line, words separated by spaces (default: auto, "
        "detected from the first line)",
    )
    _add_runtime_arguments(predict)

    export = sub.add_parser("export", help="write a subnetwork as a plain Hugging Face model (dropped weights zero)")
    export.add_argument("run_dir", metavar="RUN_DIR", help="directory of a finished subnetwork run")
    export.add_argument(
        "--out", required=True, metavar="DIR", help="directory for config, weights, tokenizer, card (required)"
    )
    export.add_argument(
        "--overwrite", action="store_true", default=False, help="replace a non-empty --out (default: false)"
    )
    _add_runtime_arguments(export)

    compare = sub.add_parser(
        "compare", help="agreement and IoU of two subnetwork runs' kept weights (overall, per layer, per role)"
    )
    compare.add_argument("run_a", metavar="RUN_A", help="directory of a finished subnetwork run")
    compare.add_argument("run_b", metavar="RUN_B", help="directory of another subnetwork run of the same model")
    compare.add_argument(
        "--json", action="store_true", default=False, help="print the numbers as JSON (default: a text table)"
    )

    data = sub.add_parser("data", help="find, verify and download datasets")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="the files each task reads (a data root, else the embedded UD English-EWT r2.1), with counts"
    )
    check.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    get = actions.add_parser(
        "get", help="download a UD treebank release from its public repository (conll2003: how to get it)"
    )
    get.add_argument(
        "name", metavar="NAME",
        help="ud-ewt (UD English-EWT), a UD repository name such as UD_French-GSD, or conll2003",
    )
    get.add_argument(
        "--release", default=None, metavar="X.Y",
        help="UD release, e.g. 2.16 or 2.1 (the paper's; the embedded one) (default: 2.16)",
    )
    get.add_argument(
        "--dir", default=None, metavar="DIR",
        help="data root to download into: DIR/<repository>/ (default: the user data directory's ud-<release>/)",
    )
    get.add_argument(
        "--prefix", default=None, metavar="PREFIX",
        help="file-name prefix (fr_gsd for fr_gsd-ud-train.conllu) for a language subprobe has no code for",
    )
    get.add_argument("--no-progress", action="store_true", default=False, help="no progress bar (default: shown)")
    return parser



def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="budget profile defined by the grid (default: quick)")
    parser.add_argument("--model", default=None, help="model id or path (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat every point with seeds 0..N-1 (default: 1)")
    parser.add_argument("--out", default="results", help="store directory (default: results)")
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    parser.add_argument(
        "--device", default=None, metavar="DEVICE",
        help="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N | mps, for every run (default: auto)",
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", default=None,
        help="recompute block activations in the backward pass (large models)",
    )
    _add_runtime_arguments(parser)
    _add_executor_arguments(parser)
    from subprobe.config import ProbeConfig

    _add_dataclass_arguments(parser, ProbeConfig, skip=_grid_own_fields(), overrides=True)


def _grid_own_fields() -> tuple[str, ...]:
    """ProbeConfig fields sweep/reproduce do not offer as per-point overrides (``per_point=False``): they have
    their own flag above, or the sweep sets them itself (each point's run directory, no progress bar, never
    overwrite or dry-run)."""
    from subprobe.config import settings_where

    return settings_where(per_point=False)


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    from subprobe.config import DEFAULT_PACK

    group = parser.add_argument_group("where the points run (none of this changes a point's key or result)")
    group.add_argument(
        "--executor", default="local", choices=["local", "ray", "slurm"],
        help="local: this machine (a process pool with --jobs N); ray: one Ray task per point "
        "(pip install 'subprobe[ray]'); slurm: a SLURM job array via submitit (pip install 'subprobe[slurm]') "
        "(default: local)",
    )
    group.add_argument(
        "--jobs", type=int, default=None, metavar="N",
        help="points at once (local: worker processes, each with CPUs/N torch threads unless --threads; ray: "
        "tasks in flight; slurm: the array's parallelism) (default: local 1, ray and slurm: no cap)",
    )
    group.add_argument(
        "--pack", type=int, default=None, metavar="K",
        help="train up to K compatible points in one process, sharing the frozen encoder (same model, task, setting, "
        "data and batch budget; each keeps its own masks, head, noise, schedules and run directory); 1: every point "
        f"alone (default: {DEFAULT_PACK} points of subnetwork probes, every compatible MLP-1 or linear point on cached "
        "features)",
    )
    group.add_argument(
        "--ray-address", default=None, metavar="ADDRESS",
        help="join this Ray cluster, e.g. auto or ray://head:10001 (default: start a local Ray instance)",
    )
    group.add_argument("--slurm-partition", default=None, metavar="NAME", help="SLURM partition (default: the "
                       "cluster's)")
    group.add_argument("--slurm-time", default=None, metavar="TIME",
                       help="time limit per point: minutes, H:MM:SS or D-HH:MM:SS (default: the cluster's)")
    group.add_argument("--slurm-gpus-per-task", type=int, default=None, metavar="N", help="GPUs per point "
                       "(default: none)")
    group.add_argument("--slurm-cpus-per-task", type=int, default=None, metavar="N",
                       help="CPUs per point, also its torch threads (default: --threads, else the cluster's)")
    group.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                       help="points running at once (default: --jobs, else no cap)")


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice; on a shared or busy machine, 1 per process is steadier)",
    )


def _set_threads(threads: int | None) -> None:
    from subprobe.errors import ConfigError

    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _stop_on_sigterm()
    try:
        _set_threads(getattr(args, "threads", None))
        if args.command == "probe":
            return _probe(args, argv if argv is not None else sys.argv[1:])
        if args.command == "data":
            return _data(args)
        if args.command == "mdl":
            return _mdl(args, argv if argv is not None else sys.argv[1:])
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "report":
            return _report(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "export":
            return _export(args, argv if argv is not None else sys.argv[1:])
        if args.command == "compare":
            return _compare(args)
    except SubprobeError as exc:
        print(f"subprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # (code that catches the exception and raises its own KeyboardInterrupt, such as Ray's, loses the type)
        terminated = isinstance(exc, Terminated) or Terminated.received
        again = {"sweep": "; run the same command again to continue (finished points are skipped, interrupted ones "
                          "continue from their checkpoints)",
                 "reproduce": "; run the same command again to continue (finished points are skipped)"}
        print(f"subprobe: {'stopped by SIGTERM' if terminated else 'interrupted'}{again.get(args.command, '')}",
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        _restore_sigterm(previous)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's time limit, ``kill``, a container stop), raised where the program is: it stops as
    Ctrl-C does -- the last checkpoint is kept, the command to continue is printed -- with exit status 143."""

    #: set when the handler ran (main() reports SIGTERM even if some library re-raised a plain KeyboardInterrupt)
    received = False


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` for the duration of :func:`main` (main thread only); returns the
    previous handler (None when nothing was installed)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    Terminated.received = False

    def stop(signum, frame):
        Terminated.received = True
        raise Terminated()

    return signal.signal(signal.SIGTERM, stop)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _probe(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.api import probe
    from subprobe.config import ProbeConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)}
    given = _given_flags(argv)
    if args.resume is not None:
        return _resume(args, given, values)
    config = _config_of(args, values, given)
    try:
        probe(config, echo=_echo)
    except WriteError as exc:
        raise WriteError(exc.path, exc.reason, exc.kept, _continue_after_write_error(config)) from None
    return 0


def _config_of(args: argparse.Namespace, values: dict, given: set[str]):
    """The ProbeConfig of a command's flags, over ``--config`` YAML when given (flags given explicitly win)."""
    from subprobe.config import ProbeConfig
    from subprobe.resolve import config_from_yaml

    if args.config:
        base = dataclasses.asdict(config_from_yaml(args.config))
        values = {k: (values[k] if k in given else base[k]) for k in values}
    _check_flag_combinations(values, given)
    return ProbeConfig(**values)


def _mdl(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.complexity.mdl import mdl
    from subprobe.config import ProbeConfig

    values = {f.name: getattr(args, f.name, f.default) for f in dataclasses.fields(ProbeConfig)}
    mdl(_config_of(args, values, _given_flags(argv, "mdl")), min_steps=args.min_steps, echo=_echo)
    return 0


def _continue_after_write_error(config) -> str:
    """What to do when a run could not write a file: free space, then resume (or start again: nothing kept)."""
    from subprobe.runs import RunDir, default_out

    out = RunDir(config.out) if config.out else RunDir(default_out(config))
    if out.has_config:
        return f"free disk space or fix permissions, then continue with `subprobe probe --resume {out.path}`"
    return "free disk space or fix permissions, then run the same command again"


def _check_flag_combinations(values: dict, given: set[str]) -> None:
    """Refuse flags given explicitly that contradict each other or cannot apply (the settings only some tasks or
    probe families read: their ``settings``), for the run's task and probe (defaults included)."""
    from subprobe.config import ProbeConfig
    from subprobe.errors import ConfigError
    from subprobe.probes.registry import scoped_settings as probe_scopes
    from subprobe.resolve import resolve
    from subprobe.tasks.registry import entry_of
    from subprobe.tasks.registry import scoped_settings as task_scopes

    cfg = resolve(ProbeConfig(**values))
    for name, tasks in task_scopes().items():
        if name in given and entry_of(cfg.task) not in tasks:
            raise ConfigError(
                f"--{name.replace('_', '-')} only applies to --task {' or '.join(tasks)}, not --task "
                f"{cfg.task}; drop it or use --task {tasks[0]}"
            )
    for name, probes in probe_scopes().items():
        if name in given and cfg.probe not in probes:
            raise ConfigError(
                f"--{name.replace('_', '-')} only applies to --probe {' or '.join(probes)}, not --probe "
                f"{cfg.probe}; drop it or use --probe {probes[0]}"
            )
    if values.get("dry_run") and "overwrite" in given and values.get("overwrite"):
        raise ConfigError("--dry-run writes no run directory, so --overwrite contradicts it; drop one of them")


def _resume(args: argparse.Namespace, given: set[str], values: dict) -> int:
    from subprobe.api import resume
    from subprobe.errors import ConfigError

    if values.get("overwrite"):
        raise ConfigError(
            f"--resume and --overwrite contradict each other (--resume continues {args.resume}, --overwrite would "
            "delete it); drop one of them"
        )
    if args.config:
        raise ConfigError(
            f"--resume takes the settings from {args.resume}/config.yaml, so --config contradicts it; drop --config"
        )
    if values.get("dry_run"):
        raise ConfigError("--resume trains and --dry-run does not; drop one of them")
    overrides = {k: values[k] for k in given if k in values and (values[k] or k not in ("overwrite", "dry_run"))}
    try:
        resume(args.resume, echo=_echo, **overrides)
    except WriteError as exc:
        fix = f"free disk space or fix permissions, then continue with `subprobe probe --resume {args.resume}`"
        raise WriteError(exc.path, exc.reason, exc.kept, fix) from None
    return 0


def _given_flags(argv: list[str], command: str = "probe") -> set[str]:
    """Names of the configuration flags given explicitly in ``argv`` (abbreviations and --no-X included)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices[command]._actions:
        action.default = argparse.SUPPRESS
    try:
        given = vars(parser.parse_args(argv))
    except SystemExit:  # cannot happen: argv has been parsed once already
        return set()
    return set(given) - {"command", "resume", "config", "min_steps"}


def _sweep(args: argparse.Namespace) -> int:
    from subprobe.experiments.grids import load_grid
    from subprobe.experiments.sweep import check_overrides, default_store, run_points, seeds_axis

    grid = load_grid(args.grid)
    if args.grid == "mdl":
        from subprobe.errors import ConfigError

        raise ConfigError("grid mdl: its points are MDL codes, run as block runs by `subprobe reproduce mdl`; use that")
    profile = args.profile if args.profile in grid.profiles else None
    if args.profile != "quick" and profile is None:
        from subprobe.errors import ConfigError

        defined = ", ".join(map(str, grid.profiles)) or "none (this grid defines no profiles: drop --profile)"
        raise ConfigError(f"--profile {args.profile!r} is not defined by grid {grid.name}; use {defined}")
    points = seeds_axis(grid.points(profile), args.seeds)
    base = {k: v for k, v in (("model", args.model), ("data_dir", args.data_dir)) if v}
    base.update(_hardware(args))
    overrides = _overrides(args)
    check_overrides(overrides, grid, args.seeds)
    executor = _executor(args)
    counts = run_points(points, default_store(args.out), base, echo=_echo, overrides=overrides, executor=executor,
                        pack=_pack(args))
    print(f"sweep {grid.name}: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _reproduce(args: argparse.Namespace) -> int:
    from subprobe.experiments.reproduce import reproduce

    result = reproduce(
        args.what, profile=args.profile, model=args.model, tasks=args.tasks, seeds=args.seeds, out=args.out,
        data_dir=args.data_dir, echo=_echo, overrides=_overrides(args), executor=_executor(args), pack=_pack(args),
        **_hardware(args),
    )
    return 1 if result["counts"]["failed"] else 0


def _overrides(args: argparse.Namespace) -> dict:
    """The probe flags given to sweep/reproduce: configuration values for every point (part of each key)."""
    from subprobe.config import ProbeConfig

    own = _grid_own_fields()
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig) if f.name not in own
            and hasattr(args, f.name)}


def _executor(args: argparse.Namespace):
    """The executor of ``--executor`` / ``--jobs`` / ``--threads`` / ``--ray-address`` / ``--slurm-*``."""
    from subprobe.experiments.executors import make_executor

    slurm = {name: getattr(args, f"slurm_{name}") for name in
             ("partition", "time", "gpus_per_task", "cpus_per_task", "array_parallelism")}
    return make_executor(args.executor, jobs=args.jobs, threads=args.threads, store=args.out, device=args.device,
                         ray_address=args.ray_address, slurm=slurm)


def _pack(args: argparse.Namespace) -> int | None:
    """``--pack K`` (checked)."""
    from subprobe.errors import ConfigError

    if args.pack is not None and args.pack < 1:
        raise ConfigError(f"--pack must be at least 1, got {args.pack}; 1 trains every point alone")
    return args.pack


def _hardware(args: argparse.Namespace) -> dict:
    """``--device`` / ``--gradient-checkpointing`` of sweep and reproduce, as ProbeConfig values (checked)."""
    from subprobe.device import check_device_spec

    values = {}
    if args.device is not None:
        check_device_spec(args.device)
        values["device"] = args.device
    if args.gradient_checkpointing:
        values["gradient_checkpointing"] = True
    return values


def _report(args: argparse.Namespace) -> int:
    from subprobe.report.html import write_report

    write_report(args.runs_dir, args.out, split=args.split, num_heads=args.num_heads, echo=_echo)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from subprobe.runs.loaded import load_run
    from subprobe.runs.predict import format_scores, predict_file

    run = load_run(args.run_dir)
    scores = predict_file(run, args.input, args.out, input_format=args.input_format, echo=_echo)
    if scores is not None:
        print(format_scores(scores, run.task.primary_metric))
    return 0


def _export(args: argparse.Namespace, argv: list[str]) -> int:
    import shlex

    from subprobe.runs.export import export_run

    command = " ".join(shlex.quote(str(a)) for a in ["subprobe", *argv])
    export_run(args.run_dir, args.out, overwrite=args.overwrite, command=command, echo=_echo)
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from subprobe.runs import RunDir

    subnetworks = []
    for path in (args.run_a, args.run_b):
        run = RunDir(path).require(RunDir.MASKS, hint="compare needs two subnetwork-probe runs",
                                   missing_dir="give the --out directories of two subnetwork runs")
        subnetworks.append(run.read_masks())
    try:
        result = subnetworks[0].compare(subnetworks[1])
    except SubprobeError as exc:
        raise SubprobeError(f"compare {args.run_a} {args.run_b}: {exc}; compare two subnetwork runs of the same model "
                            "(granularity and layout may differ)") from None
    if args.json:
        print(json.dumps({"run_a": str(args.run_a), "run_b": str(args.run_b), **result.as_dict()}, indent=2))
    else:
        print(f"A: {args.run_a}\nB: {args.run_b}\n{result.format()}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.action == "get":
        return _data_get(args)
    from subprobe.tasks.registry import check_data

    report = check_data(args.data_dir)
    print(report.format())
    return 1 if report.missing else 0


def _data_get(args: argparse.Namespace) -> int:
    from subprobe.data import download

    if args.name.lower() in ("conll2003", "conll-2003"):
        print(download.CONLL2003_HOWTO)
        return 1
    download.get(args.name, args.release, args.dir, prefix=args.prefix, progress=not args.no_progress, echo=_echo)
    return 0


def _echo(*args, **kwargs) -> None:
    print(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
