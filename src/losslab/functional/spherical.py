"""Spherical losses: losses that depend on the logits only through sum(o), sum(o^2) and o_c."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._common import z_score
from losslab.functional._fused import ZLossRows, as_rows
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, register

#: Default floor of the Z-score's standard deviation, in logit units (see :func:`z_loss`).
SIGMA_FLOOR = 1e-2


def standardize(o: Tensor, eps: float) -> Tensor:
    r"""Z-scores over the class axis: ``(o - mu) / max(sigma, eps)``, ``(N, C, *)``.

    The row is divided by its largest ``|o_k|`` first, so its moments cannot overflow
    whatever the size of the logits (the ratio is unchanged wherever the floor is
    inactive).
    """
    s = o.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(o.dtype).tiny)
    u = o / s
    var_u, mu_u = torch.var_mean(u, dim=1, keepdim=True, correction=0)
    return z_score((u - mu_u) * s, s * var_u.sqrt(), eps)


def _z_loss_bound(cfg: Mapping[str, Any], num_classes: int) -> float:
    # z_c >= -sqrt(C - 1) for standardised logits (the floor only shrinks |z_c|), so the
    # loss is at most its value there.
    a, b = cfg["a"], cfg["b"]
    x = a * (b + math.sqrt(num_classes - 1))
    return (max(x, 0.0) + math.log1p(math.exp(-abs(x)))) / a


@register(
    "z_loss",
    family="spherical",
    module="ZLoss",
    reference="de Brebisson, Vincent. The Z-loss: a shift and scale invariant classification "
    "loss belonging to the Spherical Family. arXiv:1604.08859, 2016; code: "
    "github.com/pascal20100/factored_output_layer",
    properties={
        "shift_invariant": {},
        "scale_invariant": {},
        "classification_calibrated": {},
        "bounded": Claim(bound=_z_loss_bound),
    },
    constraints={"a": Real(0.0, lo_open=True), "b": Real(), "eps": Real(0.0, lo_open=True)},
    neg_inf_ok=False,
    test_configs=({"a": 2.0, "b": 1.0},),
)
def z_loss(
    inp: MulticlassInput, *, a: float = 1.0, b: float = 0.0, eps: float = SIGMA_FLOOR
) -> Tensor:
    r"""Z-loss of de Brebisson & Vincent (2016).

    $$
    \ell(o, c) = \frac{1}{a} \log\big(1 + e^{a (b - z_c)}\big),\qquad
    z = \frac{o - \mu}{\max(\sigma, \epsilon)},\quad \mu = \tfrac{1}{C}\sum_k o_k,\quad
    \sigma^2 = \tfrac{1}{C}\sum_k (o_k - \mu)^2
    $$

    A spherical loss (it depends on $o$ only through $\sum_k o_k$, $\sum_k o_k^2$ and
    $o_c$), which is what lets `losslab.heads.SphericalOutput` train it in $O(D^2)$ per
    example whatever the number of classes. Not PaLM's $\log^2 Z$ regulariser, which is
    `z_loss=` of `losslab.heads.linear_cross_entropy`. Soft targets take the expectation
    over classes; undefined when a class is masked with `-inf`.

    The floor $\epsilon$ on the standard deviation is the library's: the paper divides by
    $\sigma$, whose gradient grows like $1/\sigma$ on rows of (nearly) equal logits, such
    as those of a zero-initialised output layer. Rows with $\sigma \ge \epsilon$ get the
    paper's exact, scale-invariant value; flatter rows are divided by $\epsilon$, which
    bounds the gradient by about $1/\epsilon$.

    Args:
        a: steepness $a > 0$.
        b: the standardised score at which the loss saturates ($z_c \le \sqrt{C - 1}$).
            The paper tunes $a$ and $b$ per task; the defaults $a = 1, b = 0$ are those of
            the authors' timing example.
        eps: floor $\epsilon > 0$ of $\sigma$, in logit units.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.z_loss(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2576, 0.2576])
    """
    if inp.soft is None:
        # Index targets: fused rows with the one-pass analytic backward.
        per = ZLossRows.apply(
            as_rows(inp.logits), inp.index.reshape(-1), float(a), float(b), float(eps)
        )
        return per.reshape(inp.index.shape)
    z = standardize(inp.logits, float(eps))
    return inp.target_value(lambda v: torch.nn.functional.softplus(a * (b - v)) / a, z)


__all__ = ["SIGMA_FLOOR", "standardize", "z_loss", "z_score"]
