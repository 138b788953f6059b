"""A run's configuration completed and checked: the one step between what a user gives and what a run uses.

:func:`resolve` fills the task and probe a configuration leaves unset with their registries' defaults, checks
both names (one error line with the closest known name), fills the budget profile's settings with the task's
adjustments (``Task.defaults``) and checks every value, then lets the task refuse what it cannot run with.
Resolving a resolved configuration gives it back unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subprobe.config import PROFILES, ProbeConfig, yaml_key_lines
from subprobe.errors import ConfigError
from subprobe.probes.registry import DEFAULT_PROBE, PROBE_MODULES, probe_family, unknown_probe
from subprobe.tasks.registry import DEFAULT_TASK, entry_of, get_task, task_class, unknown_task


def resolve(config: ProbeConfig) -> ProbeConfig:
    """``config`` with every default filled in and checked (see the module docstring)."""
    task_name = config.task or DEFAULT_TASK
    probe_name = config.probe or DEFAULT_PROBE
    task = task_class(task_name)
    probe_family(probe_name)
    values = {**vars(config), "task": task_name, "probe": probe_name}
    cfg = config.filled({"task": task_name, "probe": probe_name, **task.defaults(config.profile, values)})
    task.check_settings(cfg)
    probe_family(probe_name).check_settings(cfg)
    return cfg


def filled_by_resolve(config: ProbeConfig) -> dict[str, Any]:
    """What :func:`resolve` fills into the settings ``config`` leaves unset: the budget profile's values with the
    task's adjustments, and the decoder's default (the task and probe aside)."""
    task = task_class(config.task or DEFAULT_TASK)
    if config.profile not in PROFILES:
        return {}
    fills = {**PROFILES[config.profile], **task.defaults(config.profile, vars(config))}
    fills.setdefault("decoder", "mst")
    return {k: v for k, v in fills.items() if k not in ("task", "probe")}


def without_derived(config: ProbeConfig) -> ProbeConfig:
    """A resolved configuration (a run's ``config.yaml``) with every setting that its profile, its task or a
    default filled in set back to unset (None), so that resolving it again -- with another ``--profile`` or
    ``--task`` -- fills them anew. A setting counts as filled when its value is the one :func:`resolve` would
    fill for the saved profile and task; a value that differs was given, and is kept."""
    derived = {k: None for k, v in filled_by_resolve(config).items() if getattr(config, k) == v}
    return dataclasses.replace(config, **derived)


def setting_sources(given: ProbeConfig, resolved: ProbeConfig, sources: dict[str, str] | None = None
                    ) -> list[tuple[str, Any, str]]:
    """``(setting, value, where it came from)`` for every setting of ``resolved`` that differs from its default.

    ``sources`` names the origin of settings given explicitly (``flag --epochs``, ``config file C.yaml``); a
    setting ``given`` sets that ``sources`` does not name was given in Python; one ``given`` leaves unset comes
    from the profile (``profile quick``, or ``profile quick, task ner`` for the task's adjustment) or a default
    (the registries' task and probe, the decoder)."""
    sources = sources or {}
    defaults = {f.name: f.default for f in dataclasses.fields(ProbeConfig)}
    profile = PROFILES.get(resolved.profile, {})
    task_adjusted = task_class(resolved.task).defaults(resolved.profile, vars(resolved))
    rows = []
    for name, value in vars(resolved).items():
        if value == defaults[name]:
            continue
        if name in sources:
            where = sources[name]
        elif getattr(given, name) is not None and getattr(given, name) == value:
            where = "given"
        elif name in task_adjusted and task_adjusted[name] != profile.get(name):
            where = f"profile {resolved.profile}, task {resolved.task}"
        elif name in profile:
            where = f"profile {resolved.profile}"
        else:
            where = "default"
        rows.append((name, value, where))
    return rows


def check_names(values: dict, prefix: str = "") -> None:
    """The ``task`` and ``probe`` of ``values`` (when given), checked by their registries: an unknown one is one
    ConfigError line, ``PREFIXtask 'srl' is not known; use one of ...`` (with the closest known name)."""
    task, probe = values.get("task"), values.get("probe")
    if task is not None:
        if not isinstance(task, str) or entry_of(task) is None:
            raise ConfigError(prefix + unknown_task(str(task), flag="task"))
        get_task(task)  # a parametrised task checks its parameter
    if probe is not None and probe not in PROBE_MODULES:
        raise ConfigError(prefix + unknown_probe(str(probe), flag="probe"))


def config_from_yaml(path: str | Path) -> ProbeConfig:
    """:meth:`ProbeConfig.from_yaml` with the task and probe checked by their registries too (one error line naming
    the file and line)."""
    config = ProbeConfig.from_yaml(path)
    lines = yaml_key_lines(path)
    for key in ("task", "probe"):
        value = getattr(config, key)
        if value is not None:
            check_names({key: value}, f"{path}:{lines[key]}: " if key in lines else f"{path}: ")
    return config
