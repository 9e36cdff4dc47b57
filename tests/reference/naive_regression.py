"""Oracle of Balanced MSE: a batch oracle (see ``SET_LEVEL`` in base.py), written from the
paper's three estimators of the training label distribution."""

from __future__ import annotations

import math

from tests.reference.base import set_oracle


def _logsumexp(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


@set_oracle("balanced_mse")
def balanced_mse(preds, targets, cfg, ws, extras):
    var = extras.get("noise_sigma", 1.0) ** 2
    method = cfg["method"]
    out = []
    for i, (p, y) in enumerate(zip(preds, targets, strict=True)):
        if method == "bmc":
            logits = [-((p - yj) ** 2) / (2 * var) for yj in targets]
            out.append(-(logits[i] - _logsumexp(logits)) * 2 * var)
            continue
        centers, weights = cfg["prior_centers"], cfg["prior_weights"]
        mse = (p - y) ** 2 / (2 * var)
        if method == "bni":
            terms = [
                -((p - c) ** 2) / (2 * var) + math.log(w)
                for c, w in zip(centers, weights, strict=True)
                if w > 0
            ]
            out.append((mse + _logsumexp(terms)) * 2 * var)
        else:
            terms = [
                -0.5 * math.log(v + var) - 0.5 * (p - mu) ** 2 / (v + var) + math.log(w)
                for mu, v, w in zip(centers, cfg["prior_variances"], weights, strict=True)
                if w > 0
            ]
            out.append((mse + 0.5 * math.log(var) + _logsumexp(terms)) * 2 * var)
    return out
