"""Schedules of the paper: lambda ramp and linear learning-rate warm-up."""

from __future__ import annotations

import math


def lambda_at(step: int, total_steps: int, lambda_max: float, start: float = 0.25, end: float = 0.75) -> float:
    """0 until ``start`` of training, linear to ``lambda_max`` at ``end``, then constant."""
    if total_steps <= 0:
        return lambda_max
    frac = step / total_steps
    if frac < start:
        return 0.0
    if frac >= end or end == start:
        return lambda_max
    return lambda_max * (frac - start) / (end - start)


def constraint_ramp(step: int, total_steps: int, start: float = 0.25, end: float = 0.75) -> float | None:
    """``--target-density``: None (no constraint) before ``start`` of training, then the position (0 .. 1) of
    the density target on its way from the density at ``start`` to the target at ``end``: the constraint
    comes in over the same ramp as lambda."""
    if total_steps > 0 and step / total_steps < start:
        return None
    return lambda_at(step, total_steps, 1.0, start, end)


def warmup_factor(step: int, total_steps: int, warmup: float) -> float:
    """Learning-rate multiplier: linear from 1/W to 1 over the first W = warmup*total steps."""
    warm = int(warmup * total_steps)
    if warm <= 0 or step >= warm:
        return 1.0
    return (step + 1) / warm


def ramp_end_step(total_steps: int, end: float) -> int:
    """First step at which lambda has reached its maximum: the smallest ``s`` with ``s / total >= end``,
    the comparison :func:`lambda_at` makes (rounding ``end * total`` could land a step early)."""
    if total_steps <= 0:
        return 0
    step = max(0, math.ceil(end * total_steps) - 1)  # one below: end * total may be rounded up (0.7 * 10)
    while step / total_steps < end:
        step += 1
    return step
