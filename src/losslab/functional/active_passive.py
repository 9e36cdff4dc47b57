"""Normalized CE, the asymmetric losses AGCE/AUL, and their active-passive sums.

Active-passive losses (Ma et al., ICML 2020) add an "active" loss, which only looks at the
labelled class (here NCE), to a "passive" one, which also pushes the other classes down
(RCE, or the asymmetric AGCE/AUL of Zhou et al., ICML 2021).
"""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import ClassificationInput, Real
from losslab.functional._common import one_minus_exp, prepare, target_value
from losslab.functional.noise_robust import RCE_SCALE, rce_per_element
from losslab.registry import Claim, register

_APL_REF = (
    "Ma, Huang, Wang, Romano, Erfani, Bailey. Normalized Loss Functions for Deep Learning "
    "with Noisy Labels. ICML 2020, arXiv:2006.13554; code: github.com/HanxunH/"
    "Active-Passive-Losses"
)
_ALF_REF = (
    "Zhou, Liu, Jiang, Gao, Ji. Asymmetric Loss Functions for Learning with Noisy Labels. "
    "ICML 2021, arXiv:2106.03110; code: github.com/hitcszx/ALFs"
)


def _nce_per_element(inp: ClassificationInput, logp: Tensor) -> Tensor:
    """``-log p_y / -sum_k log p_k`` (expectation of the numerator for soft targets).

    The denominator is at least ``C log C > 0`` for finite logits (Jensen), so no guard is
    needed; a ``-inf`` masked class makes it infinite, which the validator rejects.
    """
    return -target_value(inp, lambda v: v, logp) / -logp.sum(dim=1)


def _agce_of_logp(lp: Tensor, a: float, q: float) -> Tensor:
    r"""``((a+1)^q - (a+p)^q)/q`` written as ``(a+1)^q (-expm1(q log1p(-u/(a+1))))/q``.

    ``u = 1 - p`` comes from ``-expm1(log p)``, so the loss keeps full relative precision
    for confident predictions, where the plain difference of powers cancels.
    """
    u = one_minus_exp(lp)
    return (a + 1.0) ** q * -torch.expm1(q * torch.log1p(-u / (a + 1.0))) / q


def _aul_of_logp(lp: Tensor, a: float, q: float) -> Tensor:
    r"""``((a-p)^q - (a-1)^q)/q`` written as ``(a-1)^q expm1(q log1p(u/(a-1)))/q``, ``u = 1-p``."""
    u = one_minus_exp(lp)
    return (a - 1.0) ** q * torch.expm1(q * torch.log1p(u / (a - 1.0))) / q


def _agce_bound(a: float, q: float) -> float:
    return ((a + 1.0) ** q - a**q) / q


def _aul_bound(a: float, q: float) -> float:
    return (a**q - (a - 1.0) ** q) / q


