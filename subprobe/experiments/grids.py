"""Experiment grids are data: a YAML file of axes (cartesian product) plus per-profile settings.

The built-in experiments are the grid files of ``subprobe/experiments/grids/`` (found there, listed nowhere
else); each names the writer of its tables or figures (``writer:``, one of
:data:`subprobe.experiments.writers.WRITERS`), which ``subprobe reproduce NAME`` runs after the grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from subprobe.errors import ConfigError

#: The folder of the built-in grids (package data).
GRIDS_FOLDER = "grids"


def builtin_grids() -> tuple[str, ...]:
    """The names of the built-in grids (their files' names without ``.yaml``), sorted."""
    folder = resources.files("subprobe.experiments").joinpath(GRIDS_FOLDER)
    return tuple(sorted(f.name[: -len(".yaml")] for f in folder.iterdir() if f.name.endswith(".yaml")))


@dataclass(frozen=True)
class Grid:
    """A named grid: ``points`` are config overrides, one per run."""

    name: str
    description: str
    axes: dict
    profiles: dict
    #: what ``subprobe reproduce`` writes after running the grid (a name of the writers' registry; "": the writer
    #: named like the grid)
    writer: str = ""

    def points(self, profile: str | None = None, **restrict: list) -> list[dict]:
        """Config overrides for every point; ``restrict`` keeps only the given values of an axis."""
        axes = dict(self.axes)
        for key, allowed in restrict.items():
            if allowed is None:
                continue
            if key not in axes:
                raise ConfigError(f"grid {self.name} has no axis {key!r}")
            unknown = [v for v in allowed if v not in [_label(x) for x in axes[key]]]
            if unknown:
                raise ConfigError(f"--{key}s: {', '.join(map(str, unknown))} not in grid {self.name}")
            axes[key] = [x for x in axes[key] if _label(x) in allowed]
        extra = {}
        if profile is not None:
            if profile not in self.profiles:
                raise ConfigError(f"--profile {profile!r} is not defined for {self.name}: {', '.join(self.profiles)}")
            extra = dict(self.profiles[profile] or {})
            extra["profile"] = profile
        names = list(axes)
        points = []
        for combo in itertools.product(*(axes[n] for n in names)):
            point = dict(extra)
            for name, value in zip(names, combo):
                point.update(value if isinstance(value, dict) else {name: value})
            points.append(point)
        return points

    def axis_keys(self) -> set[str]:
        """Configuration keys the axes set (an axis of dicts, such as probe, sets every key of its dicts)."""
        keys = set()
        for name, values in self.axes.items():
            for value in values:
                keys.update(value if isinstance(value, dict) else {name})
        return keys


def _label(value) -> object:
    """The value an axis entry is selected by (its own key for dict entries such as probe)."""
    if isinstance(value, dict):
        return next(iter(value.values()))
    return value


def load_grid(name_or_path: str) -> Grid:
    """A built-in grid by name or a grid YAML file by path."""
    if name_or_path in builtin_grids():
        text = resources.files("subprobe.experiments").joinpath(GRIDS_FOLDER, f"{name_or_path}.yaml").read_text()
        source = name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: no such grid file (built-in grids: {', '.join(builtin_grids())})")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data.get("axes"), dict) or not data["axes"]:
        raise ConfigError(f"{source}: a grid needs a non-empty 'axes' mapping")
    for key, values in data["axes"].items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: axis {key!r} must be a non-empty list")
    return Grid(
        data.get("name", Path(source).stem), data.get("description", ""), data["axes"], data.get("profiles", {}),
        str(data.get("writer", "")),
    )
