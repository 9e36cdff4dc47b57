"""Naive per-sample loop oracles, written from the papers' formulas with the math module.

``REFERENCE[name](z, y, cfg)`` returns the loss of one sample: ``z`` a list of floats,
``y`` an int class (index target) or a list of probabilities (soft target, only for
losses that accept them), ``cfg`` the full hyperparameter dict. Nothing here imports
losslab, so an error in the library cannot leak into its oracle. One file per family
(``naive_<family>.py``) registers its oracles with :func:`oracle`.
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
