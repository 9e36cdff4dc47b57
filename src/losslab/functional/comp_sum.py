"""The comp-sum family of Mao, Mohri & Zhong (ICML 2023) and its named members."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import Real
from losslab.functional._common import expm1_linear_tail, prepare, target_value
from losslab.registry import Claim, register

_REF = (
    "Mao, Mohri, Zhong. Cross-Entropy Loss Functions: Theoretical Analysis and "
    "Applications. ICML 2023, arXiv:2304.07288"
)


def _comp_sum_of_logp(logp: Tensor, tau: float) -> Tensor:
    r"""``Phi^tau(1/p - 1)`` written in ``log p``:

    ``tau == 1``: ``-log p``; otherwise ``expm1((tau - 1) log p) / (1 - tau)``.
    For ``tau < 1`` the argument is positive and grows without bound, so its exponential
    continues linearly past float overflow (see ``expm1_linear_tail``).
    """
    if tau == 1.0:
        return -logp
    x = (tau - 1.0) * logp
    e = expm1_linear_tail(x) if tau < 1.0 else torch.expm1(x)
    return e / (1.0 - tau)


def _comp_sum_core(
    fn: Callable[..., Tensor],
    hparams: dict[str, float],
    logits: Tensor,
    target: Tensor,
    tau: float,
    weight: Tensor | None,
    sample_weight: Tensor | None,
    ignore_index: int | None,
    reduction: str,
    validate: bool,
) -> Tensor:
    inp = prepare(
        fn,
        logits,
        target,
        hparams,
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    per = target_value(inp, lambda lp: _comp_sum_of_logp(lp, tau), logp)
    return reduce_input(per, inp, reduction)


@register(
    "comp_sum",
    family="comp_sum",
    reference=_REF,
    formula=r"\ell^\tau(z, y) = \Phi^\tau\Big(\sum_{k \ne y} e^{z_k - z_y}\Big),\quad "
    r"\Phi^\tau(u) = \frac{(1+u)^{1-\tau} - 1}{1 - \tau}\ (\tau \ne 1),\ \log(1+u)\ (\tau = 1)",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {"tau": 1.5},
        "reduces_to_ce": {"tau": 1.0},
        "convex": {"tau": 0.0},
    },
    constraints={"tau": Real(0.0, 2.0)},
    test_configs=({"tau": 0.0}, {"tau": 0.5}, {"tau": 1.5}, {"tau": 2.0}),
)
def comp_sum(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Comp-sum loss :math:`\Phi^\tau` of Mao, Mohri & Zhong (2023).

    With :math:`u = \sum_{k \ne y} e^{z_k - z_y} = 1/p_y - 1`,

    .. math::
        \ell^\tau = \frac{(1+u)^{1-\tau} - 1}{1-\tau} = \frac{p_y^{\tau-1} - 1}{1 - \tau}
        \ (\tau \ne 1), \qquad \ell^1 = \log(1 + u) = -\log p_y .

    Members: ``tau = 0`` sum-exponential ``1/p_y - 1``; ``tau = 1`` cross-entropy;
    ``tau in (1, 2)`` generalized CE with ``q = tau - 1``; ``tau = 2`` MAE ``1 - p_y``.
    Computed from ``log_softmax`` (never a raw ``exp`` of logit gaps). Soft targets take
    the expectation over the target distribution.

    Args:
        tau: in [0, 2]. The paper gives no default; 1 (cross-entropy, the member with the
            tightest H-consistency bound) is used.

    Properties: shift-invariant for every tau; reduces to CE at ``tau = 1``; convex at
    ``tau = 0`` and ``1``; classification-calibrated (verified at ``tau = 1.5``).

    Reference: Mao, Mohri, Zhong, ICML 2023, arXiv:2304.07288.
    """
    return _comp_sum_core(
        comp_sum,
        {"tau": tau},
        logits,
        target,
        float(tau),
        weight,
        sample_weight,
        ignore_index,
        reduction,
        validate,
    )


@register(
    "sum_exp",
    family="comp_sum",
    reference=_REF,
    formula=r"\ell(z, y) = \sum_{k \ne y} e^{z_k - z_y} = 1/p_y - 1",
    properties={"shift_invariant": {}, "convex": {}, "classification_calibrated": {}},
)
def sum_exp(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Sum-exponential loss, the ``tau = 0`` comp-sum member.

    .. math:: \ell(z, y) = \sum_{k \ne y} e^{z_k - z_y} = \frac{1}{p_y} - 1

    Past float overflow (logit gaps above ~80 in float32) the exponential continues
    linearly, so values and gradients stay finite.

    Reference: Mao, Mohri, Zhong, ICML 2023, arXiv:2304.07288.
    """
    return _comp_sum_core(
        sum_exp, {}, logits, target, 0.0, weight, sample_weight, ignore_index, reduction, validate
    )


@register(
    "gce",
    family="comp_sum",
    reference="Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural "
    "Networks with Noisy Labels. NeurIPS 2018, arXiv:1805.07836; comp-sum view: " + _REF,
    formula=r"\ell(z, y) = \frac{1 - p_y^{q}}{q}",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "bounded": Claim(bound=lambda cfg, c: 1.0 / cfg["q"]),
    },
    constraints={"q": Real(0.0, 1.0, lo_open=True)},
    test_configs=({"q": 0.05}, {"q": 1.0}),
)
def gce(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Generalized cross-entropy (the :math:`\mathcal{L}_q` loss).

    .. math:: \ell(z, y) = \frac{1 - p_y^{q}}{q},\qquad q \in (0, 1]

    ``q -> 0`` recovers CE, ``q = 1`` is MAE; comp-sum with ``tau = 1 + q``. Bounded by
    ``1/q``. Default ``q = 0.7`` (paper and official code).

    Reference: Zhang & Sabuncu, NeurIPS 2018, arXiv:1805.07836.
    """
    return _comp_sum_core(
        gce,
        {"q": q},
        logits,
        target,
        1.0 + float(q),
        weight,
        sample_weight,
        ignore_index,
        reduction,
        validate,
    )


@register(
    "mae",
    family="comp_sum",
    reference="Ghosh, Kumar, Sastry. Robust Loss Functions under Label Noise for Deep Neural "
    "Networks. AAAI 2017, arXiv:1712.09482; comp-sum view: " + _REF,
    formula=r"\ell(z, y) = 1 - p_y",
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=1.0),
        "classification_calibrated": {},
    },
)
def mae(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Mean absolute error between the softmax and the one-hot target, halved.

    .. math:: \ell(z, y) = 1 - p_y = \tfrac12 \lVert p - e_y \rVert_1

    Symmetric (``sum_k l(z, k) = C - 1``), hence robust to uniform label noise (Ghosh et
    al. 2017). This is the correct MAE; the LDR benchmark code's MAE is identically zero.

    Reference: Ghosh, Kumar, Sastry, AAAI 2017, arXiv:1712.09482.
    """
    return _comp_sum_core(
        mae, {}, logits, target, 2.0, weight, sample_weight, ignore_index, reduction, validate
    )
