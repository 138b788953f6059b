"""Command line: ``subprobe probe | data check`` (flags generated from the config dataclasses)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from subprobe.errors import SubprobeError


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            default = f.default
            shown = f" (default: {default})" if default is not None else ""
            parser.add_argument(flag, type=kind, default=default, metavar=f.name.upper(), help=help_text + shown)


def build_parser() -> argparse.ArgumentParser:
    from subprobe.config import ProbeConfig

    parser = argparse.ArgumentParser(
        prog="subprobe", description="Subnetwork probing (Cao, Sanh & Rush 2021) and its baselines."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    probe = sub.add_parser("probe", help="train one probe and write its run directory")
    _add_dataclass_arguments(probe, ProbeConfig)
    _add_runtime_arguments(probe)
    probe.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")
    probe.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its checkpoint, with the settings saved in RUN_DIR/config.yaml "
        "(a finished run is only reported)",
    )

    sweep = sub.add_parser("sweep", help="run a grid of probes (YAML: axes and profiles) into a resumable store")
    sweep.add_argument("grid", help="grid YAML file, or a built-in grid name (table1, table2, figure1, figure2)")
    _add_grid_arguments(sweep)

    reproduce = sub.add_parser("reproduce", help="run one of the paper's experiments and write its table")
    reproduce.add_argument("what", choices=["table1", "table2", "figure1", "figure2"], help="which experiment")
    _add_grid_arguments(reproduce)
    reproduce.add_argument("--tasks", nargs="+", default=None, choices=["upos", "dep", "ner"], help="tasks to run")

    report = sub.add_parser(
        "report", help="write a static HTML report (tables, Pareto curves, localisation, runs) and report.md"
    )
    report.add_argument("runs_dir", metavar="RUNS_DIR", help="results store (with index.json) or a directory of runs")
    report.add_argument("--out", required=True, metavar="DIR", help="directory for index.html, report.md and figures")
    report.add_argument("--split", default="dev", choices=["dev", "test"], help="split of the numbers (default: dev)")
    report.add_argument(
        "--num-heads", type=int, default=None, metavar="N",
        help="attention heads of the model (default: from metrics.json or the model's config)",
    )

    data = sub.add_parser("data", help="find and verify datasets")
    data.add_argument("action", choices=["check"], help="check: report which datasets are found, with counts")
    data.add_argument("--data-dir", default=None, help="dataset root (default: $SUBPROBE_DATA)")
    return parser


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="budget profile defined by the grid (default: quick)")
    parser.add_argument("--model", default=None, help="model id or path (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat every point with seeds 0..N-1")
    parser.add_argument("--out", default="results", help="store directory (default: results)")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: $SUBPROBE_DATA)")
    _add_runtime_arguments(parser)


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
    try:
        _set_threads(getattr(args, "threads", None))
        if args.command == "probe":
            return _probe(args, argv if argv is not None else sys.argv[1:])
        if args.command == "data":
            return _data(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "report":
            return _report(args)
    except SubprobeError as exc:
        print(f"subprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("subprobe: interrupted", file=sys.stderr)
        return 130
    return 0


def _probe(args: argparse.Namespace, argv: list[str]) -> int:
    from subprobe.api import probe
    from subprobe.config import ProbeConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)}
    given = _given_flags(argv)
    if args.resume is not None:
        return _resume(args, given, values)
    if args.config:
        base = dataclasses.asdict(ProbeConfig.from_yaml(args.config))
        values = {k: (values[k] if k in given else base[k]) for k in values}
    _check_flag_combinations(values, given)
    probe(ProbeConfig(**values), echo=_echo)
    return 0


#: Flags that only apply to one task: (task, flags).
_TASK_FLAGS = {
    "dep": ("decoder", "arc_dim", "label_dim"),
    "ner": ("ner_scheme", "keep_single_token"),
}


#: Flags that only apply to some probes: flag -> probes.
_PROBE_FLAGS = {
    "rank": ("mlp",),
    "cache_features": ("mlp", "linear"),
    "finetune_lr": ("finetune",),
    "granularity": ("subnetwork",),
    "layout": ("subnetwork",),
    "penalty": ("subnetwork",),
    "lambda_max": ("subnetwork",),
    "mask_lr": ("subnetwork",),
}


def _check_flag_combinations(values: dict, given: set[str]) -> None:
    """Refuse flags given explicitly that contradict each other or cannot apply."""
    from subprobe.errors import ConfigError

    for task, names in _TASK_FLAGS.items():
        for name in names:
            if name in given and values["task"] != task:
                raise ConfigError(
                    f"--{name.replace('_', '-')} only applies to --task {task}, not --task {values['task']}; "
                    f"drop it or use --task {task}"
                )
    for name, probes in _PROBE_FLAGS.items():
        if name in given and values["probe"] not in probes:
            raise ConfigError(
                f"--{name.replace('_', '-')} only applies to --probe {' or '.join(probes)}, not --probe "
                f"{values['probe']}; drop it or use --probe {probes[0]}"
            )
    if values.get("dry_run") and "overwrite" in given and values.get("overwrite"):
        raise ConfigError("--dry-run writes no run directory, so --overwrite contradicts it; drop one of them")


def _resume(args: argparse.Namespace, given: set[str], values: dict) -> int:
    from subprobe.errors import ConfigError
    from subprobe.resume import resume

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
    resume(args.resume, echo=_echo, **overrides)
    return 0


def _given_flags(argv: list[str]) -> set[str]:
    """Names of the configuration flags given explicitly in ``argv`` (abbreviations and --no-X included)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["probe"]._actions:
        action.default = argparse.SUPPRESS
    try:
        given = vars(parser.parse_args(argv))
    except SystemExit:  # cannot happen: argv has been parsed once already
        return set()
    return set(given) - {"command", "resume", "config"}


