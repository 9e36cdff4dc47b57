"""Sample inputs of the embedding kind: two views per sample ``(n, 2, c)`` (the second a
perturbed copy of the first) and labels with repeats, so every loss sees positives and
negatives."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler


@sampler("embedding")
def embedding(seed, n, c, *, dtype, scale, extra):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, c, generator=g, dtype=F64)
    views = torch.cat([x, x + 0.5 * torch.randn(n, 1, c, generator=g, dtype=F64)], dim=1)
    labels = torch.randint(max(1, n // 2), (n,), generator=g)
    return (views * scale).to(dtype), labels
