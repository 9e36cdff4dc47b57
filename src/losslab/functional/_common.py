"""Building blocks shared by the functional losses (numerics, not validation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def one_minus_exp(logp: Tensor) -> Tensor:
    """``1 - exp(logp)`` without cancellation, clamped to the smallest normal float.

    The clamp keeps ``(1 - p) ** gamma`` differentiable at ``p == 1`` for ``gamma < 1``.
    """
    return (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)


def expm1_linear_tail(x: Tensor) -> Tensor:
    """``expm1(x)``, continued linearly (value and slope) above ``log(finfo.max) / 2``.

    Exponential losses such as sum-exp grow like ``1/p_y`` and overflow for logit gaps
    above ~88 in float32; past the threshold (where the loss already exceeds ~1e19 in
    float32) the tail is linear, so values and gradients stay finite and non-zero for
    logit gaps far beyond 1e4 and a mean over a batch cannot overflow either.
    """
    thresh = math.log(torch.finfo(x.dtype).max) / 2
    head = torch.expm1(x.clamp_max(thresh))
    slope = torch.exp(torch.tensor(thresh, dtype=x.dtype, device=x.device))
    return torch.where(x > thresh, head + slope * (x - thresh), head)
