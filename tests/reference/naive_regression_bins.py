"""Oracles of the regression-as-classification losses (multiclass kind, ``C`` bins with
bin ``k`` centred at ``k``): ``REFERENCE[name](z, y, cfg)``; a probability target stands
for its mean position ``sum_k q_k k``."""

from __future__ import annotations

import math

from tests.reference.base import log_softmax, oracle


def _position(y: int | list[float]) -> float:
    if isinstance(y, int):
        return float(y)
    return sum(k * q for k, q in enumerate(y))


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@oracle("hl_gauss")
def hl_gauss(z, y, cfg):
    u, s, c = _position(y), cfg["sigma"], len(z)
    total = _phi((c - 0.5 - u) / s) - _phi((-0.5 - u) / s)
    logp = log_softmax(z)
    loss = 0.0
    for i in range(c):
        p = (_phi((i + 0.5 - u) / s) - _phi((i - 0.5 - u) / s)) / total
        loss -= p * logp[i]
    return loss


@oracle("two_hot")
def two_hot(z, y, cfg):
    c = len(z)
    u = min(max(_position(y), 0.0), c - 1.0)
    j = min(math.floor(u), max(c - 2, 0))
    f = u - j
    logp = log_softmax(z)
    loss = -(1 - f) * logp[j]
    if f > 0:
        loss -= f * logp[j + 1]
    return loss
