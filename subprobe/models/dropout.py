"""Dropout whose random numbers are cheap on the CPU.

On the CPU ``torch.nn.functional.dropout`` draws one Mersenne-Twister number per element
(``bernoulli_``, several ns per element), which made the encoder's dropout calls a large part of a
masked training step. :func:`fast_dropout` draws 16 random bits per element from NumPy's PCG64
(64 bits per call), seeded from torch's default generator at every call, so ``torch.manual_seed``
still makes runs reproducible. An element is dropped when its 16 bits fall below
``round(p * 65536)``, so the drop probability is ``p`` to within 1/131072. The mask is built
directly in the tensor's dtype with the values ``0`` and ``1 / (1 - p)`` (rounded to that dtype,
as torch's own CPU dropout does), so applying it, and its backward, is one multiplication.
Other devices, and dtypes other than bf16/fp16/fp32/fp64, use ``torch.nn.functional.dropout``.

Inside :func:`subprobe.models.streams.use` (packed training) the numbers come from each run's generator instead,
each run's rows of the tensor from its own (the same numbers its run alone draws, on the CPU; elsewhere a
``bernoulli_`` draw from the run's generator, since ``F.dropout`` takes none).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.models import streams as run_streams

_LEVELS = 1 << 16
#: float dtype -> (torch int dtype of the same width, numpy int dtype) for writing bit patterns
_BITS = {
    torch.bfloat16: (torch.int16, np.int16),
    torch.float16: (torch.int16, np.int16),
    torch.float32: (torch.int32, np.int32),
    torch.float64: (torch.int64, np.int64),
}


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A tensor of ``shape`` and ``dtype`` holding 0 (dropped) or ``1 / (1 - p)`` (kept); its seed drawn from
    ``generator`` (a CPU one; default: torch's default generator)."""
    torch_int, numpy_int = _BITS[dtype]
    n = int(np.prod(shape, dtype=np.int64))
    threshold = round(p * _LEVELS)
    # from torch's default generator (reproducible under manual_seed) or the run's
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    raw = np.random.PCG64(seed).random_raw((n + 3) // 4)
    keep = raw.view(np.int16)[:n] >= threshold - _LEVELS // 2  # the int16 lanes are uniform on [-32768, 32767]
    scale = torch.tensor(_LEVELS / (_LEVELS - threshold), dtype=dtype).view(torch_int).item()
    bits = np.multiply(keep.view(np.uint8), numpy_int(scale), dtype=numpy_int)
    return torch.from_numpy(bits).view(dtype).view(shape)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with cheap random numbers on the CPU (from the runs' generators inside
    :func:`subprobe.models.streams.use`)."""
    if not training or p == 0.0:
        return x
    streams = run_streams.current()
    if streams is not None:
        if streams.single:
            return _Dropout.apply(x, _stream_mask(x.shape, p, x, streams.generators[0]))
        streams.parts(x.shape[0])
        masks = [_padded(_stream_mask(streams.own_shape(x.shape, k), p, x, g), x.shape[1:])
                 for k, g in enumerate(streams.generators)]
        return _Dropout.apply(x, torch.cat(masks))
    if x.device.type != "cpu" or p >= 1.0 or x.dtype not in _BITS:
        return F.dropout(x, p, training)
    return _Dropout.apply(x, dropout_mask(x.shape, p, x.dtype))


def _padded(mask: torch.Tensor, shape) -> torch.Tensor:
    """``mask`` padded with zeros to ``shape`` after its first dimension (a shorter run's positions past its end)."""
    pad = [size for own, full in zip(reversed(mask.shape[1:]), reversed(shape)) for size in (0, full - own)]
    return F.pad(mask, pad) if any(pad) else mask


def _stream_mask(shape, p: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The dropout mask of ``shape`` drawn from ``generator`` (on ``like``'s device and in its dtype)."""
    if like.device.type == "cpu" and p < 1.0 and like.dtype in _BITS:
        return dropout_mask(shape, p, like.dtype, generator)
    if p >= 1.0:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p, generator=generator)
    return keep.div_(1.0 - p)


class FastDropout(nn.Dropout):
    """A drop-in :class:`torch.nn.Dropout` that uses :func:`fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            raise ValueError("FastDropout does not support inplace=True")
        return fast_dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` inside ``module`` by :class:`FastDropout`; returns how many."""
    replaced = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace:
                setattr(parent, name, FastDropout(child.p))
                replaced += 1
                if child.training is False:
                    getattr(parent, name).eval()
    return replaced
