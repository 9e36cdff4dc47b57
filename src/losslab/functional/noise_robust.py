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

from losslab._validate import Int, Real
from losslab.functional._common import one_minus_exp
from losslab.functional._fused import TargetLogProb, softmax_separable, target_log_prob
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, PerSampleState, register

#: RCE replaces ``log 0`` by ``log(RCE_LABEL_CLAMP)``: the label is clamped to
#: ``[1e-4, 1]`` before the log. This is part of the loss's definition (it sets its scale),
#: not a numerical guard.
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


def rce_per_element(logp: TargetLogProb) -> Tensor:
    r"""Reverse cross-entropy :math:`-\sum_k p_k \log \max(q_k, 10^{-4})` per element.

    For index targets this is exactly ``A (1 - p_y)``, computed from the target's log-prob
    alone as ``-A expm1(log p_y)``; soft targets use the formula on the distribution.
    """
    if logp.full is None:
        return logp.value(lambda lp: RCE_SCALE * one_minus_exp(lp))
    assert logp.inp.soft is not None
    cost = -torch.log(logp.inp.soft.clamp(min=RCE_LABEL_CLAMP, max=1.0))
    return (logp.full.exp() * cost).sum(dim=1)


@register(
    "mse",
    family="noise_robust",
    module="MSELoss",
    reference="Brier. Verification of forecasts expressed in terms of probability. Monthly "
    "Weather Review 1950; as a noisy-label baseline: Ghosh, Kumar, Sastry, AAAI 2017, "
    "arXiv:1712.09482",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=2.0),
        "classification_calibrated": {},
    },
)
def mse(inp: MulticlassInput) -> Tensor:
    r"""Squared error between the softmax and the target distribution (Brier score).

    $$
    \ell(z, q) = \sum_{k=1}^{C} (p_k - q_k)^2,\qquad p = \mathrm{softmax}(z)
    $$

    Summed (not averaged) over classes; for an index target $q = e_y$ and
    $\ell = (1 - p_y)^2 + \sum_{k \ne y} p_k^2$. Bounded by 2 (reached as the mass moves
    to a wrong class); the Brier score is strictly proper. Not symmetric:
    $\sum_y \ell(z, y) = C - 2 + C \lVert p \rVert^2$ depends on $z$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.mse(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0782, 0.6012])
    """
    if inp.soft is None:
        # sum_k (p_k - e_yk)^2 = sum_k p_k^2 + 1 - 2 p_y: separable in the softmax.
        return softmax_separable(
            inp.logits, inp.index, torch.square, _twice, _brier_target, _minus_two
        )
    p = torch.softmax(inp.logits, dim=1)
    return (p - inp.soft).square().sum(dim=1)


@register(
    "rce",
    family="noise_robust",
    module="RCELoss",
    reference=_SCE_REF,
    properties={
        "shift_invariant": {},
        "symmetric": {},
        "bounded": Claim(bound=RCE_SCALE),
        "classification_calibrated": {},
    },
)
def rce(inp: MulticlassInput) -> Tensor:
    r"""Reverse cross-entropy: the cross-entropy of the label under the prediction.

    $$
    \ell(z, q) = -\sum_k p_k \log \max(q_k, 10^{-4}),\qquad
    \ell(z, y) = A\,(1 - p_y),\quad A = -\log 10^{-4} = 4 \ln 10 \approx 9.21
    $$

    The label clamp $10^{-4}$ defines $\log 0$ and thereby the loss's scale $A$. No log
    of $p$ is taken. Symmetric ($\sum_y \ell(z, y) = A (C - 1)$), bounded by $A$, a
    positive multiple of MAE.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.rce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([1.9747, 5.8286])
    """
    return rce_per_element(TargetLogProb(inp))


