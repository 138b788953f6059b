"""Task names -> tasks. Every task is one module of this package, registered here by its name; everything else
(the command line's choices, the configuration's check, the report's facts, prediction files) asks this registry.

Adding a task: write ``subprobe/tasks/NAME.py`` with a :class:`~subprobe.tasks.base.Task` subclass bound to the
module attribute ``TASK``, and add ``NAME`` to :data:`TASK_NAMES` (CONTRIBUTING.md walks through ``feats``).
"""

from __future__ import annotations

import difflib
from importlib import import_module
from typing import TYPE_CHECKING

from subprobe.errors import ConfigError

if TYPE_CHECKING:  # the registry itself imports no task (listing the names stays cheap)
    from subprobe.tasks.base import Task

#: Every task's ``--task`` name, in the order tables list them; ``NAME:PARAM`` is a parametrised task (``--task
#: feats:Number``). The task ``NAME`` is the class ``TASK`` of the module ``subprobe.tasks.NAME``.
TASK_NAMES = ("upos", "dep", "ner", "xpos", "feats:KEY")
#: The task of a run that names none.
DEFAULT_TASK = TASK_NAMES[0]


def _base(name: str) -> str:
    return name.partition(":")[0]


def entry_of(name: str) -> str | None:
    """The :data:`TASK_NAMES` entry that ``name`` is an instance of (None: unknown)."""
    base, colon, parameter = name.partition(":")
    for entry in TASK_NAMES:
        entry_base, entry_colon, _ = entry.partition(":")
        if entry_base == base and bool(entry_colon) == bool(colon) and (parameter or not colon):
            return entry
    return None


def task_class(name: str) -> type[Task]:
    """The class of the task ``name`` (``feats:Number`` -> the ``feats`` class); ConfigError if unknown."""
    if entry_of(name) is None:
        raise ConfigError(unknown_task(name))
    return import_module(f"{__package__}.{_base(name)}").TASK


def get_task(name: str) -> Task:
    """A new task object for ``name`` (a parametrised one gets its parameter)."""
    cls = task_class(name)
    parameter = name.partition(":")[2]
    return cls(parameter) if cls.parameter else cls()


def find_task(name: str) -> Task | None:
    """The task ``name``, or None when it is not a task of this version (e.g. a run from a newer one)."""
    try:
        return get_task(name)
    except ConfigError:
        return None


def unknown_task(name: str, flag: str = "--task") -> str:
    """The message for a name that is no task: the known ones, and the closest if one is close (a parametrised
    one with the parameter given: ``fets:Number`` -> ``feats:Number``)."""
    base, colon, parameter = name.partition(":")
    bases = {_base(entry): entry for entry in TASK_NAMES}
    close = difflib.get_close_matches(base, list(bases), n=1, cutoff=0.6)
    hint = ""
    if close:
        entry = bases[close[0]]
        hint = f" (did you mean {close[0]}:{parameter}?)" if ":" in entry and parameter else f" (did you mean {entry}?)"
    return f"{flag} {name!r} is not known{hint}; use one of {', '.join(TASK_NAMES)}"


def path_name(name: str) -> str:
    """The task's name as a part of a file name (``feats:Number`` -> ``feats-Number``)."""
    return name.replace(":", "-")


def task_order(name: str) -> tuple[int, str]:
    """Sort key of a task name: the order of :data:`TASK_NAMES` (tasks of another version last), then the name."""
    entry = entry_of(name)
    return (TASK_NAMES.index(entry) if entry is not None else len(TASK_NAMES), name)


def scoped_settings() -> dict[str, tuple[str, ...]]:
    """Configuration fields that only some tasks read (a task's ``settings``) -> those tasks' names."""
    scopes: dict[str, tuple[str, ...]] = {}
    for entry in TASK_NAMES:
        for setting in task_class(entry).settings:
            scopes[setting] = (*scopes.get(setting, ()), entry)
    return scopes


def check_data(data_dir: str | None):
    """What ``subprobe data check`` reports: every task's files with counts, the embedded data and the
    downloads (a :class:`subprobe.data.check.DataCheck`); parametrised tasks read another task's files and are
    left out."""
    from subprobe.data.check import check
    from subprobe.data.download import user_data_dir

    tasks = [get_task(name) for name in TASK_NAMES if not task_class(name).parameter]
    return check(tasks, data_dir, user_data_dir())
