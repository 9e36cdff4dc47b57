"""Plain-Python vector helpers for the embedding oracles (no torch, no losslab)."""

from __future__ import annotations

import math


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(a):
    return math.sqrt(dot(a, a))


def unit(a):
    n = max(norm(a), 1e-12)
    return [x / n for x in a]


def sqdist(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def lse(values):
    values = list(values)
    if not values:
        return -math.inf
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def log1p_sum_exp(values):
    """log(1 + sum exp(v))."""
    return lse([0.0, *values])


def flat(views, labels, keep=None):
    """Rows (view vectors), their labels, sample indices and keep flags, sample-major."""
    rows, ys, owner, kept = [], [], [], []
    for i, sample in enumerate(views):
        for v in sample:
            rows.append(list(v))
            ys.append(labels[i])
            owner.append(i)
            kept.append(True if keep is None else keep[i])
    return rows, ys, owner, kept


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
