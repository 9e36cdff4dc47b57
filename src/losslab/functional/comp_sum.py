"""The comp-sum family of Mao, Mohri & Zhong (ICML 2023) and its named members."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._common import expm1_linear_tail, tail_start
from losslab.functional._fused import TargetLogProb
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, register

_REF = (
    "Mao, Mohri, Zhong. Cross-Entropy Loss Functions: Theoretical Analysis and "
    "Applications. ICML 2023, arXiv:2304.07288"
)


def comp_sum_of_logp(logp: Tensor, tau: float, start: float) -> Tensor:
    r"""``Phi^tau(1/p - 1)`` written in ``log p``.

    ``tau == 1``: ``-log p``; otherwise ``expm1((tau - 1) log p) / (1 - tau)``. For
    ``tau < 1`` the argument is positive and grows without bound, so its exponential
    continues linearly past ``start`` (see ``expm1_linear_tail``).
    """
    if tau == 1.0:
        return -logp
    x = (tau - 1.0) * logp
    e = expm1_linear_tail(x, start) if tau < 1.0 else torch.expm1(x)
    return e / (1.0 - tau)


def _comp_sum_value(inp: MulticlassInput, tau: float) -> Tensor:
    start = tail_start(inp.input_dtype)
    return TargetLogProb(inp).value(lambda lp: comp_sum_of_logp(lp, tau, start))


@register(
    "comp_sum",
    family="comp_sum",
    module="CompSumLoss",
    reference=_REF,
    properties={
        "shift_invariant": {},
        "classification_calibrated": {"tau": 1.5},
        "reduces_to_ce": {"tau": 1.0},
        "convex": {"tau": 0.0},
    },
    constraints={"tau": Real(0.0, 2.0)},
    test_configs=({"tau": 0.0}, {"tau": 0.5}, {"tau": 1.5}, {"tau": 2.0}),
)
def comp_sum(inp: MulticlassInput, *, tau: float = 1.0) -> Tensor:
    r"""Comp-sum loss $\Phi^\tau$ of Mao, Mohri & Zhong (2023).

    $$
    \ell^\tau(z, y) = \Phi^\tau\Big(\sum_{k \ne y} e^{z_k - z_y}\Big),\qquad
    \Phi^\tau(u) = \frac{(1+u)^{1-\tau} - 1}{1 - \tau}\ (\tau \ne 1),\quad
    \Phi^1(u) = \log(1 + u)
    $$

    With $u = 1/p_y - 1$ this is $(p_y^{\tau-1} - 1)/(1 - \tau)$. Members: $\tau = 0$
    sum-exponential $1/p_y - 1$; $\tau = 1$ cross-entropy; $\tau \in (1, 2)$ generalized
    CE with $q = \tau - 1$; $\tau = 2$ MAE $1 - p_y$. Computed from `log_softmax`;
    soft targets take the expectation over the target distribution.

    Args:
        tau: $\tau \in [0, 2]$. The paper gives no default; 1 (cross-entropy, the member
            with the tightest H-consistency bound) is used.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.comp_sum(logits, torch.tensor([0, 2]), tau=0.5, reduction="none")
        tensor([0.2565, 1.3006])
    """
    return _comp_sum_value(inp, float(tau))


@register(
    "sum_exp",
    family="comp_sum",
    module="SumExpLoss",
    reference=_REF,
    properties={"shift_invariant": {}, "convex": {}, "classification_calibrated": {}},
)
def sum_exp(inp: MulticlassInput) -> Tensor:
    r"""Sum-exponential loss, the $\tau = 0$ comp-sum member.

    $$
    \ell(z, y) = \sum_{k \ne y} e^{z_k - z_y} = \frac{1}{p_y} - 1
    $$

    The exponential is exact while $1/p_y \le e^{16}$ (about $9 \cdot 10^6$; $e^{9.7}$
    for float16 logits, so that the gradient fits in float16) and continues linearly
    (value and slope) past it, so values and gradients stay finite at any logit gap and
    the loss stays convex.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.sum_exp(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2729, 1.7236])
    """
    return _comp_sum_value(inp, 0.0)


@register(
    "gce",
    family="comp_sum",
    module="GCELoss",
    reference="Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural "
    "Networks with Noisy Labels. NeurIPS 2018, arXiv:1805.07836; comp-sum view: " + _REF,
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "bounded": Claim(bound=lambda cfg, c: 1.0 / cfg["q"]),
    },
    constraints={"q": Real(0.0, 1.0, lo_open=True)},
    test_configs=({"q": 0.05}, {"q": 1.0}),
)
def gce(inp: MulticlassInput, *, q: float = 0.7) -> Tensor:
    r"""Generalized cross-entropy (the $\mathcal{L}_q$ loss).

    $$
    \ell(z, y) = \frac{1 - p_y^{q}}{q},\qquad q \in (0, 1]
    $$

    $q \to 0$ recovers CE, $q = 1$ is MAE; comp-sum with $\tau = 1 + q$. Bounded by
    $1/q$.

    Args:
        q: $q \in (0, 1]$; the paper's and official code's 0.7.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.gce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2220, 0.7201])
    """
    return _comp_sum_value(inp, 1.0 + float(q))


@register(
    "mae",
    family="comp_sum",
    module="MAELoss",
    reference="Ghosh, Kumar, Sastry. Robust Loss Functions under Label Noise for Deep Neural "
    "Networks. AAAI 2017, arXiv:1712.09482; comp-sum view: " + _REF,
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=1.0),
        "classification_calibrated": {},
    },
)
def mae(inp: MulticlassInput) -> Tensor:
    r"""Mean absolute error between the softmax and the one-hot target, halved.

    $$
    \ell(z, y) = 1 - p_y = \tfrac12 \lVert p - e_y \rVert_1
    $$

    Symmetric ($\sum_k \ell(z, k) = C - 1$), hence robust to uniform label noise (Ghosh
    et al. 2017).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.mae(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2144, 0.6328])
    """
    return _comp_sum_value(inp, 2.0)
