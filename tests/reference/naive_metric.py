"""Oracles of the metric family (AnyLoss, MW): batch oracles, see ``SET_LEVEL`` in base.py."""

from __future__ import annotations

import math

from tests.reference.base import one_hot_or_probs, set_oracle, sigmoid, softmax, softplus


def _metric(name, beta, eps, tn, fp, fn, tp, y1, y0):
    """(value, defined) of AnyLoss's metrics from soft counts, written from the paper and
    the official notebooks."""
    if callable(name):
        return name(tn, fp, fn, tp), y1 + y0 > 0
    if name == "accuracy":
        return ((tp + tn) / (y1 + y0) if y1 + y0 > 0 else 0.0), y1 + y0 > 0
    if name in ("f1", "fbeta"):
        b2 = 1.0 if name == "f1" else beta * beta
        return (1 + b2) * tp / (b2 * y1 + tp + fp + eps), y1 > 0
    defined = y1 > 0 and y0 > 0
    if not defined:
        return 0.0, False
    if name == "gmean":
        return tp * tn / (y1 * y0 + eps), True
    if name == "gmean_sqrt":
        return math.sqrt(tp * tn / (y1 * y0)), True
    return (y0 * tp + y1 * tn) / (2 * y1 * y0 + eps), True


def _amplify(p, amplifier):
    return sigmoid(amplifier * (p - 0.5))


@set_oracle("anyloss")
def anyloss(xs, ts, cfg, ws, pws, extras):
    tn = fp = fn = tp = y1 = y0 = 0.0
    for x, t, w, pw in zip(xs, ts, ws, pws, strict=True):
        a = _amplify(sigmoid(x), cfg["amplifier"])
        pos, neg = w * pw * t, w * (1 - t)
        tp += pos * a
        fn += pos * (1 - a)
        fp += neg * a
        tn += neg * (1 - a)
        y1 += pos
        y0 += neg
    value, defined = _metric(cfg["metric"], cfg["beta"], cfg["eps"], tn, fp, fn, tp, y1, y0)
    # An undefined metric marks every element invalid: the suites see None.
    return [1 - value if defined else None] * len(xs)


@set_oracle("anyloss_macro")
def anyloss_macro(zs, ys, cfg, ws, extras):
    c = len(zs[0])
    values = []
    for k in range(c):
        tn = fp = fn = tp = y1 = y0 = 0.0
        for z, y, w in zip(zs, ys, ws, strict=True):
            a = _amplify(softmax(z)[k], cfg["amplifier"])
            yk = one_hot_or_probs(y, c)[k]
            pos, neg = w * yk, w * (1 - yk)
            tp += pos * a
            fn += pos * (1 - a)
            fp += neg * a
            tn += neg * (1 - a)
            y1 += pos
            y0 += neg
        value, defined = _metric(cfg["metric"], cfg["beta"], cfg["eps"], tn, fp, fn, tp, y1, y0)
        if defined:
            values.append(value)
    if not values:
        return [None] * len(zs)
    return [1 - sum(values) / len(values)] * len(zs)


@set_oracle("mw", pos_weight=False)
def mw(xs, ts, cfg, ws, pws, extras):
    """Mean over the other class's elements (weighted) of the pair loss, per element; the
    positive and negative parts of a probability target are its t and 1 - t."""
    tau = cfg["temperature"]
    pos = [w * t for w, t in zip(ws, ts, strict=True)]
    neg = [w * (1 - t) for w, t in zip(ws, ts, strict=True)]
    if sum(pos) <= 0 or sum(neg) <= 0:
        return [None] * len(xs)
    out = []
    for xk, tk in zip(xs, ts, strict=True):
        above = sum(neg[j] * softplus(-(xk - xs[j]) / tau) for j in range(len(xs))) / sum(neg)
        below = sum(pos[i] * softplus(-(xs[i] - xk) / tau) for i in range(len(xs))) / sum(pos)
        out.append(tk * above + (1 - tk) * below)
    return out
