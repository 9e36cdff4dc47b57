"""Oracles of the sequence kind: ``REFERENCE[name](z, y, valid, cfg)`` for one sequence.

``z`` is a list of ``T`` lists of ``V`` floats (logits), ``y`` a list of ``T`` ints, ``valid``
a list of ``T`` bools (False: padding), ``cfg`` the hyperparameters (an ``embedding`` as a
list of ``V`` rows). Returns the per-token values the kind's ``reduction="none"`` gives
without weights: per-token losses, or a per-sequence loss divided evenly over the valid
tokens; 0 at padding.
"""

from __future__ import annotations

import math

from tests.reference.base import log_softmax, oracle, softmax


def _spread(value: float, valid: list[bool]) -> list[float]:
    n = sum(valid)
    return [value / n if v else 0.0 for v in valid]


def _cos(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


@oracle("emo")
def emo(z, y, valid, cfg):
    out = []
    for zt, yt, vt in zip(z, y, valid, strict=True):
        if not vt:
            out.append(0.0)
            continue
        p = softmax(zt)
        emb = cfg["embedding"]
        cos = [float(k == yt) if emb is None else _cos(emb[k], emb[yt]) for k in range(len(zt))]
        demd = sum(pk * (1 - ck) for pk, ck in zip(p, cos, strict=True))
        if cfg["exclude_target"]:
            demd += p[yt] * cos[yt]
        nll = -log_softmax(zt)[yt]
        if cfg["mode"] == 0:
            out.append(demd)
        elif cfg["mode"] == 1:
            ratio = nll / (demd + 1e-10)
            if cfg["max_ratio"] is not None:
                ratio = min(ratio, cfg["max_ratio"])
            out.append(0.5 * (nll + ratio * demd))
        else:
            out.append(demd / (nll + 1e-10) * nll + demd)
    return out


@oracle("eisl")
def eisl(z, y, valid, cfg):
    t = len(z)
    lo = cfg["min_log_prob"]
    lp = [log_softmax(zt) for zt in z]
    m = [[max(lp[i][y[j]], lo) if valid[j] else lo for j in range(t)] for i in range(t)]
    terms = []
    for n in cfg["ngrams"]:
        starts = [s for s in range(t - n + 1) if all(valid[s : s + n])]
        if not starts:
            continue
        total = 0.0
        for j in starts:
            g = {i: sum(m[i + k][j + k] for k in range(n)) / n for i in starts}
            w = softmax([g[i] / cfg["tau"] for i in starts])
            total += sum(wi * g[i] for wi, i in zip(w, starts, strict=True))
        terms.append(total / len(starts))
    if terms:
        value = -sum(terms) / len(terms)
    else:
        value = -sum(m[i][i] for i in range(t) if valid[i]) / sum(valid)
    return _spread(value, valid)


@oracle("dco")
def dco(z, y, valid, cfg):
    n = cfg["n"]
    log_p = sum(log_softmax(zt)[yt] for zt, yt, vt in zip(z, y, valid, strict=True) if vt)
    p = math.exp(log_p)
    # -log(1 - (1 - p)^N) with log1p/expm1; the oracles' inputs keep p far from underflow.
    miss = -math.expm1(n * math.log1p(-p))
    value = -math.log(miss)
    factor = n * (1 - p) ** (n - 1) * p / miss
    if factor < cfg["min_factor"]:
        return [0.0] * len(valid)
    return _spread(value, valid)