def _sweep(args: argparse.Namespace) -> int:
    from subprobe.experiments.grids import load_grid
    from subprobe.experiments.sweep import default_store, run_points, seeds_axis

    grid = load_grid(args.grid)
    profile = args.profile if args.profile in grid.profiles else None
    if args.profile != "quick" and profile is None:
        from subprobe.errors import ConfigError

        raise ConfigError(f"--profile {args.profile!r} is not defined by grid {grid.name}")
    points = seeds_axis(grid.points(profile), args.seeds)
    base = {k: v for k, v in (("model", args.model), ("data_dir", args.data_dir)) if v}
    counts = run_points(points, default_store(args.out), base, echo=_echo)
    print(f"sweep {grid.name}: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _reproduce(args: argparse.Namespace) -> int:
    from subprobe.experiments.reproduce import reproduce

    result = reproduce(
        args.what, profile=args.profile, model=args.model, tasks=args.tasks, seeds=args.seeds, out=args.out,
        data_dir=args.data_dir, echo=_echo,
    )
    return 1 if result["counts"]["failed"] else 0


def _report(args: argparse.Namespace) -> int:
    from subprobe.report.html import write_report

    write_report(args.runs_dir, args.out, split=args.split, num_heads=args.num_heads, echo=_echo)
    return 0


def _data(args: argparse.Namespace) -> int:
    from subprobe.data.sources import check_data

    rows = check_data(args.data_dir)
    print(f"{'task':<5} {'split':<5} {'sentences':>9} {'words':>8}  path")
    missing = 0
    for r in rows:
        if r["found"]:
            print(f"{r['task']:<5} {r['split']:<5} {r['sentences']:>9,} {r['words']:>8,}  {r['path']}")
        else:
            missing += 1
            print(f"{r['task']:<5} {r['split']:<5} {'missing':>9} {'':>8}  {r['path']}")
    return 1 if missing else 0


def _echo(*args, **kwargs) -> None:
    print(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
