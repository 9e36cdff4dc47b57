"""Distillation beyond Hinton's KL: Dual-Head KD's logit-level loss and Plackett-Luce
distillation (family ``distillation``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from losslab._validate import Real
from losslab.functional._fused import as_rows, block_scratch, exp_floor, row_blocks, row_dot
from losslab.kinds.distillation import DistillationInput
from losslab.registry import register


@register(
    "dhkd",
    kind="distillation",
    family="distillation",
    module="DHKDLoss",
    reference="Yang, Zong, Huang, Feng, An. Dual-Head Knowledge Distillation: Enhancing "
    "Logits Utilization with an Auxiliary Head. KDD 2025, arXiv:2411.08937; code: "
    "github.com/penghui-yang/DHKD (distiller_zoo/BinaryKLNorm.py, helper/loops.py)",
    constraints={"temperature": Real(0.0, lo_open=True), "alpha": Real(0.0)},
    test_configs=({"normalize": False}, {"temperature": 1.0, "alpha": 0.1}),
)
def dhkd(
    inp: DistillationInput, *, temperature: float = 2.0, alpha: float = 1.0, normalize: bool = True
) -> Tensor:
    r"""Dual-Head KD's logit-level loss (BinaryKL-Norm), for the student's auxiliary head.

    $$
    \ell = \alpha\,T^2 \sum_{k} \mathrm{KL}\Big(\mathrm{Bern}(\tfrac12)\,\Big\|\,
    \mathrm{Bern}\big(\sigma(\tfrac{s_k - t_k}{T})\big)\Big)
    = \alpha\,T^2 \sum_k \log\cosh\frac{s_k - t_k}{2T}
    $$

    with $s$ the logits of the student's **auxiliary** head and $t$ the teacher's logits:
    each class's logit gap to the teacher is pulled to 0 independently, so the loss sees
    what the softmax hides (a shift of all logits, their scale). DHKD trains a student
    with two heads on one backbone: the original (linear) classifier with cross-entropy
    only, used at test time, and an auxiliary head with this loss only,

    $$ \gamma\,\mathrm{CE}(\mathrm{head}_1(x), y) + \ell(\mathrm{head}_2(x), t), $$

    because the two losses on one linear head have conflicting gradients and collapse it
    (the paper's analysis), while both help the shared backbone. Compute the first term
    with `ce` on the main head's logits. The logit-level loss compares logits, so give the
    teacher as logits: with `teacher_format="probs"` its log-probabilities stand in for
    them, which differ by the row's log-partition.

    Args:
        temperature: $T > 0$; 2 as in the official scripts (`--BinaryKL_T`).
        alpha: weight $\alpha \ge 0$; 1 as in the official CIFAR-100 runs (0.1 on
            ImageNet).
        normalize: `True` for BinaryKL-Norm (the official DHKD loss above); `False` for
            plain BinaryKL, $\alpha T^2 \sum_k \mathrm{KL}(\mathrm{Bern}(\sigma(t_k/T))
            \,\|\, \mathrm{Bern}(\sigma(s_k/T)))$, the logit-level loss the paper starts
            from (also in the repository).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> aux = torch.tensor([[1.0, -3.0], [0.5, 0.5]])  # student's auxiliary head
        >>> teacher = torch.tensor([[0.0, 0.0], [0.5, 0.5]])
        >>> F.dhkd(aux, teacher, reduction="none")
        tensor([1.1568, 0.0000])
    """
    s, t = inp.student / temperature, inp.teacher / temperature
    if normalize:
        # KL(Bern(1/2) || Bern(sigmoid(d))) = -(log sigmoid(d) + log sigmoid(-d)) / 2 - log 2;
        # logsigmoid is exact at any d (softplus switches to x above 20).
        d = s - t
        per_class = -0.5 * (logsigmoid(d) + logsigmoid(-d)) - math.log(2.0)
    else:
        pt = torch.sigmoid(t)
        per_class = pt * (logsigmoid(t) - logsigmoid(s)) + (1 - pt) * (
            logsigmoid(-t) - logsigmoid(-s)
        )
    return alpha * temperature**2 * per_class.sum(dim=1)


@register(
    "pld",
    kind="distillation",
    family="distillation",
    module="PLDLoss",
    reference="Bassam, Zhu, Bian. PLD: A Choice-Theoretic List-Wise Knowledge Distillation. "
    "NeurIPS 2025, arXiv:2506.12542 (no official code released; written from the paper)",
    constraints={"temperature": Real(0.0, lo_open=True)},
    needs_target=True,
    test_configs=({"temperature": 4.0},),
)
def pld(inp: DistillationInput, *, temperature: float = 1.0) -> Tensor:
    r"""Plackett-Luce distillation: a teacher-weighted ranking loss over the classes.

    $$
    \ell = \sum_{k=1}^{C} q_{\pi_k}\Big(\log \sum_{m \ge k} e^{s_{\pi_m}} - s_{\pi_k}\Big),
    \qquad q = \mathrm{softmax}(t / \tau)
    $$

    with $\pi$ the teacher-optimal permutation: the true class $y$ first, then the other
    classes by decreasing teacher logit. Term $k$ is the Plackett-Luce negative
    log-likelihood of choosing $\pi_k$ among the classes not yet ranked, weighted by the
    teacher's confidence in it; it replaces cross-entropy (no separate hard-label term):
    weights $(1, 0, \dots, 0)$ give CE, uniform weights ListMLE. Convex and invariant to
    adding a constant to the student's logits. Teacher ties keep class order.

    The suffix log-sum-exps are $M + \log S_k$, with $M$ the row's largest student logit
    and $S_k = \sum_{m \ge k} e^{s_{\pi_m} - M}$ one reversed cumulative sum; the
    gradient $\partial \ell / \partial s_{\pi_j} = e^{s_{\pi_j} - M} \sum_{k \le j}
    q_{\pi_k} / S_k - q_{\pi_j}$ is one forward cumulative sum. Rows whose student logits
    span more than $-0.8 \log$ of the dtype's smallest normal number (69.9 in float32),
    where $e^{s - M}$ could underflow, take `logcumsumexp` instead.

    Args:
        temperature: teacher temperature $\tau > 0$; 1 (the paper's best on ImageNet; its
            CIFAR-100 runs use 4). The student's logits are not scaled.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> student = torch.zeros(1, 3)
        >>> teacher = torch.tensor([[3.0, 1.0, 0.0]])
        >>> F.pld(student, teacher, torch.tensor([1]))
        tensor(0.7103)
    """
    assert inp.index is not None  # the kind requires it (needs_target)
    s, t = as_rows(inp.student), as_rows(inp.teacher)
    index = inp.index.reshape(-1, 1)
    if torch.compiler.is_compiling() or not s.numel():
        return pl_reference(s, t, index, temperature).reshape(inp.index.shape)
    key = t.detach().clone().scatter_(1, index, math.inf)
    ranked, order = torch.sort(key, dim=1, descending=True, stable=True)
    ranked[:, :1] = t.detach().gather(1, index)  # the target's teacher logit, first
    sd = s.detach()
    wide = (sd.amax(dim=1) - sd.amin(dim=1)) > -exp_floor(s.dtype)
    if not bool(wide.any()):
        return PLRows.apply(s, t, order, ranked, temperature).reshape(inp.index.shape)
    rows = torch.arange(s.shape[0], device=s.device)
    far, near = rows[wide], rows[~wide]
    out = s.new_zeros(s.shape[0]).index_put(
        (near,), PLRows.apply(s[near], t[near], order[near], ranked[near], temperature)
    )
    out = out.index_put((far,), pl_reference(s[far], t[far], index[far], temperature))
    return out.reshape(inp.index.shape)


def pl_reference(s: Tensor, t: Tensor, index: Tensor, temperature: float) -> Tensor:
    """PLD per row of ``(R, C)`` student and teacher logits and ``(R, 1)`` targets through
    a reversed ``torch.logcumsumexp`` and autograd (:class:`PLRows` computes the same
    with an analytic backward)."""
    q = torch.softmax(t / temperature, dim=1)
    is_target = torch.zeros_like(t, dtype=torch.bool).scatter_(1, index, True)
    key = torch.where(is_target, math.inf, t)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    r, w = s.gather(1, order), q.gather(1, order)
    suffix = torch.logcumsumexp(r.flip(1), dim=1).flip(1)
    # where(): a class the teacher gives no mass (a probability teacher with zeros) adds 0.
    return torch.where(w > 0, w * (suffix - r), 0.0).sum(dim=1)


class PLRows(torch.autograd.Function):
    r"""PLD per row, ``L = sum_k w_k (log sum_{m >= k} e^{r_m} - r_k)``, of ``(R, C)``
    student logits ``s`` and teacher logits ``t``, with ``r = s[order]`` and
    ``w = softmax(t[order] / T)``: ``order`` ``(R, C)`` is a permutation of each row and
    ``ranked`` ``(R, C)`` holds ``t[order]`` (overwritten with ``w``).

    With ``M`` the row maximum of ``s``, ``e = exp(r - M)`` and the suffix sums
    ``S_k = sum_{m >= k} e_m`` (a reversed cumsum of positive terms: no cancellation),
    the suffix log-sum-exp is ``M + log S_k``, so ``L = sum_k w_k (log S_k - (r_k - M))``,
    and

    ``dL/dr_j = e_j sum_{k <= j} w_k / S_k - w_j``  (a forward cumsum of ``w / S``),
    ``dL/dt[order]_k = w_k (l_k - L) / T`` with ``l_k = log S_k - (r_k - M)``.

    Both passes run block by block (:func:`row_blocks`): forward gathers ``r``, takes
    ``w`` from ``ranked``; backward scatters the ranked gradients back through ``order``.
    The saved buffers are ``e`` and ``w / S`` (ranked) when ``s`` needs a gradient, the
    terms ``l`` when ``t`` does, and ``w``.

    Exact (to rounding) where every ``e_m``, hence every ``S_k``, is a normal float: rows
    whose logits span at most ``-exp_floor`` (69.9 in float32, 566 in float64; see
    :func:`~losslab.functional._fused.exp_floor`); :func:`pld` sends wider rows to
    :func:`pl_reference`.
    """

    @staticmethod
    def forward(
        ctx: Any, s: Tensor, t: Tensor, order: Tensor, ranked: Tensor, temperature: float
    ) -> Tensor:
        want_s = ctx.needs_input_grad[0]
        e, ws = torch.empty_like(s), torch.empty_like(s) if want_s else None
        terms = torch.empty_like(s) if ctx.needs_input_grad[1] else None
        term_buf = block_scratch(s)
        loss = s.new_empty(s.shape[0], 1)
        for b in row_blocks(*s.shape):
            sb, n = s[b], b.stop - b.start
            w = ranked[b]
            if temperature != 1:
                w.div_(temperature)
            w.sub_(w.amax(dim=1, keepdim=True)).exp_()
            w.div_(w.sum(dim=1, keepdim=True))  # softmax(t[order] / T)
            d = torch.gather(sb, 1, order[b], out=e[b]).sub_(sb.amax(dim=1, keepdim=True))
            suffix = d.flip(1).exp_().cumsum_(1).flip(1)  # S; d = r - M
            out = term_buf[:n] if terms is None else terms[b]
            term = torch.log(suffix, out=out).sub_(d)  # log S - (r - M)
            loss[b] = row_dot(w, term)
            if ws is not None:
                d.exp_()  # e
                torch.div(w, suffix, out=ws[b])
        ctx.temperature = temperature
        ctx.save_for_backward(e, ws, ranked, order, terms, None if terms is None else loss.clone())
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        e, ws, w, order, terms, loss = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        grad_s = grad_t = None
        scratch = block_scratch(e)
        if ws is not None and ctx.needs_input_grad[0]:
            grad_s = torch.empty_like(e)
            for b in row_blocks(*e.shape):
                gr = torch.cumsum(ws[b], 1, out=scratch[: b.stop - b.start])
                grad_s[b].scatter_(1, order[b], gr.mul_(e[b]).sub_(w[b]).mul_(g[b]))
        if terms is not None and loss is not None and ctx.needs_input_grad[1]:
            grad_t = torch.empty_like(e)
            gt = g / ctx.temperature
            for b in row_blocks(*e.shape):
                gr = torch.sub(terms[b], loss[b], out=scratch[: b.stop - b.start])
                grad_t[b].scatter_(1, order[b], gr.mul_(w[b]).mul_(gt[b]))
        return grad_s, grad_t, None, None, None
