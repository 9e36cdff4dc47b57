"""Oracles of the Dice family: per token for multi-class (``REFERENCE[name](z, y, cfg)``),
over the whole set for binary (batch oracles, see ``SET_LEVEL`` in base.py)."""

from __future__ import annotations

from tests.reference.base import one_hot_or_probs, oracle, set_oracle, sigmoid, softmax


def _ratio(num, den):
    return num / den if den > 0 else 1.0


def _token_dice(z, y, alpha, smooth, square):
    p = softmax(z)
    q = one_hot_or_probs(y, len(z))
    total = 0.0
    for pc, yc in zip(p, q, strict=True):
        pt = (1 - pc) ** alpha * pc
        den = (pt * pt + yc * yc if square else pt + yc) + smooth
        total += 1 - _ratio(2 * pt * yc + smooth, den)
    return total


@oracle("dice")
def dice(z, y, cfg):
    return _token_dice(z, y, 0.0, cfg["smooth"], cfg["square"])


@oracle("self_adjusting_dice")
def self_adjusting_dice(z, y, cfg):
    return _token_dice(z, y, cfg["alpha"], cfg["smooth"], cfg["square"])


@oracle("tversky")
def tversky(z, y, cfg):
    p = softmax(z)
    q = one_hot_or_probs(y, len(z))
    a, b, g = cfg["alpha"], cfg["beta"], cfg["smooth"]
    total = 0.0
    for pc, yc in zip(p, q, strict=True):
        tp = pc * yc
        total += 1 - _ratio(tp + g, tp + a * pc * (1 - yc) + b * (1 - pc) * yc + g)
    return total


def _set_dice(xs, ts, ws, pws, alpha, smooth, square):
    inter = pred = truth = 0.0
    for x, t, w, pw in zip(xs, ts, ws, pws, strict=True):
        p = sigmoid(x)
        pt = (1 - p) ** alpha * p  # 1 - p is exact enough at the test's logits
        pos, neg = w * pw * t, w * (1 - t)
        inter += pos * pt
        pred += (pos + neg) * (pt * pt if square else pt)
        truth += pos * (t if square else 1.0)
    loss = 1 - _ratio(2 * inter + smooth, pred + truth + smooth)
    return [loss] * len(xs)


@set_oracle("binary_dice")
def binary_dice(xs, ts, cfg, ws, pws, extras):
    return _set_dice(xs, ts, ws, pws, 0.0, cfg["smooth"], cfg["square"])


@set_oracle("binary_self_adjusting_dice")
def binary_self_adjusting_dice(xs, ts, cfg, ws, pws, extras):
    return _set_dice(xs, ts, ws, pws, cfg["alpha"], cfg["smooth"], cfg["square"])


@set_oracle("binary_tversky")
def binary_tversky(xs, ts, cfg, ws, pws, extras):
    tp = fp = fn = 0.0
    for x, t, w, pw in zip(xs, ts, ws, pws, strict=True):
        p = sigmoid(x)
        tp += w * pw * t * p
        fp += w * (1 - t) * p
        fn += w * pw * t * (1 - p)
    g = cfg["smooth"]
    loss = 1 - _ratio(tp + g, tp + cfg["alpha"] * fp + cfg["beta"] * fn + g)
    return [loss] * len(xs)
