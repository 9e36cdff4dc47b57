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


@oracle("class_balanced_ce")
def class_balanced_ce(z, y, cfg):
    counts, beta = cfg["class_counts"], cfg["beta"]
    if counts is None:
        w = [1.0] * len(z)
    else:
        raw = [1.0 if beta == 0 else (1 - beta) / (1 - beta ** float(n)) for n in counts]
        w = [len(z) * r / sum(raw) for r in raw]
    lp = log_softmax(z)
    return expect(lambda k: -w[k] * lp[k], y)
