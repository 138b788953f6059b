"""Command line: ``subprobe probe | mdl | sweep | reproduce | report | data check | data get | ...`` (flags
generated from the config dataclasses)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from subprobe.errors import SubprobeError, WriteError, did_you_mean

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


#: The namespace attribute where :class:`Renamed` leaves its notes (printed on stderr by :func:`main`).
NOTES = "_notes"


class ListAction(argparse.Action):
    """A list flag, one syntax everywhere: commas, spaces or both (``--tasks upos,dep``, ``--tasks upos dep``).
    ``valid``: the names it takes (each checked here, with the closest known name); ``join``: store one
    comma-separated string (a ``listed`` setting such as ``report_to``) instead of a list."""

    def __init__(self, option_strings, dest, valid=None, join: bool = False, **kwargs):
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)
        self.valid, self.join = valid, join

    def __call__(self, parser, namespace, values, option_string=None):
        items = [item for value in values for item in str(value).replace(",", " ").split()]
        if not items:
            raise argparse.ArgumentError(self, "give at least one value")
        for item in items if self.valid is not None else ():
            if item not in self.valid:
                shown = list(self.valid)
                raise argparse.ArgumentError(self, f"{item!r} is not known{did_you_mean(item, shown)}; use one of "
                                             f"{', '.join(shown)} (a list ends at the next flag)")
        setattr(namespace, self.dest, ",".join(items) if self.join else items)


class Renamed(argparse.Action):
    """The old spelling of a renamed flag (``--out`` of sweep, reproduce, report, predict and export): it still
    sets the new flag's value, and leaves a one-line note for stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        kwargs.update(help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        notes = [*(getattr(namespace, NOTES, None) or []),
                 f"subprobe: note: `{parser.prog} {option_string}` is now `{self.new}` (the old spelling still works "
                 "for now)"]
        setattr(namespace, NOTES, notes)


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
        elif f.metadata.get("listed"):
            group.add_argument(flag, action=ListAction, join=True, default=default, metavar="NAME", help=help_text)
        elif typing.get_origin(kind) is typing.Literal or f.name in named:
            choices = ShownChoices(named.get(f.name) or typing.get_args(kind))
            group.add_argument(flag, type=str, default=default, choices=choices, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=default, metavar=f.name.upper(), help=help_text)


class _Parser(argparse.ArgumentParser):
    """argparse as the project wants it: flags are never abbreviated (``--ep`` is not ``--epochs``), and every
    argument error is one line ``subprobe: error: ...`` (no usage dump), exit status 2, with the closest known
    flag or choice for an unknown one."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"subprobe: error: {message} (see `{self.prog} --help`)\n")

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            shown = [str(c) for c in action.choices]
            raise argparse.ArgumentError(action, f"{value!r} is not known{did_you_mean(value, shown)}; use one of "
                                         f"{', '.join(shown)}")

    def parse_args(self, args=None, namespace=None):
        """Parse; an argument that no (sub)command takes is one line naming it, with the closest flag."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = _used_parser(self, parsed)
            parser.error(_unknown_argument(parser, extras))
        return parsed


