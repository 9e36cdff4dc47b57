"""Sample inputs of the regression kind: predictions ``(n, c, *extra)`` (c outputs) and
real targets of the same shape."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler


@sampler("regression")
def regression(seed, n, c, *, dtype, scale, extra):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
    pred = target + torch.randn(n, c, *extra, generator=g, dtype=F64)
    return pred.to(dtype), target.to(dtype)
