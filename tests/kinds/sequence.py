"""Sample inputs of the sequence kind: logits ``(n, T, c)`` over ``c`` tokens, token ids."""

from __future__ import annotations

import torch

from tests.kinds import F64, sampler

#: Positions per sequence when the caller gives none (``extra=(T,)`` overrides it).
LENGTH = 5


@sampler("sequence")
def sequence(seed, n, c, *, dtype, scale, extra):
    t = extra[0] if extra else LENGTH
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, t, c, generator=g, dtype=F64) * scale
    return z.to(dtype), torch.randint(c, (n, t), generator=g)
