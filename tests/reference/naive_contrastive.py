"""Oracles of the contrastive family (per-sample values, ``None`` where a sample does not
count), from the papers' formulas with the official codes' conventions."""

from __future__ import annotations

import math

from tests.reference._embedding_math import dot, flat, lse, mean, sqdist, unit
from tests.reference.base import oracle


def _sims(views, labels, tau):
    rows, ys, owner, _ = flat(views, labels)
    e = [unit(r) for r in rows]
    s = [[dot(a, b) / tau for b in e] for a in e]
    return s, ys, owner


@oracle("ntxent")
@oracle("infonce")
def ntxent(views, labels, cfg):
    s, ys, owner = _sims(views, labels, cfg["temperature"])
    m = len(s)
    per_row = []
    for i in range(m):
        pos = [j for j in range(m) if j != i and ys[j] == ys[i]]
        neg = [s[i][j] for j in range(m) if ys[j] != ys[i]]
        per_row.append(mean(lse([s[i][p], *neg]) - s[i][p] for p in pos) if pos else None)
    out = []
    for i in range(len(views)):
        vals = [v for v, o in zip(per_row, owner, strict=True) if o == i]
        out.append(None if all(v is None for v in vals) else mean(v or 0.0 for v in vals))
    return out


@oracle("supcon")
def supcon(views, labels, cfg):
    s, ys, owner = _sims(views, labels, cfg["temperature"])
    m = len(s)
    factor = cfg["temperature"] / cfg["base_temperature"]
    per_row = []
    for i in range(m):
        denom = lse(s[i][j] for j in range(m) if j != i)
        pos = [j for j in range(m) if j != i and ys[j] == ys[i]]
        per_row.append(-factor * mean(s[i][p] - denom for p in pos) if pos else 0.0)
    return [
        mean(v for v, o in zip(per_row, owner, strict=True) if o == i) for i in range(len(views))
    ]


def _label_ce(logits, labels):
    n = len(logits)
    out = []
    for i in range(n):
        cols = [j for j in range(n) if labels[j] == labels[i]]
        z = lse(logits[i])
        out.append(-mean(logits[i][j] - z for j in cols))
    return out


def _cross(views, tau):
    x = [unit(v[0]) for v in views]
    t = [unit(v[1]) for v in views]
    return x, t, [[dot(a, b) / tau for b in t] for a in x]


@oracle("clip")
def clip(views, labels, cfg):
    _, _, logits = _cross(views, cfg["temperature"])
    cols = [list(c) for c in zip(*logits, strict=True)]
    return [
        0.5 * (a + b)
        for a, b in zip(_label_ce(logits, labels), _label_ce(cols, labels), strict=True)
    ]


@oracle("cwcl")
def cwcl(views, labels, cfg):
    p, _, logits = _cross(views, cfg["temperature"])
    n = len(p)
    w = [[0.5 * dot(p[i], p[j]) + 0.5 for j in range(n)] for i in range(n)]

    def weighted(rows):
        out = []
        for i in range(n):
            z = lse(rows[i])
            out.append(-sum(w[i][j] * (rows[i][j] - z) for j in range(n)) / sum(w[i]))
        return out

    cols = [list(c) for c in zip(*logits, strict=True)]
    fwd = weighted(logits)
    rev = weighted(cols) if cfg["reverse"] == "cwcl" else _label_ce(cols, labels)
    return [0.5 * (a + b) for a, b in zip(fwd, rev, strict=True)]


@oracle("barlow_twins")
def barlow_twins(views, labels, cfg):
    n = len(views)
    if n < 2:
        return [None] * n
    dim = len(views[0][0])

    def standardise(which):
        cols = []
        for k in range(dim):
            col = [views[i][which][k] for i in range(n)]
            mu = sum(col) / n
            var = sum((c - mu) ** 2 for c in col) / n
            cols.append([(c - mu) / math.sqrt(var + 1e-5) for c in col])
        return cols

    a, b = standardise(0), standardise(1)
    loss = 0.0
    for i in range(dim):
        for j in range(dim):
            c = sum(x * y for x, y in zip(a[i], b[j], strict=True)) / n
            loss += (1 - c) ** 2 if i == j else cfg["lambd"] * c * c
    return [loss] * n


@oracle("cacr")
def cacr(views, labels, cfg):
    z = [[unit(v) for v in sample] for sample in views]
    n, v = len(z), len(z[0])
    out = []
    for i in range(n):
        attraction = 0.0
        for x in range(v):
            costs = [sqdist(z[i][x], z[i][u]) for u in range(v) if u != x]
            logits = [cfg["tau_pos"] * c for c in costs]
            norm_ = lse(logits)
            attraction += sum(
                math.exp(g - norm_) * cfg["alpha"] * c for g, c in zip(logits, costs, strict=True)
            )
        attraction /= v
        repulsion, pairs = 0.0, 0
        negs = [j for j in range(n) if labels[j] != labels[i]]
        for x in range(v):
            for y in range(x + 1, v):
                pairs += 1
                if not negs:
                    continue
                costs = [sqdist(z[i][x], z[j][y]) for j in negs]
                logits = [-cfg["tau_neg"] * c for c in costs]
                norm_ = lse(logits)
                repulsion -= sum(
                    math.exp(g - norm_) * cfg["beta"] * c
                    for g, c in zip(logits, costs, strict=True)
                )
        out.append(attraction + repulsion / pairs)
    return out