@register(
    "nce",
    family="active_passive",
    reference=_APL_REF,
    formula=r"\ell(z, y) = \frac{-\log p_y}{-\sum_k \log p_k}",
    properties={"shift_invariant": {}, "symmetric": {}, "bounded": Claim(bound=1.0)},
    # NCE's denominator sums log p over every class: a -inf masked class makes it
    # infinite, and it needs two classes to be defined.
    neg_inf_ok=False,
    min_classes=2,
)
def nce(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Normalized cross-entropy: CE divided by the sum of CE over all labels.

    .. math:: \ell(z, y) = \frac{-\log p_y}{-\sum_{k=1}^{C} \log p_k}

    Soft targets replace the numerator by ``-sum_k q_k log p_k``. The official code's
    ``scale`` is a plain multiplier and is left to the caller.

    Properties: shift-invariant, symmetric (``sum_y l(z, y) = 1``), bounded by 1. Not
    classification-calibrated: the expected loss tends to its infimum ``min_k eta_k`` by
    sending the least likely class to ``p = 0``, whatever the order of the others (NCE
    alone underfits; use it inside an active-passive sum). Raises on ``-inf`` logits,
    which make the denominator infinite.

    Reference: Ma et al., ICML 2020, arXiv:2006.13554.
    """
    inp = prepare(
        nce,
        logits,
        target,
        {},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    per = _nce_per_element(inp, torch.log_softmax(inp.logits, dim=1))
    return reduce_input(per, inp, reduction)


@register(
    "nce_rce",
    family="active_passive",
    reference=_APL_REF,
    formula=r"\ell(z, y) = \alpha\,\mathrm{NCE}(z, y) + \beta\,\mathrm{RCE}(z, y)",
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=lambda cfg, c: cfg["alpha"] + cfg["beta"] * RCE_SCALE),
        "classification_calibrated": {},
    },
    constraints={"alpha": Real(0.0), "beta": Real(0.0)},
    # NCE's denominator sums log p over every class: a -inf masked class makes it
    # infinite, and it needs two classes to be defined.
    neg_inf_ok=False,
    min_classes=2,
    test_configs=({"alpha": 10.0, "beta": 0.1}, {"alpha": 1.0, "beta": 100.0}),
)
def nce_rce(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Active-passive loss NCE + RCE.

    .. math:: \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k} + \beta\,A\,(1 - p_y),
              \qquad A = -\log 10^{-4}

    (RCE as in :func:`losslab.functional.rce`; soft targets use both parts' distribution
    forms.)

    Args:
        alpha, beta: >= 0. Default (1, 1): the official APL CIFAR-10 configs
            (``configs/cifar10/*/nce+rce.yaml``; ALFs ``config.py`` CIFAR-10 agrees).
            CIFAR-100 uses (10, 0.1), MNIST (1, 10) in APL and (1, 100) in ALFs.

    Properties: shift-invariant; symmetric (``sum_y l = alpha + beta A (C - 1)``); bounded by
    ``alpha + beta A``; classification-calibrated for ``beta > 0`` (the RCE part's expected
    loss is minimised only with the most likely class first, and NCE's infimum is reached
    along the same sequences). Raises on ``-inf`` logits.

    Reference: Ma et al., ICML 2020, arXiv:2006.13554.
    """
    inp = prepare(
        nce_rce,
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
    per = alpha * _nce_per_element(inp, logp) + beta * rce_per_element(inp, logp)
    return reduce_input(per, inp, reduction)


@register(
    "agce",
    family="active_passive",
    reference=_ALF_REF,
    formula=r"\ell(z, y) = \frac{(a+1)^q - (a + p_y)^q}{q}",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: _agce_bound(cfg["a"], cfg["q"])),
        "classification_calibrated": {},
    },
    constraints={"a": Real(0.0, lo_open=True), "q": Real(0.0, lo_open=True)},
    test_configs=({"a": 1.0, "q": 2.0}, {"a": 4.0, "q": 0.2}, {"a": 3.0, "q": 1.5}),
)
def agce(
    logits: Tensor,
    target: Tensor,
    *,
    a: float = 0.6,
    q: float = 0.6,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Asymmetric generalized cross-entropy (AGCE).

    .. math:: \ell(z, y) = \frac{(a + 1)^q - (a + p_y)^q}{q},\qquad a > 0,\ q > 0

    Soft targets take the expectation over the target.

    Args:
        a, q: > 0. Default ``a = 0.6, q = 0.6``: the ALFs ``config.py`` CIFAR-10 entry for
            AGCE (the class default in ``lnl/losses.py`` is ``a = 1, q = 2``; MNIST uses
            ``a = 4, q = 0.2``). The loss has no ``p`` hyperparameter: in ALFs, ``p`` belongs
            to the different asymmetric norm loss ``ANormLoss``.

    Properties: shift-invariant; bounded by ``((a+1)^q - a^q)/q`` (at ``p_y = 0``);
    classification-calibrated (a strictly decreasing function of ``p_y``, convex for
    ``q <= 1`` and concave for ``q >= 1``; either way the expected loss is minimised with
    the most likely class first). Asymmetric in the sense of Zhou et al., not symmetric.

    Reference: Zhou et al., ICML 2021, arXiv:2106.03110.
    """
    inp = prepare(
        agce,
        logits,
        target,
        {"a": a, "q": q},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    per = target_value(
        inp, lambda lp: _agce_of_logp(lp, a, q), torch.log_softmax(inp.logits, dim=1)
    )
    return reduce_input(per, inp, reduction)


@register(
    "aul",
    family="active_passive",
    reference=_ALF_REF,
    formula=r"\ell(z, y) = \frac{(a - p_y)^q - (a - 1)^q}{q}",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: _aul_bound(cfg["a"], cfg["q"])),
        "classification_calibrated": {},
    },
    constraints={"a": Real(1.0, lo_open=True), "q": Real(0.0, lo_open=True)},
    test_configs=({"a": 1.5, "q": 0.9}, {"a": 3.0, "q": 0.1}, {"a": 6.0, "q": 1.5}),
)
def aul(
    logits: Tensor,
    target: Tensor,
    *,
    a: float = 5.5,
    q: float = 3.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Asymmetric unhinged loss (AUL; ``AUELoss`` in the official code).

    .. math:: \ell(z, y) = \frac{(a - p_y)^q - (a - 1)^q}{q},\qquad a > 1,\ q > 0

    Soft targets take the expectation over the target.

    Args:
        a: > 1; q: > 0. Default ``a = 5.5, q = 3``: the ALFs ``config.py`` CIFAR-10 entry
            for AUL (class default ``a = 1.5, q = 0.9``; MNIST ``a = 3, q = 0.1``). No
            ``p`` hyperparameter exists for AUL (see :func:`agce`).

    Properties: shift-invariant; bounded by ``(a^q - (a-1)^q)/q`` (at ``p_y = 0``);
    classification-calibrated (strictly decreasing in ``p_y``, convex for ``q >= 1`` and
    concave for ``q <= 1``).

    Reference: Zhou et al., ICML 2021, arXiv:2106.03110.
    """
    inp = prepare(
        aul,
        logits,
        target,
        {"a": a, "q": q},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    per = target_value(inp, lambda lp: _aul_of_logp(lp, a, q), torch.log_softmax(inp.logits, dim=1))
    return reduce_input(per, inp, reduction)


@register(
    "nce_agce",
    family="active_passive",
    reference=_ALF_REF + "; active-passive sum: " + _APL_REF,
    formula=r"\ell = \alpha\,\mathrm{NCE}(z, y) + \beta\,\frac{(a+1)^q - (a + p_y)^q}{q}",
    properties={
        "shift_invariant": {},
        "bounded": Claim(
            bound=lambda cfg, c: cfg["alpha"] + cfg["beta"] * _agce_bound(cfg["a"], cfg["q"])
        ),
        "classification_calibrated": {},
    },
    constraints={
        "alpha": Real(0.0),
        "beta": Real(0.0),
        "a": Real(0.0, lo_open=True),
        "q": Real(0.0, lo_open=True),
    },
    # NCE's denominator sums log p over every class: a -inf masked class makes it
    # infinite, and it needs two classes to be defined.
    neg_inf_ok=False,
    min_classes=2,
    test_configs=(
        {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0},
        {"alpha": 0.0, "beta": 1.0, "a": 4.0, "q": 0.2},
    ),
)
def nce_agce(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 4.0,
    a: float = 6.0,
    q: float = 1.5,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Active-passive loss NCE + AGCE.

    .. math:: \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k}
              + \beta\,\frac{(a+1)^q - (a + p_y)^q}{q}

    Args:
        alpha, beta: >= 0; a, q: > 0. Default ``alpha = 1, beta = 4, a = 6, q = 1.5``: the
            ALFs ``config.py`` CIFAR-10 entry. (CIFAR-100: ``10, 0.1, 1.8, 3``; MNIST:
            ``0, 1, 4, 0.2``; the ``NCEandAGCE`` class default, used by the LDR benchmark
            with its own ``alpha``/``beta`` grid, is ``a = 3, q = 1.5``.)

    Properties: shift-invariant; bounded by ``alpha + beta ((a+1)^q - a^q)/q``;
    classification-calibrated for ``beta > 0`` (as for :func:`nce_rce`). Raises on
    ``-inf`` logits (NCE).

    Reference: Zhou et al., ICML 2021, arXiv:2106.03110; Ma et al., ICML 2020.
    """
    inp = prepare(
        nce_agce,
        logits,
        target,
        {"alpha": alpha, "beta": beta, "a": a, "q": q},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    passive = target_value(inp, lambda lp: _agce_of_logp(lp, a, q), logp)
    per = alpha * _nce_per_element(inp, logp) + beta * passive
    return reduce_input(per, inp, reduction)


@register(
    "nce_aul",
    family="active_passive",
    reference=_ALF_REF + "; active-passive sum: " + _APL_REF,
    formula=r"\ell = \alpha\,\mathrm{NCE}(z, y) + \beta\,\frac{(a - p_y)^q - (a - 1)^q}{q}",
    properties={
        "shift_invariant": {},
        "bounded": Claim(
            bound=lambda cfg, c: cfg["alpha"] + cfg["beta"] * _aul_bound(cfg["a"], cfg["q"])
        ),
        "classification_calibrated": {},
    },
    constraints={
        "alpha": Real(0.0),
        "beta": Real(0.0),
        "a": Real(1.0, lo_open=True),
        "q": Real(0.0, lo_open=True),
    },
    # NCE's denominator sums log p over every class: a -inf masked class makes it
    # infinite, and it needs two classes to be defined.
    neg_inf_ok=False,
    min_classes=2,
    test_configs=(
        {"alpha": 10.0, "beta": 0.015, "a": 6.0, "q": 3.0},
        {"alpha": 0.0, "beta": 1.0, "a": 3.0, "q": 0.1},
    ),
)
def nce_aul(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 4.0,
    a: float = 6.3,
    q: float = 1.5,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Active-passive loss NCE + AUL.

    .. math:: \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k}
              + \beta\,\frac{(a - p_y)^q - (a - 1)^q}{q}

    Args:
        alpha, beta: >= 0; a: > 1; q: > 0. Default ``alpha = 1, beta = 4, a = 6.3,
            q = 1.5``: the ALFs ``config.py`` CIFAR-10 entry. (CIFAR-100: ``10, 0.015, 6, 3``;
            MNIST: ``0, 1, 3, 0.1``; the ``NCEandAUE`` class default is ``a = 6, q = 1.5``.)

    Properties: shift-invariant; bounded by ``alpha + beta (a^q - (a-1)^q)/q``;
    classification-calibrated for ``beta > 0``. Raises on ``-inf`` logits (NCE).

    Reference: Zhou et al., ICML 2021, arXiv:2106.03110; Ma et al., ICML 2020.
    """
    inp = prepare(
        nce_aul,
        logits,
        target,
        {"alpha": alpha, "beta": beta, "a": a, "q": q},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    passive = target_value(inp, lambda lp: _aul_of_logp(lp, a, q), logp)
    per = alpha * _nce_per_element(inp, logp) + beta * passive
    return reduce_input(per, inp, reduction)
