"""Sample inputs of the bag kind: ``n`` bags of 1-3 instances with ``c`` outputs each,
shuffled instances, and binary responses (fractions of positives) ``(n, c)``."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler


@sampler("bag")
def bag(seed, n, c, *, dtype, scale, extra):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 4, (n,), generator=g)
    bag_index = torch.repeat_interleave(torch.arange(n), sizes)
    bag_index = bag_index[torch.randperm(len(bag_index), generator=g)]
    scores = torch.randn(len(bag_index), c, generator=g, dtype=F64) * scale
    labels = torch.randint(2, (len(bag_index), c), generator=g).to(F64)
    target = torch.zeros(n, c, dtype=F64).index_add(0, bag_index, labels) / sizes[:, None]
    return scores.to(dtype), bag_index, target.to(dtype)
