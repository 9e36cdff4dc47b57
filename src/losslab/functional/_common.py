"""Building blocks shared by the functional losses (numerics, not validation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def z_score(deviation: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """The Z-loss's standardised score ``deviation / max(sigma, eps)``.

    The one definition of the floor, shared by the Z-loss's fused rows, its soft-target
    path and the spherical output layer: rows with ``sigma >= eps`` get the exact,
    scale-invariant score; flatter rows are divided by ``eps``, which bounds the gradient.
    """
    return deviation / torch.where(sigma > eps, sigma, eps)


def one_minus_exp(logp: Tensor) -> Tensor:
    """``1 - exp(logp)`` with no cancellation beyond that of ``logp``, clamped to the
    smallest normal float. (Of a ``log_softmax``, ``logp`` itself has the float's absolute
    resolution near ``p = 1``: the normaliser rounds to 1 before its log is taken.)

    The clamp keeps ``(1 - p) ** gamma`` differentiable at ``p == 1`` for ``gamma < 1``.
    """
    return (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)


#: Exponential losses are exact while ``exp(x) <= e^TAIL_START`` (e.g. sum-exp up to
#: ``1/p_y`` of about 9e6) and continue linearly past it (see :func:`expm1_linear_tail`).
TAIL_START = 16.0


def tail_start(input_dtype: torch.dtype) -> float:
    """Where the linear tail starts for logits of ``input_dtype``.

    The gradient returns in the input's dtype, so for float16 the tail starts where the
    gradient would leave float16's range (``log(65504) - log 4``, about 9.7).
    """
    return min(TAIL_START, math.log(torch.finfo(input_dtype).max) - math.log(4.0))


def expm1_linear_tail(x: Tensor, start: float = TAIL_START) -> Tensor:
    """``expm1(x)``, continued linearly (value and slope) above ``start``.

    Exponential losses such as sum-exp grow like ``1/p_y`` and overflow for logit gaps
    above ~88 in float32. The linear tail keeps values and gradients finite and non-zero
    for logit gaps up to 1e30 and beyond (a linear continuation of a convex function is
    convex), and keeps a mean over a batch from overflowing.
    """
    head = torch.expm1(x.clamp_max(start))
    return torch.where(x > start, head + math.exp(start) * (x - start), head)
