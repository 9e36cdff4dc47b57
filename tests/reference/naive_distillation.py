"""Oracles of the distillation kind: ``REFERENCE[name](s, t, y, cfg)`` for one element
(``s``, ``t`` lists of student and teacher logits, ``y`` an int class or None)."""

from __future__ import annotations

import math

from tests.reference.base import log_softmax, oracle, softmax


@oracle("kd")
def kd(s, t, y, cfg):
    temp, alpha = cfg["temperature"], cfg["alpha"]
    q = softmax([v / temp for v in t])
    log_p = log_softmax([v / temp for v in s])
    kl = sum(qk * (math.log(qk) - lp) for qk, lp in zip(q, log_p, strict=True) if qk > 0)
    loss = alpha * temp * temp * kl
    if alpha < 1:
        loss += (1 - alpha) * -log_softmax(s)[y]
    return loss
