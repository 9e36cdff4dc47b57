r"""Label-distributionally-robust losses: LDR-KL and adaptive ALDR-KL (Zhu, Ying, Yang 2023).

LDR-KL is the closed form of a distributionally robust maximum over the label
distribution with a KL regulariser towards uniform:

.. math::
    \psi_\lambda(z, y) = \max_{p \in \Delta_C} \sum_k p_k a_k
                         - \lambda\,\mathrm{KL}(p \,\|\, u)
                      = \lambda \log \frac{1}{C} \sum_k e^{a_k / \lambda},
    \qquad a_k = c\,\mathbb{1}[k \ne y] + \tilde z_k - \tilde z_y ,

with ``z~`` the normalised logits. ALDR-KL keeps one ``lambda_i`` per training example
and ascends it in closed form on every visit.

Paper: Zhu, Ying, Yang. Label Distributionally Robust Losses for Multi-class
Classification: Consistency, Robustness and Adaptivity. ICML 2023, arXiv:2112.14869.
Official code: github.com/Optimization-AI/ICML2023_LDR (``loss.py``: ``LDRLoss_V1``,
``ALDRLoss_V1``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import (
    Choice,
    Real,
    check_per_sample,
    fail,
    value_checks_enabled,
)
from losslab.functional._common import prepare
from losslab.functional._fused import LDRKLRows, as_rows
from losslab.registry import Claim, register

_REF = (
    "Zhu, Ying, Yang. Label Distributionally Robust Losses for Multi-class "
    "Classification: Consistency, Robustness and Adaptivity. ICML 2023, arXiv:2112.14869; "
    "code: github.com/Optimization-AI/ICML2023_LDR"
)
NORMALIZATIONS = ("none", "softplus_mean", "abs_mean")
#: Smoothing of ALDR's probability estimate before its log (official code: 1e-5).
ALDR_PROB_SMOOTHING = 1e-5


def normalize_logits(z: Tensor, normalize: str) -> Tensor:
    r"""Score normalisation of the LDR code, over the class axis (dim 1).

    * ``"none"``: ``z``;
    * ``"softplus_mean"``: ``softplus(z) / mean_k softplus(z_k)`` (positive, sums to ``C``);
    * ``"abs_mean"``: ``z / mean_k |z_k|`` (scale-invariant).

    The official code has no epsilon; the denominators are clamped at ``finfo.eps`` so an
    all-zero (or all very negative) row stays finite.
    """
    if normalize == "none":
        return z
    eps = torch.finfo(z.dtype).eps
    if normalize == "softplus_mean":
        s = torch.nn.functional.softplus(z)
        return s / s.mean(dim=1, keepdim=True).clamp_min(eps)
    return z / z.abs().mean(dim=1, keepdim=True).clamp_min(eps)


def ldr_value(
    logits: Tensor, index: Tensor, margin: float, temperature: Tensor | float, normalize: str
) -> Tensor:
    r"""``lambda * log mean_k exp(a_k / lambda)``, ``a_k = c 1[k != y] + f_k - f_y``, ``f``
    the normalised logits, for ``(N, C, *)`` logits and ``(N, *)`` targets.

    Since ``a_k / lambda = u_k - u_y`` with ``u = (f + c (1 - e_y)) / lambda``, this is
    ``-lambda log softmax(u)_y - lambda log C``: a temperature-scaled cross-entropy of
    margin-shifted scores, computed by :class:`LDRKLRows` with its analytic gradient.
    """
    t = temperature.reshape(-1) if isinstance(temperature, Tensor) else temperature
    per = LDRKLRows.apply(as_rows(logits), index.reshape(-1), margin, t, normalize)
    return per.reshape(index.shape)


@register(
    "ldr_kl",
    family="ldr",
    reference=_REF,
    formula=r"\ell(z, y) = \lambda \log \frac{1}{C}\sum_k \exp\!\Big(\frac{c\,\mathbb{1}[k \ne y]"
    r" + \tilde z_k - \tilde z_y}{\lambda}\Big),\quad \tilde z = \mathrm{normalize}(z)",
    properties={
        "classification_calibrated": {},
        "shift_invariant": {"normalize": "none"},
        "scale_invariant": {"normalize": "abs_mean"},
        "convex": {"normalize": "none"},
        "reduces_to_ce": Claim(
            params={"margin": 0.0, "temperature": 1.0, "normalize": "none"},
            offset=lambda c: -math.log(c),
        ),
    },
    constraints={
        "temperature": Real(0.0, lo_open=True),
        "margin": Real(0.0),
        "normalize": Choice(NORMALIZATIONS),
    },
    soft_targets=False,
    test_configs=(
        {"normalize": "none"},
        {"normalize": "abs_mean"},
        {"temperature": 0.1, "margin": 1.0},
        {"temperature": 1.0, "margin": 0.0, "normalize": "none"},
    ),
)
def ldr_kl(
    logits: Tensor,
    target: Tensor,
    *,
    temperature: float = 10.0,
    margin: float = 0.1,
    normalize: str = "softplus_mean",
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""LDR-KL loss of Zhu, Ying & Yang (ICML 2023).

    .. math::
        \ell(z, y) = \lambda \log \frac{1}{C} \sum_k
            \exp\!\Big(\frac{c\,\mathbb{1}[k \ne y] + \tilde z_k - \tilde z_y}{\lambda}\Big)

    the closed form of :math:`\max_{p \in \Delta} \sum_k p_k a_k - \lambda\,
    \mathrm{KL}(p \| u)`. Limits: ``lambda -> 0`` gives the Crammer-Singer hinge,
    ``lambda -> inf`` the mean gap; ``margin = 0``, ``normalize = "none"`` gives
    ``lambda * CE(z / lambda) - lambda log C`` (CE - log C at ``lambda = 1``).

    Args:
        temperature: ``lambda > 0``; default 10 (the official experiments).
        margin: ``c >= 0``; default 0.1 (official ``--margin``; the class default is 2).
        normalize: ``"softplus_mean"`` (default, the official ``LDRLoss_V1``),
            ``"abs_mean"`` or ``"none"``; see :func:`normalize_logits`.

    Properties: classification-calibrated; shift-invariant and convex with
    ``normalize="none"``; scale-invariant with ``normalize="abs_mean"``; reduces to
    ``CE - log C`` at ``margin=0, temperature=1, normalize="none"``.

    Reference: arXiv:2112.14869; code github.com/Optimization-AI/ICML2023_LDR.
    """
    inp = prepare(
        ldr_kl,
        logits,
        target,
        {"temperature": temperature, "margin": margin, "normalize": normalize},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
        neg_inf_ok=normalize != "abs_mean",
    )
    per = ldr_value(inp.logits, inp.index, margin, float(temperature), normalize)
    return reduce_input(per, inp, reduction)


