"""Multi-label retrieval losses of DEXML: the decoupled softmax and the soft top-k loss.

Both take query-label similarity scores ``(N, L)`` (cosines of normalised embeddings, one
column per label or document) with the positives as a target: a class index for one
positive, or probabilities spread over the positives of a multi-label query (the target
values of DEXML, normalised per row).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab._validate import Int, Real
from losslab.functional._fused import ScaledCERows, as_rows
from losslab.functional._pairs import masked_logsumexp
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


@register(
    "decoupled_softmax",
    family="retrieval",
    module="DecoupledSoftmaxLoss",
    reference="Gupta, Bhojanapalli, Jain, Kumar, Sellamanickam, Varma (DEXML). Dual-Encoders "
    "for Extreme Multi-Label Classification. ICLR 2024, arXiv:2310.10636; official code "
    "github.com/nilesh2797/DEXML",
    properties={"shift_invariant": {}},
    constraints={"temperature": Real(0.0, lo_open=True)},
    test_configs=({"temperature": 1.0},),
)
def decoupled_softmax(inp: MulticlassInput, *, temperature: float = 0.05) -> Tensor:
    r"""Decoupled softmax: each positive competes only with the negatives.

    $$
    \ell = -\sum_{j \in P} q_j \log\frac{e^{s_j}}{e^{s_j} + \sum_{l \notin P} e^{s_l}},
    \qquad s = z / \tau
    $$

    with $P$ the positives (the target class, or the labels with probability $q_j > 0$;
    DEXML's uniform $q_j = 1/|P|$ is the mean over positives). Other positives leave the
    denominator, unlike the softmax cross-entropy, which a single positive recovers.

    Args:
        temperature: $\tau > 0$ dividing the cosine scores (DEXML: 0.05).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> s = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
        >>> F.decoupled_softmax(s, torch.tensor([[0.5, 0.5, 0.0, 0.0]]), temperature=1.0)
        tensor(0.3955)
    """
    if inp.soft is None:
        # one positive: every other class is a negative, so this is the cross-entropy
        # of s, computed without the masks (and without subnormal exponentials)
        z = as_rows(inp.logits)
        y = inp.index.reshape(-1)
        per = ScaledCERows.apply(z, y, z.gather(1, y.unsqueeze(1)), 1.0 / temperature)
        return per.reshape(inp.index.shape)
    s = inp.logits / temperature
    q = inp.soft
    negatives = q == 0
    neg_lse = masked_logsumexp(s, negatives, dim=1).unsqueeze(1)
    has_neg = negatives.any(dim=1, keepdim=True)
    denom = torch.where(has_neg, torch.logaddexp(s, neg_lse), s)
    # Masked (-inf) classes are negatives with q = 0: where() keeps them out of the sum.
    return -torch.where(q > 0, q * (s - denom), 0.0).sum(dim=1)


def _excess(u: Tensor, k: float) -> Tensor:
    """Whether ``sum_l sigmoid(u_l) > k`` along dim 1, decided without cancellation.

    The sum is ``#{u > 0} + sum_{u <= 0} sigma(u) - sum_{u > 0} sigma(-u)``. When
    ``#{u > 0} = k`` the two tails decide, and they can be far below the float's
    resolution next to ``k`` (or underflow), so they are compared as log-sum-exps.
    """
    pos = u > 0
    count = pos.sum(dim=1, keepdim=True).to(u.dtype)
    log_below = masked_logsumexp(torch.nn.functional.logsigmoid(u), ~pos, dim=1).unsqueeze(1)
    log_above = masked_logsumexp(torch.nn.functional.logsigmoid(-u), pos, dim=1).unsqueeze(1)
    direct = (count - k) + log_below.exp() - log_above.exp()
    return torch.where(count == k, log_below > log_above, direct > 0)


class _Threshold(torch.autograd.Function):
    """``t`` with ``sum_l sigmoid(alpha (s_l + t)) = K`` along dim 1, by bisection; the
    backward is the implicit-function gradient ``dt/ds = -v / sum(v)``,
    ``v = sigma'(alpha (s + t))``, so nothing is differentiated through the search."""

    @staticmethod
    def forward(ctx: Any, s: Tensor, k: float, alpha: float, iterations: int) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            lo = -s.amax(dim=1, keepdim=True) - 10.0 / alpha
            hi = -s.amin(dim=1, keepdim=True) + 10.0 / alpha
            for _ in range(iterations):
                mid = (lo + hi) / 2
                above = _excess(alpha * (s + mid), k)
                hi = torch.where(above, mid, hi)
                lo = torch.where(above, lo, mid)
            t = (lo + hi) / 2
        u = alpha * (s + t)
        ctx.save_for_backward(torch.sigmoid(u) * torch.sigmoid(-u))
        return t

    @staticmethod
    def backward(ctx: Any, grad_t: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        share = v / v.sum(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
        return -grad_t * share, None, None, None


def soft_topk_probs(scores: Tensor, k: float, alpha: float, iterations: int = 64) -> Tensor:
    r"""The soft top-k memberships $p = \sigma(\alpha(s + t))$, $\sum_l p_l = K$ along
    dim 1, with the implicit-function gradient (rows of the Jacobian sum to 0)."""
    t = _Threshold.apply(scores, k, alpha, iterations)
    return torch.sigmoid(alpha * (scores + t))


@register(
    "soft_topk",
    family="retrieval",
    module="SoftTopKLoss",
    reference="Gupta, Bhojanapalli, Jain, Kumar, Sellamanickam, Varma (DEXML). Dual-Encoders "
    "for Extreme Multi-Label Classification. ICLR 2024, arXiv:2310.10636; official code "
    "github.com/nilesh2797/DEXML",
    constraints={
        "k": Int(1),
        "alpha": Real(0.0, lo_open=True),
        "temperature": Real(0.0, lo_open=True),
        "iterations": Int(1),
    },
    test_configs=({"k": 2}, {"k": 1, "alpha": 0.5, "temperature": 1.0}),
    neg_inf_ok=False,
)
def soft_topk(
    inp: MulticlassInput,
    *,
    k: int = 5,
    alpha: float = 2.0,
    temperature: float = 0.05,
    iterations: int = 64,
) -> Tensor:
    r"""Soft top-k loss: the positives' log-membership in a smooth top-K set.

    $$
    \ell = -\sum_{j \in P} q_j \log p_j,\qquad p_l = \sigma\big(\alpha(s_l + t)\big),\quad
    \sum_l p_l = K,\quad s = z / \tau
    $$

    The threshold $t$ is found by bisection (no gradient through the search); its
    gradient is the implicit-function one, $\partial t / \partial s = -v / \sum v$ with
    $v = \sigma'(\alpha(s + t))$, so each row of the Jacobian of $p$ sums to 0 (the loss
    is unchanged by shifting a row). With $K \ge L$ candidates every label is in the top
    $K$ and the loss is 0. As $\alpha \to \infty$, $p$ tends to the hard top-K indicator.

    Args:
        k: the size $K \ge 1$ of the top set (DEXML: 5).
        alpha: steepness $\alpha > 0$ applied to $s$ (DEXML: 2).
        temperature: $\tau > 0$ dividing the cosine scores (DEXML: 0.05).
        iterations: bisection steps (DEXML's function default 64; its config uses 32,
            too few for float64 gradient checks).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> s = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
        >>> F.soft_topk(s, torch.tensor([0]), k=2, alpha=1.0, temperature=1.0)
        tensor(0.2014)
    """
    s = inp.logits / temperature
    q = inp.target_probs()
    if k >= inp.num_classes:
        return (s * 0.0).sum(dim=1)
    logp = torch.nn.functional.logsigmoid(
        alpha * (s + _Threshold.apply(s, float(k), alpha, iterations))
    )
    return -torch.where(q > 0, q * logp, 0.0).sum(dim=1)
