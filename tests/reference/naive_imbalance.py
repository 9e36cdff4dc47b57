"""Oracles of the imbalance family: cross-entropy of adjusted logits, one sample at a time."""

from __future__ import annotations

import math

from tests.reference.base import expect, log_softmax, oracle


def _adjusted_ce(z, y, offsets):
    lp = log_softmax([v + o for v, o in zip(z, offsets, strict=True)])
    return expect(lambda k: -lp[k], y)


@oracle("balanced_softmax")
def balanced_softmax(z, y, cfg):
    counts = cfg["class_counts"]
    offsets = [0.0] * len(z) if counts is None else [math.log(float(n)) for n in counts]
    return _adjusted_ce(z, y, offsets)


@oracle("logit_adjusted")
def logit_adjusted(z, y, cfg):
    priors = cfg["priors"]
    if priors is None:
        offsets = [0.0] * len(z)
    else:
        offsets = [cfg["tau"] * math.log(float(p)) for p in priors]
    return _adjusted_ce(z, y, offsets)
