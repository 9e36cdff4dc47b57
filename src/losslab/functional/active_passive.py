"""Normalized CE, the asymmetric losses AGCE/AUL, and their active-passive sums.

Active-passive losses (Ma et al., ICML 2020) add an "active" loss, which only looks at the
labelled class (here NCE), to a "passive" one, which also pushes the other classes down
(RCE, or the asymmetric AGCE/AUL of Zhou et al., ICML 2021).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._common import one_minus_exp
from losslab.functional._fused import TargetLogProb
from losslab.functional.noise_robust import RCE_SCALE, rce_per_element
from losslab.kinds.multiclass import MulticlassInput
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
# NCE's denominator sums log p over every class: a -inf masked class makes it infinite,
# and it needs two classes to be defined.
_NCE_RULES: dict[str, Any] = {"neg_inf_ok": False, "min_classes": 2}


def _nce_per_element(logp: TargetLogProb) -> Tensor:
    """``-log p_y / -sum_k log p_k`` (expectation of the numerator for soft targets), from
    a :class:`TargetLogProb` with its row sum.

    The denominator is at least ``C log C > 0`` for finite logits (Jensen), so no guard is
    needed; a ``-inf`` masked class makes it infinite, which the validator rejects.
    """
    assert logp.row_sum is not None
    return logp.value(lambda v: v) / logp.row_sum


def _agce_of_logp(lp: Tensor, a: float, q: float) -> Tensor:
    r"""``((a+1)^q - (a+p)^q)/q`` written as ``(a+1)^q (-expm1(q log1p(-u/(a+1))))/q``.

    ``u = 1 - p`` comes from ``-expm1(log p)``, so the loss is as precise as ``log p``
    for confident predictions, where the plain difference of powers cancels (``log p``
    itself has the float's absolute resolution near ``p = 1``).
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
    module="NCELoss",
    reference=_APL_REF,
    properties={"shift_invariant": {}, "symmetric": {}, "bounded": Claim(bound=1.0)},
    **_NCE_RULES,
)
def nce(inp: MulticlassInput) -> Tensor:
    r"""Normalized cross-entropy: CE divided by the sum of CE over all labels.

    $$
    \ell(z, y) = \frac{-\log p_y}{-\sum_{k=1}^{C} \log p_k}
    $$

    Soft targets replace the numerator by $-\sum_k q_k \log p_k$. Symmetric
    ($\sum_y \ell(z, y) = 1$) and bounded by 1, but not classification-calibrated: the
    expected loss tends to its infimum $\min_k \eta_k$ by sending the least likely class
    to $p = 0$, whatever the order of the others (NCE alone underfits; use it inside an
    active-passive sum). Undefined with `-inf` logits, which make the denominator
    infinite.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.nce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0462, 0.3031])
    """
    return _nce_per_element(TargetLogProb(inp, with_sum=True))


@register(
    "nce_rce",
    family="active_passive",
    module="NCERCELoss",
    reference=_APL_REF,
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=lambda cfg, c: cfg["alpha"] + cfg["beta"] * RCE_SCALE),
        "classification_calibrated": {},
    },
    constraints={"alpha": Real(0.0), "beta": Real(0.0)},
    test_configs=({"alpha": 10.0, "beta": 0.1}, {"alpha": 1.0, "beta": 100.0}),
    **_NCE_RULES,
)
def nce_rce(inp: MulticlassInput, *, alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    r"""Active-passive loss NCE + RCE.

    $$
    \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k} + \beta\,A\,(1 - p_y),
    \qquad A = -\log 10^{-4}
    $$

    (RCE as in `rce`; soft targets use both parts' distribution forms.) Symmetric
    ($\sum_y \ell = \alpha + \beta A (C - 1)$), bounded by $\alpha + \beta A$;
    classification-calibrated for $\beta > 0$ (the RCE part's expected loss is minimised
    only with the most likely class first, and NCE's infimum is reached along the same
    sequences). Undefined with `-inf` logits (NCE).

    Args:
        alpha: weight $\alpha \ge 0$ of NCE.
        beta: weight $\beta \ge 0$ of RCE. Defaults (1, 1): the official APL CIFAR-10
            configs (ALFs agrees); CIFAR-100 uses (10, 0.1), MNIST (1, 10) in APL and
            (1, 100) in ALFs.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.nce_rce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([2.0209, 6.1317])
    """
    logp = TargetLogProb(inp, with_sum=True)
    return alpha * _nce_per_element(logp) + beta * rce_per_element(logp)


@register(
    "agce",
    family="active_passive",
    module="AGCELoss",
    reference=_ALF_REF,
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: _agce_bound(cfg["a"], cfg["q"])),
        "classification_calibrated": {},
    },
    constraints={"a": Real(0.0, lo_open=True), "q": Real(0.0, lo_open=True)},
    test_configs=({"a": 1.0, "q": 2.0}, {"a": 4.0, "q": 0.2}, {"a": 3.0, "q": 1.5}),
)
def agce(inp: MulticlassInput, *, a: float = 0.6, q: float = 0.6) -> Tensor:
    r"""Asymmetric generalized cross-entropy (AGCE).

    $$
    \ell(z, y) = \frac{(a + 1)^q - (a + p_y)^q}{q},\qquad a > 0,\ q > 0
    $$

    Soft targets take the expectation over the target. Bounded by $((a+1)^q - a^q)/q$ (at
    $p_y = 0$); classification-calibrated (a strictly decreasing function of $p_y$,
    convex for $q \le 1$ and concave for $q \ge 1$; either way the expected loss is
    minimised with the most likely class first). Asymmetric in the sense of Zhou et al.,
    not symmetric. The loss has no $p$ hyperparameter ($p$ belongs to the different
    asymmetric norm loss).

    Args:
        a: $a > 0$.
        q: $q > 0$. Defaults $a = 0.6, q = 0.6$: the official CIFAR-10 configuration
            (class default $a = 1, q = 2$; MNIST $a = 4, q = 0.2$).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.agce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.1827, 0.5760])
    """
    return TargetLogProb(inp).value(lambda lp: _agce_of_logp(lp, a, q))


