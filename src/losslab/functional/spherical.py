"""Spherical losses: losses that depend on the logits only through sum(o), sum(o^2) and o_c."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import Real
from losslab.functional._common import prepare, target_value
from losslab.functional._fused import ZLossRows, as_rows
from losslab.registry import Claim, register


def row_moments(o: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean and population std over the class axis, both ``(N, 1, *)``.

    The variance is clamped at ``eps^2`` before the square root, so a row of equal
    logits has a zero (not NaN) gradient.
    """
    var, mu = torch.var_mean(o, dim=1, keepdim=True, correction=0)
    eps = torch.finfo(o.dtype).eps
    return mu, var.clamp_min(eps * eps).sqrt()


def _z_loss_bound(cfg: Mapping[str, Any], num_classes: int) -> float:
    # z_c >= -sqrt(C - 1) for standardised logits, so the loss is at most its value there.
    a, b = cfg["a"], cfg["b"]
    x = a * (b + math.sqrt(num_classes - 1))
    return (max(x, 0.0) + math.log1p(math.exp(-abs(x)))) / a


@register(
    "z_loss",
    family="spherical",
    reference="de Brebisson, Vincent. The Z-loss: a shift and scale invariant classification "
    "loss belonging to the Spherical Family. arXiv:1604.08859, 2016; code: "
    "github.com/pascal20100/factored_output_layer",
    formula=r"\ell(o, c) = \frac{1}{a}\,\mathrm{softplus}\big(a\,(b - z_c)\big),\quad "
    r"z = \frac{o - \mu(o)}{\sigma(o)}",
    properties={
        "shift_invariant": {},
        "scale_invariant": {},
        "classification_calibrated": {},
        "bounded": Claim(bound=_z_loss_bound),
    },
    constraints={"a": Real(0.0, lo_open=True), "b": Real()},
    neg_inf_ok=False,
    test_configs=({"a": 2.0, "b": 1.0},),
)
def z_loss(
    logits: Tensor,
    target: Tensor,
    *,
    a: float = 1.0,
    b: float = 0.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Z-loss of de Brebisson & Vincent (2016).

    .. math::
        \ell(o, c) = \frac{1}{a} \log\big(1 + e^{a (b - z_c)}\big),\qquad
        z = \frac{o - \mu}{\sigma},\ \mu = \tfrac{1}{C}\sum_k o_k,\
        \sigma^2 = \tfrac{1}{C}\sum_k o_k^2 - \mu^2

    A spherical loss (it depends on ``o`` only through ``sum o``, ``sum o^2`` and
    ``o_c``), which is what lets :class:`losslab.heads.SphericalOutput` train it in
    ``O(D^2)`` per example independently of the number of classes. Not PaLM's
    ``log^2 Z`` regulariser, which is ``z_loss=`` of :func:`losslab.heads.linear_cross_entropy`.

    Args:
        a: steepness ``> 0``. b: the standardised score at which the loss saturates
            (``z_c <= sqrt(C - 1)``). The paper tunes both per task; the defaults
            ``a = 1, b = 0`` are those of the authors' timing example.

    Properties: shift- and scale-invariant; bounded by
    ``softplus(a (b + sqrt(C - 1))) / a``; classification-calibrated. Undefined when a
    class is masked with ``-inf``. Soft targets take the expectation over classes.

    Reference: arXiv:1604.08859; code github.com/pascal20100/factored_output_layer.
    """
    inp = prepare(
        z_loss,
        logits,
        target,
        {"a": a, "b": b},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    if inp.soft is None:
        # Index targets: fused rows with the one-pass analytic backward.
        per = ZLossRows.apply(as_rows(inp.logits), inp.index.reshape(-1), float(a), float(b))
        per = per.reshape(inp.index.shape)
    else:
        mu, sd = row_moments(inp.logits)
        z = (inp.logits - mu) / sd
        per = target_value(inp, lambda v: torch.nn.functional.softplus(a * (b - v)) / a, z)
    return reduce_input(per, inp, reduction)
