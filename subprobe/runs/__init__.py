"""The life cycle of a run: its directory (:mod:`~subprobe.runs.directory`), its result and ``metrics.json``
(:mod:`~subprobe.runs.result`), resuming it (:mod:`~subprobe.runs.resume`), experiment trackers
(:mod:`~subprobe.runs.tracking`), rebuilding a finished run's model (:mod:`~subprobe.runs.rebuild`) to load it
(:mod:`~subprobe.runs.loaded`), tag files with it (:mod:`~subprobe.runs.predict`) or export it
(:mod:`~subprobe.runs.export`).

The run directory's names and reads are importable from here: ``from subprobe.runs import RunDir``.
"""

from __future__ import annotations

from subprobe.atomic import read_json, write_json, write_text
from subprobe.runs.directory import RunDir, config_differences, default_out, prepare_run_dir, run_status

__all__ = [
    "RunDir", "config_differences", "default_out", "prepare_run_dir", "read_json", "run_status", "write_json",
    "write_text",
]
