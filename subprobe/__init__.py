"""subprobe: subnetwork probing of frozen transformers (Cao, Sanh & Rush 2021), and its baselines.

Nothing heavy is imported here; the public names load on first use.
"""

from __future__ import annotations

from subprobe.version import __version__ as __version__

__all__ = ["LoadedRun", "ProbeConfig", "Result", "Subnetwork", "load_run", "mdl", "probe", "probe_many"]


def __getattr__(name: str):
    if name == "probe":
        from subprobe.api import probe

        return probe
    if name == "probe_many":
        from subprobe.many import probe_many

        return probe_many
    if name == "mdl":
        from subprobe.complexity.mdl import mdl

        return mdl
    if name == "Result":
        from subprobe.runs.result import Result

        return Result
    if name == "ProbeConfig":
        from subprobe.config import ProbeConfig

        return ProbeConfig
    if name == "Subnetwork":
        from subprobe.masking.subnetwork import Subnetwork

        return Subnetwork
    if name in ("load_run", "LoadedRun"):
        from subprobe.runs import loaded

        return getattr(loaded, name)
    raise AttributeError(f"module 'subprobe' has no attribute {name!r}")