@register(
    "sce",
    family="noise_robust",
    module="SCELoss",
    reference=_SCE_REF,
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "reduces_to_ce": {"alpha": 1.0, "beta": 0.0},
    },
    constraints={"alpha": Real(0.0), "beta": Real(0.0)},
    test_configs=({"alpha": 6.0, "beta": 0.1}, {"alpha": 1.0, "beta": 0.0}),
)
def sce(inp: MulticlassInput, *, alpha: float = 0.1, beta: float = 1.0) -> Tensor:
    r"""Symmetric cross-entropy: $\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}$.

    $$
    \ell(z, q) = -\alpha \sum_k q_k \log p_k - \beta \sum_k p_k \log \max(q_k, 10^{-4})
    $$

    For an index target: $-\alpha \log p_y + \beta A (1 - p_y)$ with $A = -\log 10^{-4}$
    (see `rce`). CE is the exact `-log_softmax`. Unbounded for $\alpha > 0$; equals CE at
    $\alpha = 1, \beta = 0$.

    Args:
        alpha: weight $\alpha \ge 0$ of CE; 0.1 in the official CIFAR-10 run (CIFAR-100
            6.0, MNIST 0.01).
        beta: weight $\beta \ge 0$ of RCE; 1.0 in the same run (CIFAR-100 0.1).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.sce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([1.9989, 5.9288])
    """
    logp = TargetLogProb(inp)
    return alpha * -logp.value(lambda v: v) + beta * rce_per_element(logp)


def _lq(logp: Tensor, q: float) -> Tensor:
    """``(1 - p^q) / q`` from ``log p``, with no cancellation beyond that of ``log p``."""
    return -torch.expm1(q * logp) / q


def _tgce_prune(inp: MulticlassInput, previous: Tensor, *, k: float, **_: Any) -> Tensor:
    """Keep an example while its label's probability exceeds ``k``: ``L_q(p_y) < L_q(k)``."""
    logp_y = target_log_prob(inp.logits, inp.index)
    return (logp_y > math.log(k)).to(previous.dtype) if k > 0 else torch.ones_like(previous)


def _tgce_due(cfg: Mapping[str, Any], epoch: int) -> bool:
    start, every = cfg["prune_start"], cfg["prune_every"]
    return epoch >= start and (epoch - start) % every == 0


@register(
    "tgce",
    family="noise_robust",
    module="TGCELoss",
    reference="Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural "
    "Networks with Noisy Labels. NeurIPS 2018, arXiv:1805.07836; code: "
    "github.com/AlanChou/Truncated-Loss",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: 1.0 / cfg["q"]),
        "classification_calibrated": {},
    },
    constraints={
        "q": Real(0.0, 1.0, lo_open=True),
        "k": Real(0.0, 1.0, hi_open=True),
        "prune_start": Int(0),
        "prune_every": Int(1),
    },
    state=PerSampleState(
        "sample_keep",
        init=lambda cfg: 1.0,
        constraint=Real(0.0, 1.0),
        doc="per-element weights $w_i \\in [0, 1]$ `(N, ...)` (1: kept, 0: pruned); `None` "
        "keeps every element.",
        refresh=_tgce_prune,
        refresh_due=_tgce_due,
    ),
    soft_targets=False,
    test_configs=({"q": 0.05, "k": 0.3}, {"q": 1.0, "k": 0.0}),
)
def tgce(
    inp: MulticlassInput,
    *,
    q: float = 0.7,
    k: float = 0.5,
    prune_start: int = 40,
    prune_every: int = 10,
    sample_keep: Tensor | None = None,
) -> Tensor:
    r"""Truncated generalized cross-entropy (truncated $\mathcal{L}_q$), as published.

    $$
    \ell_i(z, y) = w_i\,\frac{1 - p_y^{q}}{q},\qquad
    w_i \leftarrow \mathbb{1}\big[p_{y_i} > k\big] \text{ at pruning epochs}
    $$

    Every example starts with $w_i = 1$ (plain $\mathcal{L}_q$, i.e. GCE). Before epoch
    `prune_start` and every `prune_every` epochs after it, a pass over the training set
    sets $w_i = 1$ where the model's probability of the label exceeds $k$ and $w_i = 0$
    elsewhere (the examples it treats as mislabelled). The module `losslab.TGCELoss`
    keeps $w$ per example: training calls take `index=`, `refresh_due(epoch)` tells a
    training loop when to call `refresh(logits, target, index=...)` over the training set
    (`losslab bench` does). This function evaluates the loss at given weights.

    Args:
        q: $q \in (0, 1]$; the paper's 0.7.
        k: truncation threshold $k \in [0, 1)$; the paper's 0.5.
        prune_start: the first (0-based) epoch before which weights are refreshed; the
            official code's 40 (of 120 epochs).
        prune_every: epochs between refreshes; the official code's 10.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.tgce(logits, torch.tensor([0, 2]), sample_keep=torch.tensor([1.0, 0.0]),
        ...        reduction="none")
        tensor([0.2220, 0.0000])
    """
    per = _lq(target_log_prob(inp.logits, inp.index), q)
    if sample_keep is None:
        return per
    return per * sample_keep.detach().to(per.dtype)