def _check_sample_temperature(
    loss: str, sample_temperature: Tensor | None, index_shape: torch.Size, validate: bool
) -> None:
    if sample_temperature is None:
        return
    t = sample_temperature
    check_per_sample(loss, "sample_temperature", t, index_shape, note=", one per sample")
    if value_checks_enabled(validate) and not bool((t > 0).all()):
        fail(loss, "sample_temperature", "positive per-sample temperatures", "values <= 0")


def aldr_kl_temperature(
    logits: Tensor,
    *,
    temperature0: float = 10.0,
    alpha: float = 2.0,
    normalize: str = "abs_mean",
    sample_temperature: Tensor | None = None,
) -> Tensor:
    r"""One closed-form ascent step of ALDR-KL's per-sample temperatures (no gradient).

    With ``p = softmax(z~ / lambda_old)`` (smoothed by 1e-5 and renormalised, as in the
    official code),

    .. math::
        \lambda_{\text{new}} = \lambda_0 \Big(1 - \frac{\mathrm{KL}(p \,\|\, u)}{\alpha \log C}\Big)
        \in [\lambda_0 (1 - 1/\alpha),\ \lambda_0],

    the maximiser over ``lambda`` of
    :math:`-\lambda\,\mathrm{KL}(p\|u) - \frac{\alpha \log C}{2 \lambda_0}(\lambda - \lambda_0)^2`.
    Note ``p`` ignores the margin, as in the official code.

    Args:
        logits: ``(N, C, *)``.
        sample_temperature: the previous per-sample temperatures ``(N, *)``
            (``None``: ``lambda_0``).
    """
    with torch.no_grad():
        z = normalize_logits(
            logits.detach().to(torch.promote_types(logits.dtype, torch.float32)), normalize
        )
        c = z.shape[1]
        if sample_temperature is None:
            lam = torch.full_like(z[:, 0], temperature0)
        else:
            lam = sample_temperature.to(z.dtype)
        p = torch.softmax(z / lam.unsqueeze(1), dim=1) + ALDR_PROB_SMOOTHING
        p = p / p.sum(dim=1, keepdim=True)
        kl = (p * torch.log(p * c)).sum(dim=1)
        return temperature0 * (1.0 - kl / (alpha * math.log(c)))


