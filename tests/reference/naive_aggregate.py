"""Oracles of the bag kind: ``REFERENCE[name](scores, bags, target, cfg)`` for all
elements: ``scores`` a list of per-instance lists (``K`` outputs), ``bags`` a list of bag
ids, ``target`` a list of per-bag lists (responses, or class proportions). Returns the
per-element losses as a list of lists ``(B, K)``, or a list ``(B,)`` for multiclass."""

from __future__ import annotations

import math

from tests.reference.base import log_softmax, oracle, softmax


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _members(bags: list[int], a: int) -> list[int]:
    return [i for i, b in enumerate(bags) if b == a]


def _bag(scores, bags, target, cfg):
    out = []
    for a, y in enumerate(target):
        rows = [scores[i] for i in _members(bags, a)]
        k = len(rows)
        if cfg["task"] == "multiclass":
            mean = [sum(softmax(r)[c] for r in rows) / k for c in range(len(y))]
            out.append(-sum(q * math.log(m) for q, m in zip(y, mean, strict=True) if q > 0))
            continue
        row = []
        for col, yc in enumerate(y):
            if cfg["task"] == "regression":
                row.append((yc - sum(r[col] for r in rows) / k) ** 2)
            else:
                p = sum(_sigmoid(r[col]) for r in rows) / k
                row.append(-(yc * math.log(p) + (1 - yc) * math.log(1 - p)))
        out.append(row)
    return out


def _instance(scores, bags, target, cfg):
    out = []
    for a, y in enumerate(target):
        rows = [scores[i] for i in _members(bags, a)]
        k = len(rows)
        if cfg["task"] == "multiclass":
            out.append(
                sum(-sum(q * lp for q, lp in zip(y, log_softmax(r), strict=True)) for r in rows) / k
            )
            continue
        row = []
        for col, yc in enumerate(y):
            if cfg["task"] == "regression":
                row.append(sum((yc - r[col]) ** 2 for r in rows) / k)
            else:
                row.append(
                    sum(
                        -(
                            yc * math.log(_sigmoid(r[col]))
                            + (1 - yc) * math.log(1 - _sigmoid(r[col]))
                        )
                        for r in rows
                    )
                    / k
                )
        out.append(row)
    return out


@oracle("bag_loss")
def bag_loss(scores, bags, target, cfg):
    return _bag(scores, bags, target, cfg)


@oracle("instance_loss")
def instance_loss(scores, bags, target, cfg):
    return _instance(scores, bags, target, cfg)


@oracle("interpolated_aggregate_loss")
def interpolated_aggregate_loss(scores, bags, target, cfg):
    rho = cfg["rho"]
    inst, bag = _instance(scores, bags, target, cfg), _bag(scores, bags, target, cfg)
    if cfg["task"] == "multiclass":
        return [rho * i + (1 - rho) * b for i, b in zip(inst, bag, strict=True)]
    return [
        [rho * i + (1 - rho) * b for i, b in zip(ri, rb, strict=True)]
        for ri, rb in zip(inst, bag, strict=True)
    ]
