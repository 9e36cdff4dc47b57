"""Noise-robust losses: MSE (Brier), symmetric and reverse CE, truncated GCE, RLL, JS.

Every loss here is a function of the softmax ``p = softmax(z)`` and is computed from
``log_softmax``; none of them takes the log of a clamped probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import ClassificationInput, Real
from losslab.functional._common import one_minus_exp, prepare, target_value
from losslab.functional._fused import SoftmaxSeparableRows, as_rows
from losslab.registry import Claim, register

#: RCE replaces ``log 0`` by ``log(RCE_LABEL_CLAMP)``: the official SCE and APL code clamp the
#: one-hot label to ``[1e-4, 1]`` before the log. This is part of the loss's definition (it
#: sets its scale), not a numerical guard.
RCE_LABEL_CLAMP = 1e-4
#: ``A = -log(1e-4) = 4 ln 10 ~= 9.2103``: RCE of a one-hot target equals ``A (1 - p_y)``.
RCE_SCALE = -math.log(RCE_LABEL_CLAMP)

_SCE_REF = (
    "Wang, Ma, Chen, Luo, Yi, Bailey. Symmetric Cross Entropy for Robust Learning with Noisy "
    "Labels. ICCV 2019, arXiv:1908.06112; code: github.com/YisenWang/"
    "symmetric_cross_entropy_for_noisy_labels"
)


def _twice(p: Tensor) -> Tensor:
    return 2.0 * p


def _brier_target(p_y: Tensor) -> Tensor:
    return 1.0 - 2.0 * p_y


def _minus_two(p_y: Tensor) -> Tensor:
    return torch.full_like(p_y, -2.0)


def rce_per_element(inp: ClassificationInput, logp: Tensor) -> Tensor:
    r"""Reverse cross-entropy :math:`-\sum_k p_k \log \max(q_k, 10^{-4})` per element.

    For index targets this is exactly ``A (1 - p_y)``, computed from the target's log-prob
    alone as ``-A expm1(log p_y)``; soft targets use the formula on the distribution.
    """
    if inp.soft is None:
        logp_y = logp.gather(1, inp.index.unsqueeze(1)).squeeze(1)
        return -math.log(RCE_LABEL_CLAMP) * one_minus_exp(logp_y)
    q = inp.soft
    cost = -torch.log(q.clamp(min=RCE_LABEL_CLAMP, max=1.0))
    return (logp.exp() * cost).sum(dim=1)


@register(
    "mse",
    family="noise_robust",
    reference="Brier. Verification of forecasts expressed in terms of probability. Monthly "
    "Weather Review 1950; as a noisy-label baseline: Ghosh, Kumar, Sastry, AAAI 2017, "
    "arXiv:1712.09482",
    formula=r"\ell(z, q) = \sum_k (p_k - q_k)^2,\quad p = \mathrm{softmax}(z)",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=2.0),
        "classification_calibrated": {},
    },
)
def mse(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Squared error between the softmax and the target distribution (Brier score).

    .. math:: \ell(z, q) = \sum_{k=1}^{C} (p_k - q_k)^2,\qquad p = \mathrm{softmax}(z)

    Summed (not averaged) over classes, as in the LDR benchmark's ``MSELoss``; for an index
    target ``q`` is the one-hot ``e_y`` and ``l = (1 - p_y)^2 + sum_{k != y} p_k^2``.

    Properties: shift-invariant, bounded by 2 (reached as the mass moves to a wrong class),
    classification-calibrated (the Brier score is strictly proper). Not symmetric:
    ``sum_y l(z, y) = C - 2 + C ||p||^2`` depends on ``z``.

    Reference: Brier 1950; Ghosh, Kumar & Sastry, AAAI 2017, arXiv:1712.09482.
    """
    inp = prepare(
        mse,
        logits,
        target,
        {},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    if inp.soft is None:
        # sum_k (p_k - e_yk)^2 = sum_k p_k^2 + 1 - 2 p_y: separable in the softmax.
        per = SoftmaxSeparableRows.apply(
            as_rows(inp.logits),
            inp.index.reshape(-1),
            torch.square,
            _twice,
            _brier_target,
            _minus_two,
            1.0,
        ).reshape(inp.index.shape)
    else:
        p = torch.softmax(inp.logits, dim=1)
        per = (p - inp.soft).square().sum(dim=1)
    return reduce_input(per, inp, reduction)


@register(
    "rce",
    family="noise_robust",
    reference=_SCE_REF,
    formula=r"\ell(z, q) = -\sum_k p_k \log \max(q_k, 10^{-4}) \;=\; A (1 - p_y),\ "
    r"A = -\log 10^{-4}",
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=RCE_SCALE),
        "classification_calibrated": {},
    },
)
def rce(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Reverse cross-entropy: the cross-entropy of the label under the prediction.

    .. math::
        \ell(z, q) = -\sum_k p_k \log \max(q_k, 10^{-4}),\qquad
        \ell(z, y) = A\,(1 - p_y),\quad A = -\log 10^{-4} = 4 \ln 10 \approx 9.21

    The label clamp ``1e-4`` (:data:`RCE_LABEL_CLAMP`) is the official code's definition of
    ``log 0`` (SCE and APL repositories). (The SCE paper's text uses ``A = -4``; the code, and
    therefore every published number, uses ``log 1e-4``.) The official code also clamps ``p``
    at ``1e-7``; no log of ``p`` is taken here, so that clamp is not needed and is omitted
    (it only changes the value by at most ``C * 1e-7 * A``).

    Properties: shift-invariant, symmetric (``sum_y l(z, y) = A (C - 1)``), bounded by ``A``,
    classification-calibrated (a positive multiple of MAE ``1 - p_y``).

    Reference: Wang et al., ICCV 2019, arXiv:1908.06112.
    """
    inp = prepare(
        rce,
        logits,
        target,
        {},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    per = rce_per_element(inp, torch.log_softmax(inp.logits, dim=1))
    return reduce_input(per, inp, reduction)


@register(
    "sce",
    family="noise_robust",
    reference=_SCE_REF,
    formula=r"\ell(z, q) = \alpha\,\mathrm{CE}(z, q) + \beta\,\mathrm{RCE}(z, q)",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "reduces_to_ce": {"alpha": 1.0, "beta": 0.0},
    },
    constraints={"alpha": Real(0.0), "beta": Real(0.0)},
    test_configs=({"alpha": 6.0, "beta": 0.1}, {"alpha": 1.0, "beta": 0.0}),
)
def sce(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Symmetric cross-entropy: :math:`\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}`.

    .. math::
        \ell(z, q) = -\alpha \sum_k q_k \log p_k
                     - \beta \sum_k p_k \log \max(q_k, 10^{-4})

    For an index target: ``alpha * (-log p_y) + beta * A * (1 - p_y)`` with
    ``A = -log 1e-4`` (see :func:`rce`).

    Args:
        alpha: weight of CE, >= 0. Default 0.1 (official CIFAR-10 run in
            ``train_models.py`` of the SCE repository; CIFAR-100 uses 6.0, MNIST 0.01).
        beta: weight of RCE, >= 0. Default 1.0 (same run; CIFAR-100 uses 0.1).

    The official code clamps ``p`` at ``1e-7`` inside the CE log (capping CE at 16.1);
    here CE is the exact ``-log_softmax``.

    Properties: shift-invariant; classification-calibrated (CE is strictly proper and RCE
    is a multiple of MAE; their sum keeps the order of the class probabilities); equals CE
    at ``alpha = 1, beta = 0``. Unbounded for ``alpha > 0``.

    Reference: Wang et al., ICCV 2019, arXiv:1908.06112.
    """
    inp = prepare(
        sce,
        logits,
        target,
        {"alpha": alpha, "beta": beta},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    ce = -target_value(inp, lambda v: v, logp)
    per = alpha * ce + beta * rce_per_element(inp, logp)
    return reduce_input(per, inp, reduction)


@register(
    "tgce",
    family="noise_robust",
    reference="Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural "
    "Networks with Noisy Labels. NeurIPS 2018, arXiv:1805.07836",
    formula=r"\ell(z, y) = \min\Big(\frac{1 - p_y^{q}}{q},\ \frac{1 - k^{q}}{q}\Big)",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: (1.0 - cfg["k"] ** cfg["q"]) / cfg["q"]),
    },
    constraints={"q": Real(0.0, 1.0, lo_open=True), "k": Real(0.0, 1.0, hi_open=True)},
    test_configs=({"k": 0.0}, {"q": 0.05, "k": 0.3}, {"q": 1.0, "k": 0.9}),
)
def tgce(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    k: float = 0.5,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Truncated generalized cross-entropy (truncated :math:`\mathcal{L}_q`), stateless form.

    .. math::
        \ell(z, y) = \begin{cases} (1 - p_y^{q})/q & p_y > k \\ (1 - k^{q})/q & p_y \le k
        \end{cases} \;=\; \min\Big(\frac{1 - p_y^{q}}{q}, \frac{1 - k^{q}}{q}\Big)

    The paper (and the LDR benchmark's ``TGCELoss``) apply the truncation through a
    per-sample 0/1 weight that is refreshed only at "prune" epochs; this function is the
    stateless loss of the paper's definition, evaluated at the current prediction (the LDR
    benchmark's ``GCELoss(q, k)`` form). Where ``p_y <= k`` the loss is constant and its
    gradient is exactly zero, so with ``k = 0.5`` a sample contributes no gradient until its
    label is already the model's majority prediction: start from plain GCE (``k = 0``) or a
    warm-up, as the paper does. Soft targets take the expectation over the target.

    Args:
        q: in (0, 1]; default 0.7 (paper and official code).
        k: truncation threshold in [0, 1); default 0.5 (paper; LDR benchmark). ``k = 0`` is
            :func:`losslab.functional.gce`.

    Properties: shift-invariant; bounded by ``(1 - k^q)/q``. Classification calibration is
    not declared: the loss is flat (zero gradient) below ``k``, so the generic numerical
    check cannot reach a minimiser from a uniform start.

    Reference: Zhang & Sabuncu, NeurIPS 2018, arXiv:1805.07836.
    """
    inp = prepare(
        tgce,
        logits,
        target,
        {"q": q, "k": k},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    cap = (1.0 - float(k) ** q) / q

    def per_class(lp: Tensor) -> Tensor:
        # (1 - p^q)/q = -expm1(q log p)/q: exact for confident predictions.
        return (-torch.expm1(q * lp) / q).clamp(max=cap)

    per = target_value(inp, per_class, torch.log_softmax(inp.logits, dim=1))
    return reduce_input(per, inp, reduction)


@register(
    "rll",
    family="noise_robust",
    reference="Patel, Sastry. Memorization in Deep Neural Networks: Does the Loss Function "
    "Matter? PAKDD 2021, arXiv:2107.09957",
    formula=r"\ell(z, y) = -\log(\alpha + p_y) + \frac{1}{C-1}\sum_{j \ne y} \log(\alpha + p_j)",
    properties={"shift_invariant": {}, "symmetric": {}, "classification_calibrated": {}},
    constraints={"alpha": Real(0.0, lo_open=True)},
    test_configs=({"alpha": 1.0}, {"alpha": 10.0}),
    min_classes=2,
)
def rll(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Robust log loss (RLL), textbook form.

    .. math::
        \ell(z, y) = -\log(\alpha + p_y) + \frac{1}{C - 1}\sum_{j \ne y} \log(\alpha + p_j)

    Symmetric: summed over ``y`` the two parts cancel, ``sum_y l(z, y) = 0``. Its range is
    ``[log(alpha/(1+alpha)), log(1 + 1/(alpha (C-1)))]``, so it takes negative values
    (the generic ``bounded`` property, which requires ``l >= 0``, is not declared).
    ``log(alpha + p)`` is computed as ``logaddexp(log alpha, log p)``. Soft targets take the
    expectation over the target. Needs ``C >= 2``.

    The LDR benchmark's ``RLLLoss`` codes a different second term,
    ``(1/(C-1)) log sum_k [exp((1 - Y_k) z_k - sum_j z_j) + alpha]``, which is neither this
    formula nor symmetric; this function follows the paper's definition.

    Args:
        alpha: > 0. No official code exists; the LDR benchmark grids ``{0.1, 1, 10}``;
            default 0.1 (its first grid value).

    Properties: shift-invariant, symmetric, classification-calibrated (the expected loss
    ``sum_k (1 - C eta_k) log(alpha + p_k) / (C - 1)`` is minimised by ``p`` ordered
    like ``eta``).

    Reference: Patel & Sastry, PAKDD 2021, arXiv:2107.09957.
    """
    inp = prepare(
        rll,
        logits,
        target,
        {"alpha": alpha},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    log_alpha = math.log(alpha)
    c = inp.num_classes
    if inp.soft is None:
        # -log(alpha + p_y) + (sum_{j != y} log(alpha + p_j)) / (C - 1)
        #   = sum_k log(alpha + p_k) / (C - 1) - C/(C - 1) log(alpha + p_y): separable.
        def phi(p: Tensor) -> Tensor:
            return (p + alpha).log_()

        def dphi(p: Tensor) -> Tensor:
            return (p + alpha).reciprocal_()

        def psi(p_y: Tensor) -> Tensor:
            return -c / (c - 1) * torch.log(p_y + alpha)

        def dpsi(p_y: Tensor) -> Tensor:
            return -c / (c - 1) / (p_y + alpha)

        per = SoftmaxSeparableRows.apply(
            as_rows(inp.logits), inp.index.reshape(-1), phi, dphi, psi, dpsi, 1.0 / (c - 1)
        ).reshape(inp.index.shape)
        return reduce_input(per, inp, reduction)
    logp = torch.log_softmax(inp.logits, dim=1)
    # log(alpha + p) = log(alpha) + log1p(p / alpha): one exp and one log1p per class.
    total = torch.log1p(torch.exp(logp - log_alpha)).sum(dim=1, keepdim=True) + c * log_alpha
    log_ap = torch.logaddexp(torch.full_like(logp, log_alpha), logp)
    per = inp.gather(-log_ap + (total - log_ap) / (c - 1))
    return reduce_input(per, inp, reduction)


def _jsc_bound(cfg: Mapping[str, Any], num_classes: int) -> float:
    pi = cfg["pi"]
    entropy = -pi * math.log(pi) - (1 - pi) * math.log(1 - pi)
    return entropy / (-(1 - pi) * math.log(1 - pi))


@register(
    "jsc",
    family="noise_robust",
    reference="Englesson, Azizpour. Generalized Jensen-Shannon Divergence Loss for Learning "
    "with Noisy Labels. NeurIPS 2021, arXiv:2105.04522; code: github.com/ErikEnglesson/GJS",
    formula=r"\ell(z, q) = \frac{\pi\,\mathrm{KL}(q \Vert m) + (1-\pi)\,\mathrm{KL}(p \Vert m)}"
    r"{-(1-\pi)\log(1-\pi)},\quad m = \pi q + (1-\pi) p",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=_jsc_bound),
        "classification_calibrated": {},
    },
    constraints={"pi": Real(0.0, 1.0, lo_open=True, hi_open=True)},
    test_configs=({"pi": 0.1}, {"pi": 0.3}, {"pi": 0.9}),
)
def jsc(
    logits: Tensor,
    target: Tensor,
    *,
    pi: float = 0.7,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Scaled Jensen-Shannon loss between the label distribution and the prediction.

    .. math::
        \ell(z, q) = \frac{\pi\,\mathrm{KL}(q \Vert m) + (1-\pi)\,\mathrm{KL}(p \Vert m)}
                          {-(1-\pi)\log(1-\pi)},\qquad m = \pi q + (1 - \pi) p

    with ``pi`` the weight on the label distribution ``q`` (one-hot for index targets;
    any distribution for soft targets, where it is the divergence between ``q`` and ``p``,
    zero iff ``p == q``). The scale makes the loss tend to CE as ``pi -> 0`` and to MAE
    ``1 - p_y`` as ``pi -> 1`` (the latter slowly, like ``1/|log(1 - pi)|``). This is the
    GJS loss with a single prediction (the paper's ``JS`` / code's ``JSWCS``).

    Computed without any log of a sum: ``KL(q||m) = -sum q log(pi + (1-pi) p/q)`` and
    ``KL(p||m) = -sum p log((1-pi) + pi q/p)``, each log a ``logaddexp`` in ``log p``, so
    vanishing or ``-inf``-masked probabilities stay exact (the official code clamps
    ``m`` at ``1e-7`` instead).

    Args:
        pi: in (0, 1). Default 0.7: the official CIFAR-10 configs
            (``scripts/C10/sym/js-20.yaml`` and ``js-40.yaml``, 20 % and 40 % symmetric
            noise); other CIFAR-10 configs use 0.1 (clean), 0.9 (60 %), 0.3 (20 % asym).

    Properties: shift-invariant; bounded by ``H(pi, 1 - pi) / (-(1-pi) log(1-pi))``
    (reached at ``p_y = 0``); classification-calibrated (for index targets it is a strictly
    convex, decreasing function of ``p_y``).

    Reference: Englesson & Azizpour, NeurIPS 2021, arXiv:2105.04522.
    """
    inp = prepare(
        jsc,
        logits,
        target,
        {"pi": pi},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    log_pi, log_rest = math.log(pi), math.log1p(-pi)
    if inp.soft is None:
        # One-hot target: with m_y = pi + (1 - pi) p_y, KL(e_y || m) = -log m_y and
        # KL(p || m) = -(1 - p_y) log(1 - pi) + p_y (log p_y - log m_y): O(1) per row.
        logp_y = logp.gather(1, inp.index.unsqueeze(1)).squeeze(1)
        log_m_y = torch.logaddexp(torch.full_like(logp_y, log_pi), log_rest + logp_y)
        kl_q = -log_m_y
        kl_p = -one_minus_exp(logp_y) * log_rest + logp_y.exp() * (logp_y - log_m_y)
        per = (pi * kl_q + (1 - pi) * kl_p) / (-(1 - pi) * log_rest)
        return reduce_input(per, inp, reduction)
    q = inp.soft
    has_q = q > 0
    # Safe stand-ins so that the branch torch.where() discards never sees log 0 or -inf - -inf
    # (whose gradient would be NaN even though its value is not selected).
    log_q = torch.where(has_q, q, 1.0).log()
    lp = logp.clamp_min(torch.finfo(logp.dtype).min)
    # log(pi + (1-pi) p/q) and log((1-pi) + pi q/p) for classes with q > 0.
    a = torch.logaddexp(torch.full_like(lp, log_pi), log_rest + lp - log_q)
    b = torch.logaddexp(torch.full_like(lp, log_rest), log_pi + log_q - lp)
    kl_q = -torch.where(has_q, q * a, 0.0).sum(dim=1)
    kl_p = -(logp.exp() * torch.where(has_q, b, log_rest)).sum(dim=1)
    per = (pi * kl_q + (1 - pi) * kl_p) / (-(1 - pi) * log_rest)
    return reduce_input(per, inp, reduction)
