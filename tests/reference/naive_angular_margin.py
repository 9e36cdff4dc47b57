"""Oracles of the angular-margin family on cosine inputs ``(z, y, cfg)`` per sample, and a
batch oracle of UNPG with its generated negative pairs."""

from __future__ import annotations

import math

from tests.reference._embedding_math import dot, lse, unit
from tests.reference.base import oracle


def _theta(c):
    return math.acos(min(max(c, -1 + 1e-7), 1 - 1e-7))


def _ce(logits, y, extra=()):
    return lse([*logits, *extra]) - logits[y]


def _arc(c, m, fallback):
    t = _theta(c)
    if fallback and t + m > math.pi:
        return math.cos(t) - m * math.sin(m)
    return math.cos(t + m)


@oracle("arcface")
def arcface(z, y, cfg):
    logits = [cfg["scale"] * c for c in z]
    logits[y] = cfg["scale"] * _arc(z[y], cfg["margin"], cfg["fallback"])
    return _ce(logits, y)


@oracle("cosface")
def cosface(z, y, cfg):
    logits = [cfg["scale"] * c for c in z]
    logits[y] = cfg["scale"] * (z[y] - cfg["margin"])
    return _ce(logits, y)


@oracle("sphereface")
def sphereface(z, y, cfg):
    m = cfg["margin"]
    t = _theta(z[y])
    k = math.floor(m * t / math.pi)
    logits = [cfg["scale"] * c for c in z]
    logits[y] = cfg["scale"] * ((-1) ** k * math.cos(m * t) - 2 * k)
    return _ce(logits, y)


def _unpg_logits(z, y, cfg):
    logits = [cfg["scale"] * c for c in z]
    if cfg["margin_type"] == "arcface":
        logits[y] = cfg["scale"] * _arc(z[y], cfg["margin"], False)
    else:
        logits[y] = cfg["scale"] * (z[y] - cfg["margin"])
    return logits


@oracle("unpg")
def unpg(z, y, cfg):
    return _ce(_unpg_logits(z, y, cfg), y)


def tukey_filter(values, k):
    """The official box-and-whisker filter: quartiles at sorted[floor(q L)]."""
    if not values or k is None:
        return list(values)
    s = sorted(values)
    q1, q3 = s[int(0.25 * len(s))], s[int(0.75 * len(s))]
    iqr = q3 - q1
    return [v for v in values if q1 - k * iqr <= v <= q3 + k * iqr]


def unpg_batch(cos, ys, feats, cfg):
    """Per-sample UNPG losses with the batch's feature-pair negatives appended."""
    f = [unit(x) for x in feats]
    sn = [dot(f[i], f[j]) for i in range(len(f)) for j in range(i + 1, len(f)) if ys[i] != ys[j]]
    kept = tukey_filter(sn, cfg["whisker"])
    extra = [cfg["scale"] * t for t in kept]
    return [_ce(_unpg_logits(z, y, cfg), y, extra) for z, y in zip(cos, ys, strict=True)]
