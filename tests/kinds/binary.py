"""Sample inputs of the binary kind: scores ``(n, c, *extra)`` (c labels) and 0/1 labels."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler


@sampler("binary")
def binary(seed, n, c, *, dtype, scale, extra):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
    return x.to(dtype), torch.randint(2, (n, c, *extra), generator=g)
