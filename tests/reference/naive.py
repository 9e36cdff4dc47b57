"""Naive per-sample loop oracles, written from the papers' formulas with the math module.

``REFERENCE[name](z, y, cfg)`` returns the loss of one sample: ``z`` a list of floats,
``y`` an int class (index target) or a list of probabilities (soft target, only for
losses that accept them), ``cfg`` the full hyperparameter dict. Nothing here imports
losslab, so an error in the library cannot leak into its oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Oracle = Callable[[list[float], "int | list[float]", dict], float]
REFERENCE: dict[str, Oracle] = {}


def oracle(name: str) -> Callable[[Oracle], Oracle]:
    def deco(fn: Oracle) -> Oracle:
        REFERENCE[name] = fn
        return fn

    return deco


def softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def log_softmax(z: list[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def expect(per_class: Callable[[int], float], y: int | list[float]) -> float:
    """Loss at an index target, or its expectation under a soft target."""
    if isinstance(y, int):
        return per_class(y)
    return sum(q * per_class(k) for k, q in enumerate(y) if q > 0)


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
