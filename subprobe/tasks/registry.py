"""Task names -> task objects."""

from __future__ import annotations

from subprobe.errors import ConfigError
from subprobe.tasks.base import Task

TASK_NAMES = ("upos", "dep", "ner")


def get_task(name: str) -> Task:
    """The task called ``name``."""
    if name == "upos":
        from subprobe.tasks.upos import UposTask

        return UposTask()
    if name == "dep":
        from subprobe.tasks.dep import DepTask

        return DepTask()
    if name == "ner":
        from subprobe.tasks.ner import NerTask

        return NerTask()
    raise ConfigError(f"--task {name!r} is not known; use one of {', '.join(TASK_NAMES)}")


def check_data(data_dir: str | None):
    """What ``subprobe data check`` reports: every task's files with counts, the embedded data and the
    downloads (a :class:`subprobe.data.check.DataCheck`)."""
    from subprobe.data.check import check
    from subprobe.data.download import user_data_dir

    tasks = []
    for name in TASK_NAMES:
        try:
            tasks.append(get_task(name))
        except ImportError:
            continue
    return check(tasks, data_dir, user_data_dir())
