"""Probe family names -> families. Every family is one module of this package (its ``FAMILY``), registered here
by name; the command line's choices, the configuration's check, the run directory, loading, export and the report
ask this registry.
"""

from __future__ import annotations

import difflib
from importlib import import_module
from typing import TYPE_CHECKING

from subprobe.errors import ConfigError

if TYPE_CHECKING:  # the registry itself imports no family (listing the names stays cheap)
    from torch import nn

    from subprobe.config import ProbeConfig
    from subprobe.probes.base import BuiltProbe
    from subprobe.probes.family import ProbeFamily

#: Every family's ``--probe`` name -> its module in this package, in the order tables list them.
PROBE_MODULES = {"subnetwork": "subnetwork_probe", "mlp": "mlp", "linear": "linear", "finetune": "finetune"}
PROBE_NAMES = tuple(PROBE_MODULES)
#: The probe of a run that names none.
DEFAULT_PROBE = PROBE_NAMES[0]


def probe_family(name: str) -> ProbeFamily:
    """The family ``name``; one ConfigError line (with the closest name) when there is none."""
    if name not in PROBE_MODULES:
        raise ConfigError(unknown_probe(name))
    return import_module(f"{__package__}.{PROBE_MODULES[name]}").FAMILY


def unknown_probe(name: str, flag: str = "--probe") -> str:
    """The message for a name that is no probe family: the known ones, and the closest if one is close."""
    close = difflib.get_close_matches(str(name), PROBE_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{flag} {name!r} is not known{hint}; use one of {', '.join(PROBE_NAMES)}"


def find_family(name: str) -> ProbeFamily | None:
    """The family ``name``, or None when this version has none (e.g. a run of a newer one)."""
    return probe_family(name) if name in PROBE_MODULES else None


def families() -> list[ProbeFamily]:
    """Every family, in the registry's order."""
    return [probe_family(name) for name in PROBE_NAMES]


def build_probe(config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
    """Build the probe named by ``config.probe``; ``fixed_masks`` (a Subnetwork): a subnetwork probe with these
    masks frozen (--random-mask-like, --complement-of) instead of learnt ones."""
    return probe_family(config.probe).build(config, encoder, head, fixed_masks)


def scoped_settings() -> dict[str, tuple[str, ...]]:
    """Configuration fields that only some families read (a family's ``settings``) -> those families' names."""
    scopes: dict[str, tuple[str, ...]] = {}
    for family in families():
        for setting in family.settings:
            scopes[setting] = (*scopes.get(setting, ()), family.name)
    return scopes
