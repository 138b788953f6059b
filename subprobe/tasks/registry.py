"""Task names -> task objects."""

from __future__ import annotations

from subprobe.data.sources import SPLITS, data_root
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


def check_data(data_dir: str | None) -> list[dict]:
    """Rows describing what datasets are found for each task, with sentence and word counts."""
    root = data_root(data_dir)
    if root is None:
        raise ConfigError("SUBPROBE_DATA is not set; set it (e.g. SUBPROBE_DATA=../shared/data) or pass --data-dir")
    if not root.is_dir():
        raise ConfigError(f"--data-dir {root}: no such directory")
    rows = []
    for name in TASK_NAMES:
        try:
            task = get_task(name)
        except ImportError:
            continue
        for split in SPLITS:
            path = root / task.data_folder / task.data_files[split]
            row = {"task": name, "split": split, "path": str(path), "found": path.is_file()}
            if path.is_file():
                sentences = task.read(path)
                row["sentences"] = len(sentences)
                row["words"] = sum(len(s) for s in sentences)
            rows.append(row)
    return rows
