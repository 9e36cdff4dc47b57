"""Oracles of the adaptive family (EnsLoss, Bias loss, Tri-BCE): batch oracles, see
``SET_LEVEL`` in base.py."""

from __future__ import annotations

import math
import statistics

from tests.reference.base import log_softmax, one_hot_or_probs, set_oracle, softplus

M32 = 0xFFFFFFFF


def _mix32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def stream_normal(key: int, k: int) -> float:
    """The k-th standard normal of the key's stream: a hashed Weyl sequence, inverted
    through the normal CDF."""
    u = (_mix32((k * 0x9E3779B9 + _mix32(key & M32)) & M32) + 0.5) / 2**32
    return statistics.NormalDist().inv_cdf(u)


@set_oracle("ensloss", pos_weight=False)
def ensloss(xs, ts, cfg, ws, pws, extras):
    key = extras.get("key", cfg["seed"])
    lam = cfg["lam"]
    margins = [(2 * t - 1) * x for x, t in zip(xs, ts, strict=True)]
    draws = []
    for k in range(len(xs)):
        g = stream_normal(key, k)
        if lam == 0:
            inv = math.exp(g)
        else:
            base = max(1 + lam * g, 0.0)
            inv = math.inf if base == 0 and lam < 0 else base ** (1 / lam)
        draws.append(-inv)
    slopes = [max(d, -1.0) for d in sorted(draws)]
    by_rank = sorted(range(len(xs)), key=lambda i: margins[i])
    out = [0.0] * len(xs)
    for r, i in enumerate(by_rank):
        s, c = margins[i], slopes[r]
        phi = c * (1 + math.log(s)) if s > 1 else c * s
        out[i] = phi - 1e-6 * s
    return out


def _variance(values):
    return statistics.variance(values)


@set_oracle("bias_loss")
def bias_loss(zs, ys, cfg, ws, extras):
    feats = extras.get("features")
    # Without a feature map every element has v = 0.
    var = [0.0] * len(zs) if feats is None else [_variance(f) for f in feats]
    lo, hi = min(var), max(var)
    m = lo
    if cfg["normalize"] == "global" and extras.get("variance_min") is not None:
        m = min(lo, extras["variance_min"])
    out = []
    for z, y, v in zip(zs, ys, var, strict=True):
        lp = log_softmax(z)
        q = one_hot_or_probs(y, len(z))
        ce = -sum(qk * lk for qk, lk in zip(q, lp, strict=True) if qk > 0)
        norm = (v - m) / (hi - lo) if hi > lo else 0.0
        out.append((math.exp(cfg["alpha"] * norm) - cfg["beta"]) * ce)
    return out


def _bce(x, t, pw):
    return pw * t * softplus(-x) + (1 - t) * softplus(x)


@set_oracle("tri_bce")
def tri_bce(xs, ts, cfg, ws, pws, extras):
    shallow = extras.get("shallow", xs)
    fused = [_bce((d + s) / 2, t, pw) for d, s, t, pw in zip(xs, shallow, ts, pws, strict=True)]
    deep = [_bce(d, t, pw) for d, t, pw in zip(xs, ts, pws, strict=True)]
    shal = [_bce(s, t, pw) for s, t, pw in zip(shallow, ts, pws, strict=True)]
    total = sum(ws)

    def mean(v):
        return sum(w * a for w, a in zip(ws, v, strict=True)) / total

    w_d = max(mean(deep) - mean(fused), 0.0)
    w_s = max(mean(shal) - mean(fused), 0.0)
    return [f + w_d * d + w_s * s for f, d, s in zip(fused, deep, shal, strict=True)]
