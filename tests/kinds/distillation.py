"""Sample inputs of the distillation kind: student and teacher logits, class indices."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler


@sampler("distillation")
def distillation(seed, n, c, *, dtype, scale, extra):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
    t = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
    return s.to(dtype), t.to(dtype), torch.randint(c, (n, *extra), generator=g)
