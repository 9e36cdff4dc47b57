"""Oracles of DEXML's decoupled softmax and soft top-k, per query ``(z, y, cfg)``: ``y`` a
class index or probabilities over the positives."""

from __future__ import annotations

import decimal
import math
from decimal import Decimal

from tests.reference._embedding_math import lse, sigmoid
from tests.reference.base import oracle


def _target(y, c):
    return [1.0 if k == y else 0.0 for k in range(c)] if isinstance(y, int) else list(y)


@oracle("decoupled_softmax")
def decoupled_softmax(z, y, cfg):
    s = [v / cfg["temperature"] for v in z]
    q = _target(y, len(z))
    neg = [s[k] for k in range(len(s)) if q[k] == 0]
    return -sum(q[j] * (s[j] - lse([s[j], *neg])) for j in range(len(s)) if q[j] > 0)


def topk_threshold(s, k, alpha):
    """t with sum sigmoid(alpha (s + t)) = k, by bisection in 150-digit decimals: the
    sum can sit within 1e-100 of k, far below a float's resolution; 110 halvings bring
    the bracket below float64's resolution of t."""
    with decimal.localcontext() as ctx:
        ctx.prec = 150
        a = Decimal(alpha)
        vals = [Decimal(v) for v in s]
        lo, hi = -max(vals) - 50 / a, -min(vals) + 50 / a
        for _ in range(110):
            mid = (lo + hi) / 2
            if sum(1 / (1 + (-a * (v + mid)).exp()) for v in vals) > k:
                hi = mid
            else:
                lo = mid
        return float((lo + hi) / 2)


@oracle("soft_topk")
def soft_topk(z, y, cfg):
    if cfg["k"] >= len(z):
        return 0.0
    s = [v / cfg["temperature"] for v in z]
    a = cfg["alpha"]
    t = topk_threshold(s, cfg["k"], a)
    q = _target(y, len(z))
    return -sum(q[j] * math.log(sigmoid(a * (s[j] + t))) for j in range(len(s)) if q[j] > 0)
