"""The random streams of runs trained together in one process (packed training, :mod:`subprobe.training.packed`).

A run alone draws every random number of its training -- hard-concrete mask samples, dropout in the encoder, on
the features and in the head, attention dropout -- from torch's default generator. Runs packed into one process
each draw from a ``torch.Generator`` of their own, started from the state the default generator would have had in
the run alone, and in the same order, so that each packed run draws the numbers its solo run draws.

While :func:`use` holds a :class:`Streams`, the samplers (:func:`subprobe.models.dropout.fast_dropout`,
:class:`subprobe.masking.masked_linear.MaskedLinear`, :class:`subprobe.masking.shared.SharedMask`) draw from it: a
tensor's leading dimension holds ``sizes[0]`` rows (sentences) of run ``runs[0]``, then ``sizes[1]`` of
``runs[1]``, ...; each part's numbers come from its run's generator. A :class:`Streams` of one run draws the whole
tensor from that run's generator, whatever its shape (its feature and head dropout).

Runs whose batches differ (different seeds) are padded to the longest batch (``longest`` subwords); ``lengths`` are
their own. A sampler draws each run's numbers for the shape its run alone has (:meth:`Streams.own_shape`: the
sequence dimension of ``[B, T, d]`` hidden states and the two of ``[B, H, T, T]`` attention weights at the run's own
length) and pads them, so that a run's real positions get the numbers its run alone draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Streams:
    """Runs ``runs`` (their indices in the pack), their rows along the leading dimension and their generators."""

    runs: tuple[int, ...]
    sizes: tuple[int, ...]
    generators: tuple[torch.Generator, ...]
    #: each run's own subwords per sentence (empty: all as long as the tensor's)
    lengths: tuple[int, ...] = ()

    @property
    def single(self) -> bool:
        return len(self.generators) == 1

    def parts(self, leading: int) -> tuple[int, ...]:
        """Each run's rows of a tensor whose leading dimension is ``leading`` (the sentences of every run in turn);
        a ValueError when it is not (a model that does not keep the sentences of a batch along its first
        dimension cannot be packed)."""
        if sum(self.sizes) != leading:
            raise ValueError(
                f"a packed tensor has {leading} rows along its first dimension, not the {sum(self.sizes)} sentences of "
                "its runs: this model does not keep a batch's sentences along the first dimension"
            )
        return self.sizes


    def own_shape(self, shape: torch.Size | tuple[int, ...], k: int) -> tuple[int, ...]:
        """The shape run ``k``'s part of a tensor of ``shape`` has when the run is alone (see the module doc)."""
        rest = list(shape[1:])
        if self.lengths:
            longest, own = max(self.lengths), self.lengths[k]
            if own != longest and len(rest) == 2 and rest[0] == longest:  # [B, T, d]
                rest[0] = own
            elif own != longest and len(rest) == 3 and rest[1] == rest[2] == longest:  # [B, H, T, T]
                rest[1] = rest[2] = own
        return (self.sizes[k], *rest)


_ACTIVE: ContextVar[Streams | None] = ContextVar("subprobe_streams", default=None)


def current() -> Streams | None:
    """The streams in use (None: draw from torch's default generator, as a run alone does)."""
    return _ACTIVE.get()


@contextmanager
def use(streams: Streams | None) -> Iterator[Streams | None]:
    """Draw from ``streams`` inside the block (None: from torch's default generator)."""
    token = _ACTIVE.set(streams)
    try:
        yield streams
    finally:
        _ACTIVE.reset(token)


def one(run: int, generator: torch.Generator, rows: int = 0) -> Streams:
    """The streams of run ``run`` alone (``rows``: its sentences, where it matters)."""
    return Streams((run,), (rows,), (generator,))


def generator_now(device: torch.device) -> torch.Generator:
    """A generator on ``device`` whose state is the default generator's there now: it draws what the default
    generator would draw next."""
    device = torch.device(device)
    generator = torch.Generator(device=device)
    if device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    elif device.type == "cpu":
        generator.set_state(torch.get_rng_state())
    else:  # e.g. MPS: seeded from the default generator (not the same numbers as a run alone)
        generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
    return generator
