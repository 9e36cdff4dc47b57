"""Oracles of the active-passive family (NCE, AGCE, AUL and their NCE sums)."""

from __future__ import annotations

import math

from tests.reference.base import expect, log_softmax, oracle, softmax


def _nce(z, y):
    lp = log_softmax(z)
    return expect(lambda k: -lp[k], y) / -sum(lp)


def _rce(z, y):
    p = softmax(z)
    q = [1.0 if k == y else 0.0 for k in range(len(z))] if isinstance(y, int) else y
    return -sum(pk * math.log(max(qk, 1e-4)) for pk, qk in zip(p, q, strict=True))


def _agce(z, y, a, q):
    p = softmax(z)
    return expect(lambda k: ((a + 1) ** q - (a + p[k]) ** q) / q, y)


def _aul(z, y, a, q):
    p = softmax(z)
    return expect(lambda k: ((a - p[k]) ** q - (a - 1) ** q) / q, y)


@oracle("nce")
def nce(z, y, cfg):
    return _nce(z, y)


@oracle("nce_rce")
def nce_rce(z, y, cfg):
    return cfg["alpha"] * _nce(z, y) + cfg["beta"] * _rce(z, y)


@oracle("agce")
def agce(z, y, cfg):
    return _agce(z, y, cfg["a"], cfg["q"])


@oracle("aul")
def aul(z, y, cfg):
    return _aul(z, y, cfg["a"], cfg["q"])


@oracle("nce_agce")
def nce_agce(z, y, cfg):
    return cfg["alpha"] * _nce(z, y) + cfg["beta"] * _agce(z, y, cfg["a"], cfg["q"])


@oracle("nce_aul")
def nce_aul(z, y, cfg):
    return cfg["alpha"] * _nce(z, y) + cfg["beta"] * _aul(z, y, cfg["a"], cfg["q"])