@register(
    "tgce_stateless",
    family="noise_robust",
    module="TGCEStatelessLoss",
    reference="Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural "
    "Networks with Noisy Labels. NeurIPS 2018, arXiv:1805.07836",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=lambda cfg, c: (1.0 - cfg["k"] ** cfg["q"]) / cfg["q"]),
    },
    constraints={"q": Real(0.0, 1.0, lo_open=True), "k": Real(0.0, 1.0, hi_open=True)},
    test_configs=({"k": 0.0}, {"q": 0.05, "k": 0.3}, {"q": 1.0, "k": 0.9}),
)
def tgce_stateless(inp: MulticlassInput, *, q: float = 0.7, k: float = 0.5) -> Tensor:
    r"""Truncated $\mathcal{L}_q$ evaluated at the current prediction (not the paper's form).

    $$
    \ell(z, y) = \min\Big(\frac{1 - p_y^{q}}{q},\ \frac{1 - k^{q}}{q}\Big)
    $$

    The truncation of the paper's definition applied at every call instead of at pruning
    epochs (the published training procedure is `tgce`). Where $p_y \le k$ the loss is
    constant and its gradient exactly zero, so with $k = 0.5$ a sample contributes no
    gradient until its label is already the model's majority prediction, and a model
    started near uniform does not train. Kept for analysis; train with `tgce`. Soft
    targets take the expectation over the target. Classification calibration is not
    declared: the loss is flat below $k$.

    Args:
        q: $q \in (0, 1]$; the paper's 0.7.
        k: truncation threshold $k \in [0, 1)$; the paper's 0.5. $k = 0$ is `gce`.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.tgce_stateless(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2220, 0.5492])
    """
    cap = (1.0 - float(k) ** q) / q

    def per_class(lp: Tensor) -> Tensor:
        # (1 - p^q)/q = -expm1(q log p)/q: no cancellation beyond that of log p.
        return (-torch.expm1(q * lp) / q).clamp(max=cap)

    return TargetLogProb(inp).value(per_class)


@register(
    "rll",
    family="noise_robust",
    module="RLLLoss",
    reference="Patel, Sastry. Memorization in Deep Neural Networks: Does the Loss Function "
    "Matter? PAKDD 2021, arXiv:2107.09957",
    properties={"shift_invariant": {}, "symmetric": {}, "classification_calibrated": {}},
    constraints={"alpha": Real(0.0, lo_open=True)},
    test_configs=({"alpha": 1.0}, {"alpha": 10.0}),
    min_classes=2,
)
def rll(inp: MulticlassInput, *, alpha: float = 0.1) -> Tensor:
    r"""Robust log loss (RLL).

    $$
    \ell(z, y) = -\log(\alpha + p_y) + \frac{1}{C - 1}\sum_{j \ne y} \log(\alpha + p_j)
    $$

    Symmetric: summed over $y$ the two parts cancel, $\sum_y \ell(z, y) = 0$. Its range is
    $[\log\frac{\alpha}{1+\alpha}, \log(1 + \frac{1}{\alpha (C-1)})]$, so it takes negative
    values (the `bounded` property, which requires $\ell \ge 0$, is not declared).
    Classification-calibrated: the expected loss
    $\sum_k (1 - C \eta_k) \log(\alpha + p_k) / (C - 1)$ is minimised by $p$ ordered like
    $\eta$. Soft targets take the expectation over the target. Needs $C \ge 2$.

    Args:
        alpha: $\alpha > 0$. No official code exists; the LDR benchmark grids
            $\{0.1, 1, 10\}$, whose first value is the default.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.rll(logits, torch.tensor([0, 2]), reduction="none")
        tensor([-1.5097, -0.1157])
    """
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

        return softmax_separable(inp.logits, inp.index, phi, dphi, psi, dpsi, 1.0 / (c - 1))
    logp = torch.log_softmax(inp.logits, dim=1)
    log_alpha = math.log(alpha)
    # log(alpha + p) = log(alpha) + log1p(p / alpha): one exp and one log1p per class.
    total = torch.log1p(torch.exp(logp - log_alpha)).sum(dim=1, keepdim=True) + c * log_alpha
    log_ap = torch.logaddexp(torch.full_like(logp, log_alpha), logp)
    return inp.gather(-log_ap + (total - log_ap) / (c - 1))