def _used_parser(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser that ``parsed`` went through (``subprobe data get``'s for ``data get``)."""
    while parser._subparsers is not None:
        action = parser._subparsers._group_actions[0]
        name = getattr(parsed, action.dest, None)
        if name not in action.choices:
            break
        parser = action.choices[name]
    return parser


def _unknown_argument(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    flags = [e for e in extras if e.startswith("-")]
    if not flags:
        return f"unexpected argument {extras[0]!r}"
    name = flags[0].split("=", 1)[0]
    known = sorted({o for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings
                    if o.startswith("--")})
    return f"unknown flag {name}{did_you_mean(name, known, prefix_matches=True)}"


def build_parser() -> argparse.ArgumentParser:
    from subprobe import __version__
    from subprobe.config import ProbeConfig

    parser = _Parser(
        prog="subprobe", description="Subnetwork probing (Cao, Sanh & Rush 2021) and its baselines.",
        epilog="Lists take commas, spaces or both (--tasks upos,dep); booleans are --x / --no-x; flags are never "
        "abbreviated. Documentation: docs/ (mkdocs serve) or README.md.",
    )
    parser.add_argument("--version", action="version", version=f"subprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    probe = sub.add_parser("probe", help="train one probe and write its run directory")
    _add_dataclass_arguments(probe, ProbeConfig)
    _add_runtime_arguments(probe)
    probe.add_argument(
        "--config", metavar="YAML", help="read settings from a YAML file (a run's config.yaml works); flags override "
        "it, and its values that its profile filled in are filled anew, so --profile and --task apply (default: none)"
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
        "--tasks", action=ListAction, valid=TaskNames(), default=None, metavar="TASK",
        help="tasks to run, among the grid's: " + ", ".join(TaskNames()) + " (default: all of the grid's)",
    )

    report = sub.add_parser(
        "report", help="write a static HTML report (tables, Pareto curves, localisation, runs) and report.md"
    )
    report.add_argument("runs_dir", metavar="RUNS_DIR", help="results store (with index.json) or a directory of runs")
    report.add_argument(
        "--report-dir", default=None, metavar="DIR",
        help="directory for index.html, report.md and figures (default: RUNS_DIR/report)",
    )
    report.add_argument("--out", action=Renamed, new="--report-dir", dest="report_dir")
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
    predict.add_argument("--output", default=None, metavar="FILE", help="file to write the predictions to (required)")
    predict.add_argument("--out", action=Renamed, new="--output", dest="output")
    predict.add_argument(
        "--input-format",
        default="auto",
        choices=["auto", "conllu", "conll2003", "text"],
        help="format of --input; text: one sentence per line, words separated by spaces (default: auto, "
        "detected from the first line)",
    )
    _add_device_argument(predict)
    _add_runtime_arguments(predict)

    export = sub.add_parser("export", help="write a subnetwork as a plain Hugging Face model (dropped weights zero)")
    export.add_argument("run_dir", metavar="RUN_DIR", help="directory of a finished subnetwork run")
    export.add_argument(
        "--model-dir", default=None, metavar="DIR", help="directory for config, weights, tokenizer, card (required)"
    )
    export.add_argument("--out", action=Renamed, new="--model-dir", dest="model_dir")
    export.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False,
        help="replace a --model-dir that holds an exported model",
    )
    _add_device_argument(export, default="cpu", suffix="; where the mask is baked in (the files are the same)")
    _add_runtime_arguments(export)

    compare = sub.add_parser(
        "compare", help="agreement and IoU of two subnetwork runs' kept weights (overall, per layer, per role)"
    )
    compare.add_argument("run_a", metavar="RUN_A", help="directory of a finished subnetwork run")
    compare.add_argument("run_b", metavar="RUN_B", help="directory of another subnetwork run of the same model")
    compare.add_argument(
        "--json", action=argparse.BooleanOptionalAction, default=False,
        help="print the numbers as JSON (--no-json: a text table)",
    )

    show = sub.add_parser("show", help="a run directory's summary: scores, density, bits, settings (finished or not)")
    show.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (finished, interrupted or just started)")

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
    get.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                     help="show a progress bar")
    return parser


#: The one-line help of ``--device`` wherever a model runs.
DEVICE_HELP = "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N | mps"


def _add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto", suffix: str = "") -> None:
    parser.add_argument("--device", default=default, metavar="DEVICE",
                        help=f"{DEVICE_HELP}{suffix} (default: {default or 'auto'})")


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default=None, metavar="NAME",
        help="a budget profile the grid defines, by its name (default: quick when the grid defines it, else the "
        "grid's first)",
    )
    parser.add_argument(
        "--list", action=argparse.BooleanOptionalAction, default=False,
        help="list the grid's points and which are done, running, failed or to go in the store; run nothing",
    )
    parser.add_argument("--model", default=None, help="model id or path (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat every point with seeds 0..N-1 (default: 1)")
    parser.add_argument("--store", default="results", metavar="DIR", help="results store directory (default: results)")
    parser.add_argument("--out", action=Renamed, new="--store", dest="store")
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    _add_device_argument(parser, default=None, suffix=", for every run")
    parser.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
        help="recompute block activations in the backward pass (large models) (default: false)",
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
        f"alone (default: {DEFAULT_PACK} point(s) of subnetwork probes per process, where packing was measured not to "
        "pay on the CPU; every compatible MLP-1 or linear point on cached features in one)",
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
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(argv)
    for note in getattr(args, NOTES, None) or []:  # old spellings of renamed flags
        print(note, file=sys.stderr)
    previous = _stop_on_sigterm()
    try:
        _set_threads(getattr(args, "threads", None))
        commands = {"probe": _probe, "mdl": _mdl, "sweep": _sweep, "reproduce": _reproduce, "report": _report,
                    "predict": _predict, "export": _export, "compare": _compare, "show": _show, "data": _data}
        return commands[args.command](args, argv)
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
    from subprobe.api import dry_run, probe
    from subprobe.config import ProbeConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)}
    given = _given_flags(argv)
    if args.resume is not None:
        return _resume(args, given, values)
    config, sources = _config_of(args, values, given)
    if config.dry_run:
        dry_run(config, echo=_echo, sources=sources)
        return 0
    try:
        probe(config, echo=_echo)
    except WriteError as exc:
        raise WriteError(exc.path, exc.reason, exc.kept, _continue_after_write_error(config)) from None
    return 0


def _config_of(args: argparse.Namespace, values: dict, given: set[str]):
    """The ProbeConfig of a command's flags, over ``--config`` YAML when given (flags given explicitly win), and
    where each explicit setting came from (``setting -> "flag --x"`` or ``"config file F"``).

    A saved ``config.yaml`` holds resolved values: those its profile (with its task's adjustments) or a default
    filled in are recognised by being equal to what would be filled for the saved profile and task
    (:func:`subprobe.resolve.without_derived`) and are filled anew, so ``--config run/config.yaml --profile paper``
    runs the paper profile's budget; a value that differs from the saved profile's was given, and is kept."""
    from subprobe.config import ProbeConfig, yaml_key_lines
    from subprobe.resolve import config_from_yaml, without_derived

    sources = {k: "flag --" + k.replace("_", "-") for k in given if k in values}
    if args.config:
        base = dataclasses.asdict(without_derived(config_from_yaml(args.config)))
        in_file = set(yaml_key_lines(args.config))
        sources.update({k: f"config file {args.config}" for k in values
                        if k not in given and k in in_file and base[k] is not None})
        values = {k: (values[k] if k in given else base[k]) for k in values}
    _check_flag_combinations(values, given)
    return ProbeConfig(**values), sources


