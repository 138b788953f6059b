"""A run's configuration completed and checked: the one step between what a user gives and what a run uses.

:func:`resolve` fills the task and probe a configuration leaves unset with their registries' defaults, checks
both names (one error line with the closest known name), fills the budget profile's settings with the task's
adjustments (``Task.defaults``) and checks every value, then lets the task refuse what it cannot run with.
Resolving a resolved configuration gives it back unchanged.
"""

from __future__ import annotations

from pathlib import Path

from subprobe.config import ProbeConfig, yaml_key_lines
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
    return cfg


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
