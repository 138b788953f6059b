"""Hard-concrete distribution (Louizos et al., 2018) with the constants of Cao et al. (2021)."""

from __future__ import annotations

import math

import torch

GAMMA = -0.1
ZETA = 1.1
BETA = 2.0 / 3.0
#: log-alpha at initialisation: the deterministic (stretched) mask starts at 0.9.
INIT_LOG_ALPHA = math.log(5.0)
#: Uniform noise is kept away from 0 and 1 so that its logit stays finite.
NOISE_EPS = 1e-6
#: A unit is kept by the hard mask iff its deterministic value is at least this.
HARD_THRESHOLD = 0.5


def stretch_and_clamp(s: torch.Tensor) -> torch.Tensor:
    """Stretch a value in (0, 1) to (gamma, zeta) and clamp it to [0, 1]."""
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def sample_mask(log_alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One reparameterised sample of the stretched, clamped hard-concrete mask, the one sampler.

    ``u ~ U(0, 1)`` clamped to ``[eps, 1 - eps]``, ``s = sigmoid((logit(u) + log_alpha) / beta)``,
    ``z = clamp(s * (zeta - gamma) + gamma, 0, 1)``; computed as one autograd node (a few ops
    instead of ~25) and equal, up to rounding, to :func:`reference_sample` with the same noise.
    """
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    return _HardConcreteSample.apply(log_alpha, u)


def reference_sample(log_alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`sample_mask` written out op by op (plain autograd): the reference the fast node is tested against."""
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    u = u.clamp(NOISE_EPS, 1.0 - NOISE_EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return stretch_and_clamp(s)


class _HardConcreteSample(torch.autograd.Function):
    """:func:`reference_sample` given the noise ``u`` (overwritten), as one autograd node."""

    @staticmethod
    def forward(ctx, log_alpha, u):
        s = u.clamp_(NOISE_EPS, 1.0 - NOISE_EPS).logit_().add_(log_alpha).mul_(1.0 / BETA).sigmoid_()
        z = s * (ZETA - GAMMA) + GAMMA
        if ctx.needs_input_grad[0]:  # d clamp(z, 0, 1) / d log_alpha; clamp passes gradient on [0, 1]
            slope = (s - s * s).mul_((ZETA - GAMMA) / BETA)
            ctx.save_for_backward(slope.masked_fill_((z < 0) | (z > 1), 0.0))
        return z.clamp_(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None


def soft_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """The deterministic mask the paper evaluates with: clamp(sigmoid(log_alpha)*(zeta-gamma)+gamma)."""
    return stretch_and_clamp(torch.sigmoid(log_alpha))


def hard_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """The binarised mask: 1 where the deterministic mask is >= 0.5, else 0."""
    return (soft_mask(log_alpha) >= HARD_THRESHOLD).to(log_alpha.dtype)


def expected_l0(log_alpha: torch.Tensor) -> torch.Tensor:
    """Probability that each unit is non-zero: sigmoid(log_alpha - beta*log(-gamma/zeta))."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))
