"""Oracles of the hinge, LDR and spherical families."""

from __future__ import annotations

import math

from tests.reference.base import expect, oracle


def _gaps(z, y, c):
    return [c * (k != y) + z[k] - z[y] for k in range(len(z))]


@oracle("cs_svm")
def cs_svm(z, y, cfg):
    return max(max(0.0, a) for a in _gaps(z, y, cfg["margin"]))


@oracle("ww_svm")
def ww_svm(z, y, cfg):
    total = sum(max(0.0, a) for k, a in enumerate(_gaps(z, y, cfg["margin"])) if k != y)
    return total / len(z) if cfg["class_reduction"] == "mean" else total


def _normalize(z, how, eps):
    if how == "none":
        return list(z)
    if how == "softplus_mean":
        s = [math.log1p(math.exp(-abs(v))) + max(v, 0.0) for v in z]
        m = sum(s) / len(s)
        return [v / m for v in s]
    m = max(sum(abs(v) for v in z) / len(z), eps)
    return [v / m for v in z]


def _ldr(f, y, margin, lam):
    # The primal: max over the simplex of <p, a> - lam * KL(p || uniform), attained at
    # p = softmax(a / lam); evaluated as a primal value, not via the closed form.
    a = _gaps(f, y, margin)
    m = max(v / lam for v in a)
    e = [math.exp(v / lam - m) for v in a]
    p = [v / sum(e) for v in e]
    kl = sum(pk * math.log(pk * len(a)) for pk in p if pk > 0)
    return sum(pk * ak for pk, ak in zip(p, a, strict=True)) - lam * kl


@oracle("ldr_kl")
def ldr_kl(z, y, cfg):
    return _ldr(_normalize(z, cfg["normalize"], cfg["eps"]), y, cfg["margin"], cfg["temperature"])


@oracle("aldr_kl")
def aldr_kl(z, y, cfg):
    # Without a per-sample temperature, lambda_i = lambda_0 and the regulariser is 0.
    return _ldr(_normalize(z, cfg["normalize"], cfg["eps"]), y, cfg["margin"], cfg["temperature0"])


@oracle("z_loss")
def z_loss(z, y, cfg):
    n = len(z)
    mu = sum(z) / n
    sd = max(math.sqrt(sum((v - mu) ** 2 for v in z) / n), cfg["eps"])
    a, b = cfg["a"], cfg["b"]

    def per(k):
        x = a * (b - (z[k] - mu) / sd)
        return (max(x, 0.0) + math.log1p(math.exp(-abs(x)))) / a

    return expect(per, y)