@register(
    "aul",
    family="active_passive",
    module="AULLoss",
    reference=_ALF_REF,
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: _aul_bound(cfg["a"], cfg["q"])),
        "classification_calibrated": {},
    },
    constraints={"a": Real(1.0, lo_open=True), "q": Real(0.0, lo_open=True)},
    test_configs=({"a": 1.5, "q": 0.9}, {"a": 3.0, "q": 0.1}, {"a": 6.0, "q": 1.5}),
)
def aul(inp: MulticlassInput, *, a: float = 5.5, q: float = 3.0) -> Tensor:
    r"""Asymmetric unhinged loss (AUL).

    $$
    \ell(z, y) = \frac{(a - p_y)^q - (a - 1)^q}{q},\qquad a > 1,\ q > 0
    $$

    Soft targets take the expectation over the target. Bounded by $(a^q - (a-1)^q)/q$ (at
    $p_y = 0$); classification-calibrated (strictly decreasing in $p_y$, convex for
    $q \ge 1$ and concave for $q \le 1$).

    Args:
        a: $a > 1$.
        q: $q > 0$. Defaults $a = 5.5, q = 3$: the official CIFAR-10 configuration
            (class default $a = 1.5, q = 0.9$; MNIST $a = 3, q = 0.1$).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.aul(logits, torch.tensor([0, 2]), reduction="none")
        tensor([ 4.5518, 14.7015])
    """
    return TargetLogProb(inp).value(lambda lp: _aul_of_logp(lp, a, q))


@register(
    "nce_agce",
    family="active_passive",
    module="NCEAGCELoss",
    reference=_ALF_REF + "; active-passive sum: " + _APL_REF,
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
    test_configs=(
        {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0},
        {"alpha": 0.0, "beta": 1.0, "a": 4.0, "q": 0.2},
    ),
    **_NCE_RULES,
)
def nce_agce(
    inp: MulticlassInput,
    *,
    alpha: float = 1.0,
    beta: float = 4.0,
    a: float = 6.0,
    q: float = 1.5,
) -> Tensor:
    r"""Active-passive loss NCE + AGCE.

    $$
    \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k}
          + \beta\,\frac{(a+1)^q - (a + p_y)^q}{q}
    $$

    Bounded by $\alpha + \beta ((a+1)^q - a^q)/q$; classification-calibrated for
    $\beta > 0$ (as `nce_rce`). Undefined with `-inf` logits (NCE).

    Args:
        alpha: weight $\alpha \ge 0$ of NCE.
        beta: weight $\beta \ge 0$ of AGCE.
        a: $a > 0$.
        q: $q > 0$. Defaults $\alpha = 1, \beta = 4, a = 6, q = 1.5$: the official CIFAR-10
            configuration (CIFAR-100: 10, 0.1, 1.8, 3; MNIST: 0, 1, 4, 0.2).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.nce_agce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([2.2978, 6.8466])
    """
    logp = TargetLogProb(inp, with_sum=True)
    passive = logp.value(lambda lp: _agce_of_logp(lp, a, q))
    return alpha * _nce_per_element(logp) + beta * passive


@register(
    "nce_aul",
    family="active_passive",
    module="NCEAULLoss",
    reference=_ALF_REF + "; active-passive sum: " + _APL_REF,
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
    test_configs=(
        {"alpha": 10.0, "beta": 0.015, "a": 6.0, "q": 3.0},
        {"alpha": 0.0, "beta": 1.0, "a": 3.0, "q": 0.1},
    ),
    **_NCE_RULES,
)
def nce_aul(
    inp: MulticlassInput,
    *,
    alpha: float = 1.0,
    beta: float = 4.0,
    a: float = 6.3,
    q: float = 1.5,
) -> Tensor:
    r"""Active-passive loss NCE + AUL.

    $$
    \ell = \alpha\,\frac{-\log p_y}{-\sum_k \log p_k}
          + \beta\,\frac{(a - p_y)^q - (a - 1)^q}{q}
    $$

    Bounded by $\alpha + \beta (a^q - (a-1)^q)/q$; classification-calibrated for
    $\beta > 0$. Undefined with `-inf` logits (NCE).

    Args:
        alpha: weight $\alpha \ge 0$ of NCE.
        beta: weight $\beta \ge 0$ of AUL.
        a: $a > 1$.
        q: $q > 0$. Defaults $\alpha = 1, \beta = 4, a = 6.3, q = 1.5$: the official
            CIFAR-10 configuration (CIFAR-100: 10, 0.015, 6, 3; MNIST: 0, 1, 3, 0.1).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.nce_aul(logits, torch.tensor([0, 2]), reduction="none")
        tensor([2.0404, 6.3013])
    """
    logp = TargetLogProb(inp, with_sum=True)
    passive = logp.value(lambda lp: _aul_of_logp(lp, a, q))
    return alpha * _nce_per_element(logp) + beta * passive