@register(
    "aldr_kl",
    family="ldr",
    reference=_REF,
    formula=r"\ell_i(z, y) = \lambda_i \log \frac{1}{C}\sum_k \exp\!\Big(\frac{a_k}{\lambda_i}"
    r"\Big) - \frac{\alpha \log C}{2\lambda_0}(\lambda_i - \lambda_0)^2,\quad "
    r"\lambda_i \leftarrow \lambda_0\Big(1 - \frac{\mathrm{KL}(p_i\|u)}{\alpha\log C}\Big)",
    properties={
        "classification_calibrated": {},
        "scale_invariant": {},
        "shift_invariant": {"normalize": "none"},
        "reduces_to_ce": Claim(
            params={"margin": 0.0, "temperature0": 1.0, "normalize": "none"},
            offset=lambda c: -math.log(c),
        ),
    },
    constraints={
        "temperature0": Real(0.0, lo_open=True),
        "alpha": Real(1.0, lo_open=True),
        "margin": Real(0.0),
        "normalize": Choice(NORMALIZATIONS),
    },
    soft_targets=False,
    neg_inf_ok=False,
    stateful=True,
    module_args={"num_samples": None},
    test_configs=({"normalize": "softplus_mean"}, {"normalize": "none", "alpha": 4.0}),
    min_classes=2,
)
def aldr_kl(
    logits: Tensor,
    target: Tensor,
    *,
    temperature0: float = 10.0,
    alpha: float = 2.0,
    margin: float = 0.1,
    normalize: str = "abs_mean",
    sample_temperature: Tensor | None = None,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Adaptive LDR-KL (ALDR-KL) at given per-sample temperatures.

    .. math::
        \ell_i = \lambda_i \log \frac{1}{C} \sum_k e^{a_{ik} / \lambda_i}
                 - \frac{\alpha \log C}{2 \lambda_0} (\lambda_i - \lambda_0)^2

    ``sample_temperature`` holds the per-sample ``lambda_i`` ``(N, *)`` (``None``: ``lambda_0``
    for all, where the regulariser vanishes and the loss equals LDR-KL at
    ``lambda_0``). Training follows the official algorithm through the module
    :class:`losslab.ALDRKLLoss`, which keeps ``lambda_i`` per example (indexed by
    ``index=``), ascends it with :func:`aldr_kl_temperature` on every visit, and
    evaluates this function at the new value; ``lambda_i`` carries no gradient.

    Args:
        temperature0: ``lambda_0 > 0``; default 10 (official experiments).
        alpha: ``> 1``, keeps ``lambda_i`` in ``[lambda_0 (1 - 1/alpha), lambda_0]``;
            default 2 (official ``--alpha``).
        margin: ``c >= 0``; default 0.1 (official ``--margin``).
        normalize: default ``"abs_mean"`` (the official run on every data set except
            CIFAR-100, which uses ``"softplus_mean"``).

    Properties: scale-invariant (``abs_mean``); classification-calibrated; reduces to
    ``CE - log C`` at ``margin=0, temperature0=1, normalize="none"``.

    Reference: arXiv:2112.14869; code github.com/Optimization-AI/ICML2023_LDR.
    """
    inp = prepare(
        aldr_kl,
        logits,
        target,
        {"temperature0": temperature0, "alpha": alpha, "margin": margin, "normalize": normalize},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    _check_sample_temperature("aldr_kl", sample_temperature, inp.index.shape, validate)
    if sample_temperature is None:
        per = ldr_value(inp.logits, inp.index, margin, float(temperature0), normalize)
    else:
        lam = sample_temperature.detach().to(inp.logits.dtype)
        reg = alpha * math.log(inp.num_classes) / (2.0 * temperature0) * (lam - temperature0) ** 2
        per = ldr_value(inp.logits, inp.index, margin, lam, normalize) - reg
    return reduce_input(per, inp, reduction)
