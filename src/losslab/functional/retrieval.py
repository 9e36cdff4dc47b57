"""Multi-label retrieval losses of DEXML: the decoupled softmax and the soft top-k loss.

Both take query-label similarity scores ``(N, L)`` (cosines of normalised embeddings, one
column per label or document) with the positives as a target: a class index for one
positive, or probabilities spread over the positives of a multi-label query (the target
values of DEXML, normalised per row).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab._validate import Int, Real, fail
from losslab.functional._fused import (
    ScaledCERows,
    as_rows,
    block_scratch,
    exp_floor,
    row_blocks,
)
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


def _start(x: Tensor, k: float) -> tuple[Tensor, Tensor, Tensor]:
    """Row maxima and minima of ``x`` and a first ``tau``: for integer ``k`` halfway between
    the ``k``-th and ``(k + 1)``-th largest ``x`` (the root when those two memberships
    dominate the tails), else where the ``(floor(k) + 1)``-th largest has membership
    ``k - floor(k)``."""
    cols = x.shape[1]
    whole = math.floor(k)
    depth = whole + 1  # the deepest rank from the top that the start reads
    if depth <= cols // 2:
        ranked = x.topk(depth, dim=1).values  # ranked[:, r - 1] is the r-th largest
        high, low = ranked[:, :1], x.amin(dim=1, keepdim=True)
        last = ranked[:, -1:]
        before = ranked[:, -2:-1] if whole == k else last
    else:
        ranked = x.topk(cols - whole + 1, dim=1, largest=False).values  # ascending
        high, low = x.amax(dim=1, keepdim=True), ranked[:, :1]
        last, before = ranked[:, -2:-1], ranked[:, -1:]
    if whole == k:
        return high, low, (last + before).mul_(-0.5)
    return high, low, math.log((k - whole) / (1 - k + whole)) - last


def _threshold_rows(x: Tensor, k: float, iterations: int, share: Tensor) -> Tensor:
    """``tau`` ``(R, 1)`` with ``sum_l sigmoid(x_l + tau) = k`` per row of ``(R, C)`` ``x``
    (``0 < k < C``); ``v / sum(v)``, ``v = sigma'(x + tau)``, is written into ``share``.

    Newton's method on ``f(tau) = sum_l sigmoid(x_l + tau) - k``, kept inside a bracket
    ``[lo, hi]`` with ``f(lo) <= 0 <= f(hi)``: a step that leaves the bracket, or is more
    than half the step of two iterations before, is replaced by bisection. With
    ``u = x + tau`` and ``m = sigma(-|u|)``, ``f = n - k + sum_{u < 0} m - sum_{u >= 0} m``
    (``n = #{u >= 0}``) and ``f' = sum m (1 - m)``. ``m`` enters relative to its largest
    value in the row, so the step ``-f / f'`` keeps its precision when ``n = k`` and every
    ``m`` is below the float's resolution next to ``k`` (or underflows). Since
    ``|f''| <= f'``, a Newton step ``d`` (``|d| <= 1``) leaves an error below ``1.4 d^2``:
    a row is done after a step ``d^2 <= eps (|tau| + 1) / 16`` or when its bracket is
    narrower than ``4 eps (|tau| + 1)``.
    """
    cols = x.shape[1]
    eps = torch.finfo(x.dtype).eps
    high, low, tau = _start(x, k)
    # every sigma(x + lo) <= k / C and every sigma(x + hi) >= k / C
    logit = math.log(k / (cols - k))
    lo = logit - high
    hi = logit - low
    # + 0.0: no -0.0 in u = x + tau, whose sign bit would disagree with u < 0
    tau = torch.maximum(torch.minimum(tau, hi), lo).add_(0.0)
    step_1 = step_2 = hi - lo
    u, m, a = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    for _ in range(iterations):
        nearest = _tails(torch.add(x, tau, out=u), m, a)
        m.mul_(a)
        slope = a.mul_(m).sum(dim=1, keepdim=True)  # f' / max(m)
        signed = m.copysign_(u).sum(dim=1, keepdim=True)
        above = x.shape[1] - u.lt_(0.0).sum(dim=1, keepdim=True)
        # f / max(m); exp(|u|min) is capped, where n != k decides the sign alone
        value = (above - k) * nearest.clamp(max=_EXP_CAP[x.dtype]).exp() - signed
        step = value.div_(slope).neg_()
        new = tau + step
        positive = step < 0
        hi = torch.where(positive, tau, hi)
        lo = torch.where(positive, lo, tau)
        scale = tau.abs().add_(1.0).mul_(eps)
        done = step.square() <= scale / 16
        newton = done | ((new > lo) & (new < hi) & (step.abs() <= 0.5 * step_2))
        step_2 = step_1
        step_1 = torch.where(newton, step.abs(), (hi - lo) / 2)
        tau = torch.where(newton, new, (lo + hi) / 2).add_(0.0)
        if bool((done | (hi - lo <= 4 * scale)).all()):
            break
    _tails(torch.add(x, tau, out=u), m, a)
    m.mul_(a).mul_(a)
    torch.div(m, m.sum(dim=1, keepdim=True), out=share)
    return tau


#: a cap on exp() below the float's overflow
_EXP_CAP = {
    dtype: 0.9 * math.log(torch.finfo(dtype).max) for dtype in (torch.float32, torch.float64)
}


def _tails(u: Tensor, m: Tensor, a: Tensor) -> Tensor:
    """``min |u|`` per row, with ``a = sigma(|u|)`` and ``m`` the factor of ``sigma(-|u|)``
    relative to its row maximum that ``a`` does not hold.

    The ratio is ``exp(min|u| - |u|) sigma(|u|) / sigma(min|u|)``; ``m`` holds
    ``exp(min|u| - |u|)`` floored at ``exp(0.8 log(tiny))`` (no subnormal
    arithmetic; relative 5e-31) and is multiplied by ``sigma(|u|)`` by the caller, the
    constant ``1 / sigma(min|u|)`` cancelling from every ratio the search takes. ``sigma``
    is evaluated at ``min(|u|, 40)``, where it is 1 to the float's resolution."""
    torch.abs(u, out=a)
    nearest = a.amin(dim=1, keepdim=True)
    torch.sub(nearest, a, out=m).clamp_min_(exp_floor(u.dtype)).exp_()
    a.clamp_(max=40.0).sigmoid_()
    return nearest


def _solve(s: Tensor, k: float, alpha: float, iterations: int, share: Tensor) -> Tensor:
    """``t`` ``(R, 1)`` with ``sum_l sigmoid(alpha (s_l + t)) = k`` per row of ``(R, C)``
    ``s``, block by block of rows (:func:`_threshold_rows` on ``alpha s``), and the
    shares ``v / sum(v)``, ``v = sigma'(alpha (s + t))``, in ``share``."""
    t = s.new_empty(s.shape[0], 1)
    x = block_scratch(s)
    for rows in row_blocks(*s.shape):
        xs = torch.mul(s[rows], alpha, out=x[: rows.stop - rows.start])
        t[rows] = _threshold_rows(xs, k, iterations, share[rows]).div_(alpha)
    return t


class _Threshold(torch.autograd.Function):
    """:func:`_solve`'s ``t``, with the implicit-function gradient ``dt/ds = -v / sum(v)``,
    ``v = sigma'(alpha (s + t))``: nothing is differentiated through the search."""

    @staticmethod
    def forward(ctx: Any, s: Tensor, k: float, alpha: float, iterations: int) -> Tensor:  # type: ignore[override]
        share = torch.empty_like(s)
        t = _solve(s, k, alpha, iterations, share)
        ctx.save_for_backward(share)
        return t

    @staticmethod
    def backward(ctx: Any, grad_t: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (share,) = ctx.saved_tensors
        return share * -grad_t, None, None, None


class _SoftTopKAt(torch.autograd.Function):
    """``-log sigma(alpha (s_y + t))`` per row of ``(R, C)`` ``s`` with the threshold of
    :func:`_solve`; the gradient ``c (v / sum(v) - e_y)``, ``c = alpha sigma(-alpha (s_y
    + t))``, is one pass over the saved shares."""

    @staticmethod
    def forward(
        ctx: Any, s: Tensor, index: Tensor, k: float, alpha: float, iterations: int
    ) -> Tensor:  # type: ignore[override]
        share = torch.empty_like(s)
        idx = index.unsqueeze(1)
        u = (s.gather(1, idx) + _solve(s, k, alpha, iterations, share)).mul_(alpha)
        ctx.alpha = alpha
        ctx.save_for_backward(share, idx, u)
        return -torch.nn.functional.logsigmoid(u).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        share, idx, u = ctx.saved_tensors
        c = torch.sigmoid(-u).mul_(grad_out.unsqueeze(1) * ctx.alpha)
        return torch.mul(share, c).scatter_add_(1, idx, -c), None, None, None, None


def _threshold(s: Tensor, k: float, alpha: float, iterations: int) -> Tensor:
    """:class:`_Threshold` of ``(N, C, *)`` scores along dim 1, as ``(N, 1, *)``."""
    if not 0 < k < s.shape[1]:
        fail("soft_topk_probs", "k", f"a value strictly between 0 and C = {s.shape[1]}", k)
    t = _Threshold.apply(as_rows(s), float(k), alpha, iterations)
    if s.dim() == 2:
        return t
    return t.reshape(s.shape[0], *s.shape[2:], 1).movedim(-1, 1)


def soft_topk_probs(scores: Tensor, k: float, alpha: float, iterations: int = 64) -> Tensor:
    r"""The soft top-k memberships $p = \sigma(\alpha(s + t))$, $\sum_l p_l = K$ along
    dim 1 ($0 < K < C$), with the implicit-function gradient (rows of the Jacobian sum to
    0); ``iterations`` bounds the steps of the threshold's search (see ``soft_topk``)."""
    t = _threshold(scores, k, alpha, iterations)
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

    The threshold solves $f(\tau) = \sum_l \sigma(x_l + \tau) - K = 0$ per row,
    $x = \alpha s$, $\tau = \alpha t$, by Newton's method kept inside a bracket
    $[\tau_-, \tau_+]$ with $f(\tau_-) \le 0 \le f(\tau_+)$, first
    $\operatorname{logit}(K/L) - \max x$ and $\operatorname{logit}(K/L) - \min x$: a step
    that leaves the bracket, or is more than half the step of two iterations before, is
    replaced by bisection. It starts halfway between the $K$-th and $(K+1)$-th largest
    $x$. With $u = x + \tau$, $m = \sigma(-|u|)$ and $n = \#\{u \ge 0\}$, $f = n - K +
    \sum_{u < 0} m - \sum_{u \ge 0} m$ and $f' = \sum m(1 - m)$, both taken relative to
    the largest $m$ of the row, so the step keeps its precision when $n = K$ and the sum
    sits closer to $K$ than the float's resolution. As $|f''| \le f'$, a step $d$ leaves
    an error of about $d^2 / 2$: a row stops after a step with
    $d^2 \le \epsilon(|\tau| + 1) / 16$ or a bracket narrower than
    $4\epsilon(|\tau| + 1)$ ($\epsilon$ the float's resolution). There is no gradient
    through the search; the threshold's
    gradient is the implicit-function one, $\partial t / \partial s = -v / \sum v$ with
    $v = \sigma'(\alpha(s + t))$, so each row of the Jacobian of $p$ sums to 0 (the loss
    is unchanged by shifting a row). With $K \ge L$ candidates every label is in the top
    $K$ and the loss is 0. As $\alpha \to \infty$, $p$ tends to the hard top-K indicator.

    Args:
        k: the size $K \ge 1$ of the top set (DEXML: 5).
        alpha: steepness $\alpha > 0$ applied to $s$ (DEXML: 2).
        temperature: $\tau > 0$ dividing the cosine scores (DEXML: 0.05).
        iterations: the most steps of the threshold's search (Newton or bisection) per
            row; rows typically converge in 3 to 10.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> s = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
        >>> F.soft_topk(s, torch.tensor([0]), k=2, alpha=1.0, temperature=1.0)
        tensor(0.2014)
    """
    if k >= inp.num_classes:
        return (inp.logits * 0.0).sum(dim=1)
    # alpha (z / tau + t) = (alpha / tau) (z + tau t): the search runs on the logits
    steep = alpha / temperature
    z = inp.logits
    if inp.soft is None:
        per = _SoftTopKAt.apply(as_rows(z), inp.index.reshape(-1), float(k), steep, iterations)
        return per.reshape(inp.index.shape)
    t = _threshold(z, float(k), steep, iterations)
    logp = torch.nn.functional.logsigmoid(steep * (z + t))
    return -torch.where(inp.soft > 0, inp.soft * logp, 0.0).sum(dim=1)
