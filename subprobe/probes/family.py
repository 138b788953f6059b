"""What a probe family is: how it is built, how its complexity is counted, how its unit is named, what its run
directory holds and whether a finished run can be loaded or exported. Every family is one module of this
package, registered by name in :mod:`subprobe.probes.registry`; nothing outside this package spells a family's
name or branches on it: it asks the family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

from subprobe.config import ProbeConfig
from subprobe.probes.base import BuiltProbe

#: How ``bits_note`` reads when the task head is not part of what the probe counts.
HEAD_NOT_COUNTED = "task-head parameters are shared by all probes and not counted"


class ProbeFamily(ABC):
    """A family of probes (``--probe NAME``). Subclasses set the class attributes and implement :meth:`build`."""

    name: str = ""
    #: the paper's name of the probe (Cao et al. 2021 print it as a row title: "Subnetworks", "MLP-1", ...); tables
    #: show it, and a task's ``paper_table1`` is keyed by it
    title: str = ""
    #: configuration fields only this family reads (giving one for another probe is an error)
    settings: tuple[str, ...] = ()
    #: it learns (or freezes) masks over the encoder's weights: its run directory holds them (``subprobe compare``,
    #: stability, localisation), and ``metrics.json`` has densities
    masks: bool = False
    #: it trains an adapter between the features and the head, saved beside the head
    adapter: bool = False
    #: it trains every encoder weight (fine-tuning: the reference the paper's Figure 2 selects lambda_max against)
    trains_encoder: bool = False
    #: a finished run can be loaded (``subprobe predict``, ``load_run``); else :attr:`not_loadable` says why
    loads: bool = True
    not_loadable: str = ""
    #: ``subprobe export`` can bake a finished run into a plain Hugging Face model
    exports: bool = False
    #: a row of the paper's Tables 1 and 2 (the report's table1 and table2)
    in_paper_tables: bool = True
    #: what ``metrics.json``'s ``bits`` counts
    bits_note: str = HEAD_NOT_COUNTED

    @abstractmethod
    def build(self, config: ProbeConfig, encoder: nn.Module, head: nn.Module, fixed_masks=None) -> BuiltProbe:
        """The probe of ``config`` over ``encoder`` and ``head``; ``fixed_masks`` (a Subnetwork, families with
        :attr:`masks`): these masks frozen instead of learnt ones."""

    def check_settings(self, config: ProbeConfig) -> None:  # noqa: B027 (optional hook)
        """Refuse settings this family cannot run with (one ConfigError line), once the configuration is resolved:
        before anything is loaded or written."""

    def pack_kind(self, config: ProbeConfig) -> str | None:
        """How runs of ``config`` train together in one process sharing the frozen encoder (packed training,
        :mod:`subprobe.training.packed`): ``encoder`` (one encoder pass for all, each run's masks applied to its
        rows), ``cached`` (one lookup of cached features for all), or None (the run trains alone)."""
        return None

    def alone_reason(self, config: ProbeConfig) -> str:
        """Why a run of ``config`` does not pack (when :meth:`pack_kind` is None), one phrase for a note."""
        return f"--probe {config.probe} (it does not pack)"

    def unit_label(self, config: ProbeConfig) -> str:
        """The probe's unit as tables show it (``neuron``, ``r=25``; "" for a family without one)."""
        return ""

    def run_label(self, config: ProbeConfig) -> str:
        """The unit and the other settings that tell runs of this family apart in a list of runs."""
        return self.unit_label(config)

    def run_dir_unit(self, config: ProbeConfig) -> str:
        """The unit part of the default run directory name (``neuron``, ``2x1-p0.1``, ``r25``; "" for none)."""
        return ""

    def store_units(self, config: ProbeConfig) -> list[str]:
        """The unit parts of a results-store run directory name (``["neuron", "lam5"]``, ``["r25"]``)."""
        return []

    def table_row(self, config: ProbeConfig) -> str | None:
        """The run's row in the paper's Tables 1 and 2 (``subnetwork@1`` for a neuron subnetwork at lambda_max 1),
        None when the run is not of the tables' kind (another unit, a control mask, ...)."""
        return self.name if self.in_paper_tables else None

    def paper_row(self) -> str:
        """The row of Table 1 (the paper's setting of this family)."""
        return self.name
