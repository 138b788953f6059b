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
    probe.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")

    data = sub.add_parser("data", help="find and verify datasets")
    data.add_argument("action", choices=["check"], help="check: report which datasets are found, with counts")
    data.add_argument("--data-dir", default=None, help="dataset root (default: $SUBPROBE_DATA)")
    return parser


class _Parser(argparse.ArgumentParser):
    pass


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "probe":
            return _probe(args, argv if argv is not None else sys.argv[1:])
        if args.command == "data":
            return _data(args)
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
    if args.config:
        base = dataclasses.asdict(ProbeConfig.from_yaml(args.config))
        given = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
        given |= {g[3:] for g in given if g.startswith("no_")}
        values = {k: (values[k] if k in given else base[k]) for k in values}
    probe(ProbeConfig(**values), echo=_echo)
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
