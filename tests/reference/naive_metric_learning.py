"""Oracles of the metric-learning family, from the papers' formulas and the official code's
conventions. Embedding oracles take ``(views, labels, cfg)`` (``views``: N samples, each a
list of V vectors) and return one value per sample, ``None`` for a sample that does not
count."""

from __future__ import annotations

import math

from tests.reference._embedding_math import dot, flat, log1p_sum_exp, mean, sqdist, unit
from tests.reference.base import oracle


@oracle("multi_similarity")
def multi_similarity(views, labels, cfg, pairs=None):
    rows, ys, owner, _ = flat(views, labels)
    e = [unit(r) for r in rows]
    m = len(e)
    a, b, lam, eps = cfg["alpha"], cfg["beta"], cfg["base"], cfg["epsilon"]
    per_row = []
    for i in range(m):
        s = [dot(e[i], e[j]) for j in range(m)]
        if pairs is not None:
            pos = [p for a1, p in zip(pairs[0], pairs[1], strict=True) if a1 == i]
            neg = [n for a2, n in zip(pairs[2], pairs[3], strict=True) if a2 == i]
        else:
            pos = [j for j in range(m) if j != i and ys[j] == ys[i]]
            neg = [j for j in range(m) if ys[j] != ys[i]]
            if eps is not None:
                hard_pos = min((s[j] for j in pos), default=math.inf)
                hard_neg = max((s[j] for j in neg), default=-math.inf)
                pos, neg = (
                    [j for j in pos if s[j] < hard_neg + eps],
                    [j for j in neg if s[j] > hard_pos - eps],
                )
        loss = log1p_sum_exp([-a * (s[j] - lam) for j in pos]) / a
        loss += log1p_sum_exp([b * (s[j] - lam) for j in neg]) / b
        per_row.append(loss)
    return [
        mean(v for v, o in zip(per_row, owner, strict=True) if o == i) for i in range(len(views))
    ]


def _d(x, y):
    return math.sqrt(sqdist(x, y) + 1e-6)


@oracle("proto_triplet")
def proto_triplet(views, labels, cfg, support=None):
    n = len(views)
    sup = [True] * n if support is None else list(support)
    queries = [True] * n if support is None else [not s for s in sup]
    protos = {}
    for c in set(labels):
        pts = [v for i in range(n) if labels[i] == c and sup[i] for v in views[i]]
        if pts:
            protos[c] = [sum(col) / len(pts) for col in zip(*pts, strict=True)]
    out = []
    for i in range(n):
        y = labels[i]
        others = [c for c in protos if c != y]
        if not queries[i] or y not in protos or not others:
            out.append(None)
            continue
        vals = []
        for q in views[i]:
            d_pos = _d(q, protos[y])
            d_neg = min(_d(q, protos[c]) for c in others)
            vals.append(max(0.0, d_pos - d_neg + cfg["margin"]))
        out.append(mean(vals))
    return out


def icnn_score(x, y, target, y_target, k, ipc):
    """The official modified_score, step by step on lists."""
    eps = 1e-7
    size = len(target)
    k = size - 2 if k + 2 >= size else k
    ipc = k + 1 if ipc is None else ipc
    near, cls = [], []
    for i in range(len(x)):
        order = sorted(range(size), key=lambda j, i=i: _d(x[i], target[j]))[: ipc + 1][1:]
        near.append([_d(x[i], target[j]) for j in order])
        cls.append([y_target[j] == y[i] for j in order])
    sc_sum, sc_has, dc_vals, dc_has = 0.0, 0, [], 0
    gamma_num = 0.0
    dc_raw = []
    for i in range(len(x)):
        others = [d for d, same in zip(near[i], cls[i], strict=True) if not same]
        r = min(others) if others else math.inf
        nd = [d / (r + eps) for d in near[i][:k]]
        scale = max(1.0, max(nd, default=0.0))
        nd = [v / scale for v in nd]
        same_k = cls[i][:k]
        count = sum(same_k)
        sc_sum += sum(v for v, s in zip(nd, same_k, strict=True) if s) / (count + eps)
        sc_has += count > 0
        gamma_num += count / k if k else 0.0
        dc_raw.append([d if not s else 0.0 for d, s in zip(near[i][:k], same_k, strict=True)])
    top = max((v for row in dc_raw for v in row), default=0.0)
    any_dc = False
    for i, row in enumerate(dc_raw):
        diff = [not s for s in cls[i][:k]]
        count = sum(diff)
        any_dc |= count > 0
        dc_vals.append(sum(v / (top + eps) for v in row) / (count + eps))
        dc_has += count > 0
    lam_sc = 1 - sc_sum / (sc_has + eps)
    lam_dc = sum(dc_vals) / (dc_has + eps)
    lam_dc = abs(lam_dc + (0 if any_dc else -1))
    gamma = gamma_num / len(x) if k + 2 < size else 1.0
    return ((lam_sc + lam_dc) / 2 + gamma) / 2


@oracle("icnn")
def icnn(views, labels, cfg, support=None):
    rows, ys, owner, _ = flat(views, labels)
    if support is None:
        q, qy, t, ty = rows, ys, rows, ys
    else:
        q = [r for r, o in zip(rows, owner, strict=True) if not support[o]]
        qy = [c for c, o in zip(ys, owner, strict=True) if not support[o]]
        t = [r for r, o in zip(rows, owner, strict=True) if support[o]]
        ty = [c for c, o in zip(ys, owner, strict=True) if support[o]]
    psi = icnn_score(q, qy, t, ty, cfg["k"], cfg["ipc"])
    return [-math.log(max(psi, 1e-7))] * len(views)
