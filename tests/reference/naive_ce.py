"""Oracles of the cross-entropy and comp-sum families."""

from __future__ import annotations

import math

from tests.reference.base import expect, log_softmax, oracle, softmax


@oracle("ce")
def ce(z, y, cfg):
    lp = log_softmax(z)
    eps = cfg["label_smoothing"]
    return expect(lambda k: -lp[k], y) * (1 - eps) - eps * sum(lp) / len(z)


@oracle("focal")
def focal(z, y, cfg):
    p = softmax(z)
    lp = log_softmax(z)
    alpha = cfg["alpha"]

    def a(k):
        if alpha is None:
            return 1.0
        return float(alpha) if isinstance(alpha, (int, float)) else float(alpha[k])

    return expect(lambda k: -a(k) * (1 - p[k]) ** cfg["gamma"] * lp[k], y)


def _comp_sum(z, y, tau):
    # Phi^tau(u) with u = sum_{k != y} exp(z_k - z_y), straight from the paper's definition.
    def per(k):
        u = sum(math.exp(z[j] - z[k]) for j in range(len(z)) if j != k)
        if tau == 1.0:
            return math.log1p(u)
        return ((1 + u) ** (1 - tau) - 1) / (1 - tau)

    return expect(per, y)


@oracle("comp_sum")
def comp_sum(z, y, cfg):
    return _comp_sum(z, y, cfg["tau"])


@oracle("sum_exp")
def sum_exp(z, y, cfg):
    return _comp_sum(z, y, 0.0)


@oracle("gce")
def gce(z, y, cfg):
    p = softmax(z)
    return expect(lambda k: (1 - p[k] ** cfg["q"]) / cfg["q"], y)


@oracle("mae")
def mae(z, y, cfg):
    p = softmax(z)
    return expect(lambda k: 1 - p[k], y)


@oracle("poly1")
def poly1(z, y, cfg):
    p, lp = softmax(z), log_softmax(z)
    return expect(lambda k: -lp[k] + cfg["epsilon"] * (1 - p[k]), y)
