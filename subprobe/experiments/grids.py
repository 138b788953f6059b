"""Experiment grids are data: a YAML file of axes (cartesian product) plus per-profile settings.

The built-in experiments are the grid files of ``subprobe/experiments/grids/`` (found there, listed nowhere
else); each names the writer of its tables or figures (``writer:``, one of
:data:`subprobe.experiments.writers.WRITERS`), which ``subprobe reproduce NAME`` runs after the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from subprobe.errors import ConfigError, did_you_mean

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

    def profile_named(self, name: str | None) -> str | None:
        """The profile ``--profile NAME`` picks: ``name`` if the grid defines it (one error line with the closest
        name if not); with no name, ``quick`` when the grid defines it, else its first profile (None: it has none).
        """
        if name is None:
            return "quick" if "quick" in self.profiles else next(iter(self.profiles), None)
        if name not in self.profiles:
            defined = ", ".join(map(str, self.profiles)) or "none (this grid defines no profiles: drop --profile)"
            raise ConfigError(f"--profile {name!r} is not defined by grid {self.name}"
                              f"{did_you_mean(name, list(self.profiles))}; use {defined}")
        return name

    def points(self, profile: str | None = None, **restrict: list) -> list[dict]:
        """Config overrides for every point; ``restrict`` keeps only the given values of an axis.

        ``profile``: one of the grid's profiles, by any name; its settings apply to every point. Its budget
        starts from the run profile of the same name (:data:`subprobe.config.PROFILES`: quick, paper) when there
        is one, else from the default (quick); a grid profile's own ``profile:`` setting names another."""
        axes = dict(self.axes)
        for key, allowed in restrict.items():
            if allowed is None:
                continue
            if key not in axes:
                raise ConfigError(f"grid {self.name} has no axis {key!r}")
            labels = [_label(x) for x in axes[key]]
            unknown = [v for v in allowed if v not in labels]
            if unknown:
                raise ConfigError(f"--{key}s {', '.join(map(str, unknown))}: not in grid {self.name}; use "
                                  f"{', '.join(map(str, labels))}")
            axes[key] = [x for x in axes[key] if _label(x) in allowed]
        extra = {}
        if profile is not None:
            from subprobe.config import PROFILES

            self.profile_named(profile)
            extra = {**({"profile": profile} if profile in PROFILES else {}), **(self.profiles[profile] or {})}
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
    """A built-in grid by name or a grid YAML file by path; every problem is one ConfigError naming the file
    and line (YAML syntax, the layout, unknown configuration keys, values of the wrong type or choice, tasks and
    probes their registries do not know)."""
    if name_or_path in builtin_grids():
        text = resources.files("subprobe.experiments").joinpath(GRIDS_FOLDER, f"{name_or_path}.yaml").read_text()
        source = name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            what = "is a directory, not a grid file" if path.is_dir() else "no such grid file"
            raise ConfigError(f"{name_or_path}: {what} (built-in grids: {', '.join(builtin_grids())})")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{name_or_path}: not UTF-8 text; save the grid as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{name_or_path}: cannot read it ({exc.strerror or exc}); check the path") from None
        source = str(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML (nested too deeply); see the built-in grids for the layout"
                          ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}); see the built-in grids for the layout") from None
    return _checked_grid(data, node, source)


def _line(node) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _child(node, key):
    """The value node of ``key`` in a mapping node (None if absent)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return v
    return None


def _check_settings(values: dict, node, source: str, what: str) -> None:
    """Configuration keys and values of one axis entry or profile: known keys, right types and choices."""
    from subprobe.config import ProbeConfig, check_types
    from subprobe.resolve import check_names

    known = {f.name for f in dataclasses.fields(ProbeConfig)}
    for key, value in values.items():
        where = f"{source}:{_line(_child(node, key) or node)}"
        if key not in known:
            raise ConfigError(f"{where}: {what}: unknown configuration key {key!r}; use the settings of "
                              "`subprobe probe --help` (with _ for -)")
        if key == "rank" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML grids write ranks as numbers
        check_types({key: value}, f"{where}: {what}")
        check_names({key: value}, f"{where}: {what}: ")


def _checked_grid(data, node, source: str) -> Grid:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a grid is a YAML mapping with 'axes' (and 'profiles'), not a "
                          f"{type(data).__name__}")
    axes, axes_node = data.get("axes"), _child(node, "axes")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{source}:{_line(axes_node or node)}: a grid needs a non-empty 'axes' mapping")
    unknown = sorted(str(k) for k in set(data) - {"name", "description", "writer", "axes", "profiles"})
    if unknown:
        raise ConfigError(f"{source}:{_line(_child(node, unknown[0]))}: unknown grid key {unknown[0]!r}; a grid has "
                          "name, description, writer, axes and profiles")
    for key in ("name", "description"):
        if key in data and not (isinstance(data[key], str) and data[key].isprintable()):
            raise ConfigError(f"{source}:{_line(_child(node, key))}: {key} must be a string on one line")
    for key, values in axes.items():
        axis_node = _child(axes_node, key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}:{_line(axis_node)}: axis {key!r} must be a non-empty list")
        for i, value in enumerate(values):
            value_node = axis_node.value[i] if isinstance(axis_node, yaml.SequenceNode) else axis_node
            if isinstance(value, dict):
                if not value:
                    raise ConfigError(f"{source}:{_line(value_node)}: axis {key!r}: an empty entry {{}}")
                _check_settings(value, value_node, source, f"axis {key}")
            elif isinstance(value, list):
                raise ConfigError(f"{source}:{_line(value_node)}: axis {key!r}: a value is a list; give one value "
                                  "or one mapping of settings per entry")
            else:
                _check_settings({key: value}, value_node, source, f"axis {key}")
    profiles, profiles_node = data.get("profiles") or {}, _child(node, "profiles")
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}:{_line(profiles_node)}: 'profiles' must map profile names to settings")
    for name, settings in profiles.items():
        profile_node = _child(profiles_node, name)
        if settings is None:
            continue
        if not isinstance(settings, dict):
            raise ConfigError(f"{source}:{_line(profile_node)}: profile {name!r} must be a mapping of settings")
        _check_settings(settings, profile_node, source, f"profile {name}")
    writer = data.get("writer", "")
    if not isinstance(writer, str):
        raise ConfigError(f"{source}:{_line(_child(node, 'writer'))}: writer must be the name of a writer")
    return Grid(data.get("name", Path(source).stem), data.get("description", ""), axes, profiles, writer)
