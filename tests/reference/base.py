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


#: Set-level losses (an element's loss depends on the rest of the batch) and what their
#: oracles support. Their oracle takes the whole batch of valid elements at once, with
#: the element weights, and returns each element's value before the reduction's weight:
#:
#: * binary: ``REFERENCE[name](xs, ts, cfg, ws, pws, extras)`` (flat lists of logits,
#:   targets in [0, 1], element weights, pos_weights);
#: * multiclass: ``REFERENCE[name](zs, ys, cfg, ws, extras)`` (``zs`` rows of logits,
#:   ``ys`` int classes or probability rows);
#: * regression: ``REFERENCE[name](preds, targets, cfg, ws, extras)``.
#:
#: ``extras`` holds the loss's extra inputs as plain Python values (empty for defaults).
SET_LEVEL: dict[str, dict[str, bool]] = {}


def set_oracle(name: str, *, pos_weight: bool = True) -> Callable[[Callable], Callable]:
    """Register the batch oracle of a set-level loss; ``pos_weight=False`` when the loss
    rejects ``pos_weight`` (binary kind)."""

    def deco(fn: Callable) -> Callable:
        REFERENCE[name] = fn
        SET_LEVEL[name] = {"pos_weight": pos_weight}
        return fn

    return deco


def one_hot_or_probs(y: int | list[float], c: int) -> list[float]:
    return [1.0 if k == y else 0.0 for k in range(c)] if isinstance(y, int) else list(y)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