def _jsc_bound(cfg: Mapping[str, Any], num_classes: int) -> float:
    pi = cfg["pi"]
    entropy = -pi * math.log(pi) - (1 - pi) * math.log(1 - pi)
    return entropy / (-(1 - pi) * math.log(1 - pi))


@register(
    "jsc",
    family="noise_robust",
    module="JSCLoss",
    reference="Englesson, Azizpour. Generalized Jensen-Shannon Divergence Loss for Learning "
    "with Noisy Labels. NeurIPS 2021, arXiv:2105.04522; code: github.com/ErikEnglesson/GJS",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=_jsc_bound),
        "classification_calibrated": {},
    },
    constraints={"pi": Real(0.0, 1.0, lo_open=True, hi_open=True)},
    test_configs=({"pi": 0.1}, {"pi": 0.3}, {"pi": 0.9}),
)
def jsc(inp: MulticlassInput, *, pi: float = 0.7) -> Tensor:
    r"""Scaled Jensen-Shannon loss between the label distribution and the prediction.

    $$
    \ell(z, q) = \frac{\pi\,\mathrm{KL}(q \Vert m) + (1-\pi)\,\mathrm{KL}(p \Vert m)}
                      {-(1-\pi)\log(1-\pi)},\qquad m = \pi q + (1 - \pi) p
    $$

    with $\pi$ the weight on the label distribution $q$ (one-hot for index targets; for
    soft targets it is the divergence between $q$ and $p$, zero iff $p = q$). The scale
    makes the loss tend to CE as $\pi \to 0$ and to MAE $1 - p_y$ as $\pi \to 1$. This is
    the GJS loss with a single prediction (the paper's JS). Computed without any log of a
    sum: each log is a `logaddexp` in $\log p$, so vanishing or `-inf`-masked
    probabilities stay exact. Bounded by $H(\pi, 1 - \pi) / (-(1-\pi) \log(1-\pi))$.

    Args:
        pi: $\pi \in (0, 1)$; 0.7 in the official CIFAR-10 configs at 20 % and 40 %
            symmetric noise (0.1 clean, 0.9 at 60 %, 0.3 at 20 % asymmetric).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.jsc(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2292, 0.7995])
    """
    log_pi, log_rest = math.log(pi), math.log1p(-pi)
    if inp.soft is None:
        # One-hot target: with m_y = pi + (1 - pi) p_y, KL(e_y || m) = -log m_y and
        # KL(p || m) = -(1 - p_y) log(1 - pi) + p_y (log p_y - log m_y): O(1) per row.
        logp_y = target_log_prob(inp.logits, inp.index)
        log_m_y = torch.logaddexp(torch.full_like(logp_y, log_pi), log_rest + logp_y)
        kl_q = -log_m_y
        kl_p = -one_minus_exp(logp_y) * log_rest + logp_y.exp() * (logp_y - log_m_y)
        return (pi * kl_q + (1 - pi) * kl_p) / (-(1 - pi) * log_rest)
    logp = torch.log_softmax(inp.logits, dim=1)
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
    return (pi * kl_q + (1 - pi) * kl_p) / (-(1 - pi) * log_rest)