def _mdl(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.complexity.mdl import mdl
    from subprobe.config import ProbeConfig

    values = {f.name: getattr(args, f.name, f.default) for f in dataclasses.fields(ProbeConfig)}
    config, _ = _config_of(args, values, _given_flags(argv, "mdl"))
    mdl(config, min_steps=args.min_steps, echo=_echo)
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
    """Names of the configuration flags given explicitly in ``argv`` (--no-X included)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices[command]._actions:
        action.default = argparse.SUPPRESS
    try:
        given = vars(parser.parse_args(argv))
    except SystemExit:  # cannot happen: argv has been parsed once already
        return set()
    return set(given) - {"command", "resume", "config", "min_steps", NOTES}


def _sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.experiments.grids import load_grid
    from subprobe.experiments.sweep import check_overrides, default_store, list_points, run_points, seeds_axis

    grid = load_grid(args.grid)
    if args.grid == "mdl":
        from subprobe.errors import ConfigError

        raise ConfigError("grid mdl: its points are MDL codes, run as block runs by `subprobe reproduce mdl`; use that")
    _check_seeds(args.seeds)
    profile = grid.profile_named(args.profile)
    points = seeds_axis(grid.points(profile), args.seeds)
    base = {k: v for k, v in (("model", args.model), ("data_dir", args.data_dir)) if v}
    base.update(_hardware(args))
    overrides = _overrides(args)
    check_overrides(overrides, grid, args.seeds)
    store = default_store(args.store)
    if args.list:
        print(list_points(points, store, base, overrides=overrides, title=_grid_title(grid.name, profile)))
        return 0
    executor = _executor(args)
    counts = run_points(points, store, base, echo=_echo, overrides=overrides, executor=executor, pack=_pack(args))
    print(f"sweep {grid.name}: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _grid_title(name: str, profile: str | None) -> str:
    return f"grid {name}" + (f", profile {profile}" if profile else "")


def _check_seeds(seeds: int) -> None:
    from subprobe.errors import ConfigError

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")


def _reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.experiments.reproduce import experiment_points, reproduce
    from subprobe.experiments.sweep import default_store, list_points

    options = dict(profile=args.profile, model=args.model, tasks=args.tasks, seeds=args.seeds,
                   data_dir=args.data_dir, overrides=_overrides(args), **_hardware(args))
    if args.list:
        planned = experiment_points(args.what, **options)
        print(list_points(planned.points, default_store(args.store), planned.base, overrides=planned.overrides,
                          title=_grid_title(planned.grid.name, planned.profile)))
        return 0
    result = reproduce(args.what, out=args.store, echo=_echo, executor=_executor(args), pack=_pack(args), **options)
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
    return make_executor(args.executor, jobs=args.jobs, threads=args.threads, store=args.store, device=args.device,
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


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from pathlib import Path

    from subprobe.report.html import write_report

    out = args.report_dir if args.report_dir is not None else Path(args.runs_dir) / "report"
    write_report(args.runs_dir, out, split=args.split, num_heads=args.num_heads, echo=_echo)
    return 0


def _required(value, flag: str, what: str) -> None:
    """A flag that is required but has an old spelling too (argparse cannot require either of two)."""
    from subprobe.errors import ConfigError

    if value is None:
        raise ConfigError(f"{flag} is required: {what}")


def _predict(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.runs.loaded import load_run
    from subprobe.runs.predict import format_scores, predict_file

    _required(args.output, "--output FILE", "the file to write the predictions to")
    run = load_run(args.run_dir, device=args.device)
    scores = predict_file(run, args.input, args.output, input_format=args.input_format, echo=_echo)
    if scores is not None:
        print(format_scores(scores, run.task.primary_metric))
    return 0


def _export(args: argparse.Namespace, argv: list[str]) -> int:
    import shlex

    from subprobe.runs.export import export_run

    _required(args.model_dir, "--model-dir DIR", "the directory to write the model to")
    command = " ".join(shlex.quote(str(a)) for a in ["subprobe", *argv])
    export_run(args.run_dir, args.model_dir, overwrite=args.overwrite, command=command, device=args.device,
               echo=_echo)
    return 0


def _compare(args: argparse.Namespace, argv: list[str]) -> int:
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


def _show(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.runs.result import show_run

    print(show_run(args.run_dir))
    return 0


def _data(args: argparse.Namespace, argv: list[str]) -> int:
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
    download.get(args.name, args.release, args.dir, prefix=args.prefix, progress=args.progress, echo=_echo)
    return 0


def _echo(*args, **kwargs) -> None:
    print(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
