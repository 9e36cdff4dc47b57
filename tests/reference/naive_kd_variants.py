"""Oracles of ``dhkd`` and ``pld`` (distillation kind): ``REFERENCE[name](s, t, y, cfg)``
for one element, as in ``naive_distillation.py``."""

from __future__ import annotations

import math

from tests.reference.base import oracle, softmax


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@oracle("dhkd")
def dhkd(s, t, y, cfg):
    temp = cfg["temperature"]
    total = 0.0
    for sk, tk in zip(s, t, strict=True):
        if cfg["normalize"]:
            # KL(Bern(1/2) || Bern(p)) with p = sigmoid((s - t) / T), written as two KL terms.
            d = (sk - tk) / temp
            total += 0.5 * (math.log(0.5) - _log_sigmoid(d)) + 0.5 * (
                math.log(0.5) - _log_sigmoid(-d)
            )
        else:
            a, b = tk / temp, sk / temp
            pt = math.exp(_log_sigmoid(a))
            total += pt * (_log_sigmoid(a) - _log_sigmoid(b)) + (1 - pt) * (
                _log_sigmoid(-a) - _log_sigmoid(-b)
            )
    return cfg["alpha"] * temp * temp * total


@oracle("pld")
def pld(s, t, y, cfg):
    q = softmax([v / cfg["temperature"] for v in t])
    others = sorted((k for k in range(len(t)) if k != y), key=lambda k: (-t[k], k))
    order = [y, *others]
    loss = 0.0
    for i, k in enumerate(order):
        rest = [s[m] for m in order[i:]]
        top = max(rest)
        lse = top + math.log(sum(math.exp(v - top) for v in rest))
        loss += q[k] * (lse - s[k])
    return loss
