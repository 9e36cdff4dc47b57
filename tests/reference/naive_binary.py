"""Oracles of the binary kind: ``REFERENCE[name](x, t, cfg, pos_weight)`` for one element
(``x`` a float logit, ``t`` a float target in [0, 1], ``pos_weight`` a float)."""

from __future__ import annotations

import math

from tests.reference.base import oracle


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@oracle("bce")
def bce(x, t, cfg, pos_weight=1.0):
    return -(pos_weight * t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x))


@oracle("binary_focal")
def binary_focal(x, t, cfg, pos_weight=1.0):
    # torchvision.ops.sigmoid_focal_loss, written out: p_t, alpha_t, (1 - p_t)^gamma * BCE.
    p = _sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    loss = bce(x, t, cfg, pos_weight) * (1 - p_t) ** cfg["gamma"]
    if cfg["alpha"] is not None:
        loss *= cfg["alpha"] * t + (1 - cfg["alpha"]) * (1 - t)
    return loss
