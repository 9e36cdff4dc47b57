"""Oracles of the noise-robust family (MSE, RCE, SCE, truncated GCE, RLL, JS).

Written from the papers' formulas. For losses defined on distributions (MSE, RCE, SCE's
RCE part, JS) a soft target enters the formula directly; for the others a soft target is
the expectation of the index-target loss.
"""

from __future__ import annotations

import math

from tests.reference.base import expect, log_softmax, oracle, softmax


def _as_dist(y: int | list[float], c: int) -> list[float]:
    if isinstance(y, int):
        return [1.0 if k == y else 0.0 for k in range(c)]
    return list(y)


def _rce(p: list[float], q: list[float]) -> float:
    # The official code defines log 0 through the clamp max(q, 1e-4).
    return -sum(pk * math.log(max(qk, 1e-4)) for pk, qk in zip(p, q, strict=True))


@oracle("mse")
def mse(z, y, cfg):
    p = softmax(z)
    q = _as_dist(y, len(z))
    return sum((pk - qk) ** 2 for pk, qk in zip(p, q, strict=True))


@oracle("rce")
def rce(z, y, cfg):
    return _rce(softmax(z), _as_dist(y, len(z)))


@oracle("sce")
def sce(z, y, cfg):
    lp = log_softmax(z)
    ce = expect(lambda k: -lp[k], y)
    return cfg["alpha"] * ce + cfg["beta"] * _rce(softmax(z), _as_dist(y, len(z)))


@oracle("tgce")
def tgce(z, y, cfg):
    # At the initial state every example is kept: plain L_q of the label's probability.
    p = softmax(z)
    return (1 - p[y] ** cfg["q"]) / cfg["q"]


@oracle("tgce_stateless")
def tgce_stateless(z, y, cfg):
    p = softmax(z)
    q, k = cfg["q"], cfg["k"]

    def per(j):
        # The paper's case split: L_q(p_y) above the threshold, L_q(k) at or below it.
        return (1 - p[j] ** q) / q if p[j] > k else (1 - k**q) / q

    return expect(per, y)


@oracle("rll")
def rll(z, y, cfg):
    p = softmax(z)
    a, c = cfg["alpha"], len(z)

    def per(k):
        others = sum(math.log(a + p[j]) for j in range(c) if j != k)
        return -math.log(a + p[k]) + others / (c - 1)

    return expect(per, y)


@oracle("jsc")
def jsc(z, y, cfg):
    p = softmax(z)
    q = _as_dist(y, len(z))
    pi = cfg["pi"]
    m = [pi * qk + (1 - pi) * pk for qk, pk in zip(q, p, strict=True)]

    def kl(a, b):
        return sum(ak * math.log(ak / bk) for ak, bk in zip(a, b, strict=True) if ak > 0)

    js = pi * kl(q, m) + (1 - pi) * kl(p, m)
    return js / (-(1 - pi) * math.log(1 - pi))
