"""Sample inputs of the multiclass kind: logits ``(n, c, *extra)`` and class indices."""

from __future__ import annotations

from tests.helpers import seeded_logits
from tests.kinds import sampler


@sampler("multiclass")
def multiclass(seed, n, c, *, dtype, scale, extra):
    return seeded_logits(seed, n, c, scale, dtype=dtype, extra=extra)
