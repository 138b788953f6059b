"""A run's configuration completed and checked: the one step between what a user gives and what a run uses.

:func:`resolve` fills the task and probe a configuration leaves unset with their registries' defaults, checks
both names (one error line with the closest known name), fills the budget profile's settings with the task's
adjustments (``Task.defaults``) and checks every value, then lets the task refuse what it cannot run with.
Resolving a resolved configuration gives it back unchanged.
"""

from __future__ import annotations

from subprobe.config import ProbeConfig
from subprobe.probes.registry import DEFAULT_PROBE, probe_family
from subprobe.tasks.registry import DEFAULT_TASK, task_class


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
