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
