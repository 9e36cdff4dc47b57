"""Sigmoid losses for binary and multi-label problems: BCE and the focal loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._fused import leading_blocks, softplus
from losslab.kinds.binary import BinaryInput
from losslab.registry import register


class _BCEElements(torch.autograd.Function):
    r"""``(1 + (w - 1) t) softplus(x) - w t x`` with gradient ``(1 + (w - 1) t) sigmoid(x) - w t``.

    The identity ``softplus(-x) = softplus(x) - x`` turns the two softplus terms of
    ``w t softplus(-x) + (1 - t) softplus(x)`` into one; the gradient is written out so
    that autograd keeps no intermediate. Both passes run in blocks of rows
    (:func:`~losslab.functional._fused.leading_blocks`).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, w: Tensor | None) -> Tensor:
        out = torch.empty_like(x)
        for s in leading_blocks(x):
            out[s] = _bce_value(x[s], t[s], None if w is None else w[s])[0]
        ctx.save_for_backward(x, t, w)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, t, w = ctx.saved_tensors
        grad = torch.empty_like(x)
        for s in leading_blocks(x):
            g = torch.sigmoid(x[s], out=grad[s])
            if w is None:
                g.sub_(t[s])
            else:
                wt = w[s] * t[s]
                g.mul_(1.0 + wt - t[s]).sub_(wt)
            g.mul_(grad_out[s])
        return grad, None, None


def _bce_value(
    x: Tensor, t: Tensor, w: Tensor | None, sp: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The BCE of every element, and ``w t`` (``t`` itself without ``pos_weight``). The
    value is written into ``sp``, ``softplus(x)``, when the caller passes it (computed
    here otherwise)."""
    if sp is None:
        sp = softplus(x)
    wt = t if w is None else w * t
    return (sp if w is None else sp.mul_(1.0 + (w - 1.0) * t)).sub_(torch.mul(wt, x)), wt


def bce_elements(x: Tensor, t: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """``-(pos_weight t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))`` per element of
    logits ``x`` and float targets ``t`` of the same shape, exact at any logit."""
    out: Tensor = _BCEElements.apply(x, t, pos_weight)
    return out


def bce_per_element(inp: BinaryInput) -> Tensor:
    """:func:`bce_elements` of a validated binary input."""
    return bce_elements(inp.logits, inp.target, inp.pos_weight)


@register(
    "bce",
    kind="binary",
    family="binary",
    module="BCELoss",
    reference="Binary logistic loss (cross-entropy of a Bernoulli prediction); as "
    "torch.nn.functional.binary_cross_entropy_with_logits",
    test_configs=(),
)
def bce(inp: BinaryInput) -> Tensor:
    r"""Binary cross-entropy on logits, for binary and multi-label targets.

    $$
    \ell(x, t) = -\big(w_+\, t \log \sigma(x) + (1 - t) \log(1 - \sigma(x))\big)
    $$

    with $w_+$ the `pos_weight` (1 by default), computed as
    $w_+ t\,\mathrm{softplus}(-x) + (1 - t)\,\mathrm{softplus}(x)$, exact at any logit.
    Equals `torch.nn.functional.binary_cross_entropy_with_logits` element-wise; the
    `"mean"` reduction divides by the sum of the element weights.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, -0.5], [0.1, 1.5]])
        >>> F.bce(logits, torch.tensor([[1, 0], [0, 1]]), reduction="none")
        tensor([[0.1269, 0.4741],
                [0.7444, 0.2014]])
    """
    return bce_per_element(inp)


@register(
    "binary_focal",
    kind="binary",
    family="binary",
    module="BinaryFocalLoss",
    reference="Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. "
    "ICCV 2017, arXiv:1708.02002; conventions of torchvision.ops.sigmoid_focal_loss",
    constraints={"gamma": Real(0.0), "alpha": Real(0.0, 1.0, allow_none=True)},
    test_configs=({"gamma": 0.0, "alpha": None}, {"gamma": 0.5, "alpha": 0.75}),
)
def binary_focal(inp: BinaryInput, *, alpha: float | None = 0.25, gamma: float = 2.0) -> Tensor:
    r"""Sigmoid focal loss of Lin et al. (2017), with torchvision's conventions.

    $$
    \ell(x, t) = \alpha_t\,(1 - p_t)^{\gamma}\,\mathrm{BCE}(x, t),\qquad
    p_t = p\,t + (1 - p)(1 - t),\quad \alpha_t = \alpha\,t + (1 - \alpha)(1 - t),
    \quad p = \sigma(x)
    $$

    `pos_weight` scales the positive term of the BCE factor. $1 - p_t$ is computed as
    $t\,\sigma(-x) + (1 - t)\,\sigma(x)$, exact for confident predictions; $\gamma = 0$
    and `alpha=None` give `bce`.

    Args:
        alpha: weight $\alpha \in [0, 1]$ of the positive class, or `None` for no
            weighting (torchvision's `alpha=-1`); the paper's 0.25.
        gamma: focusing parameter $\gamma \ge 0$; the paper's 2.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, -0.5], [0.1, 1.5]])
        >>> F.binary_focal(logits, torch.tensor([[1, 0], [0, 1]]), reduction="none")
        tensor([[0.0005, 0.0507],
                [0.1539, 0.0017]])
    """
    if gamma == 0 and alpha is None:
        return bce_per_element(inp)
    return _FocalElements.apply(inp.logits, inp.target, inp.pos_weight, float(gamma), alpha)


class _FocalElements(torch.autograd.Function):
    r"""``alpha_t q^gamma c`` with ``q = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)``, ``c``
    the BCE and ``alpha_t = alpha t + (1 - alpha)(1 - t)`` (1 for ``alpha=None``).

    ``q`` is a sum of positive terms (no cancellation when ``p_t`` is near 1), clamped at
    the smallest normal float so that ``q^gamma`` stays differentiable at 0 for
    ``gamma < 1``; ``sigmoid(-x)`` is ``exp(-softplus(x))``, exact from the BCE's own
    softplus. The loss is element-wise, so its gradient

    .. math:: \partial \ell / \partial x = \alpha_t q^\gamma \big(\gamma (1 - 2t)
              \sigma(x) \sigma(-x)\, c / q + (1 + (w - 1) t) \sigma(x) - w t\big)

    is formed in forward, in place in the buffers the value needed, and backward is one
    product: five ``(N, ...)`` temporaries and one saved buffer instead of a chain that
    keeps seven alive.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, t: Tensor, w: Tensor | None, gamma: float, alpha: float | None
    ) -> Tensor:
        out = torch.empty_like(x)
        grad = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        for s in leading_blocks(x):
            ws = None if w is None else w[s]
            _focal_block(x[s], t[s], ws, gamma, alpha, out[s], None if grad is None else grad[s])
        ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None


def _focal_block(
    x: Tensor,
    t: Tensor,
    w: Tensor | None,
    gamma: float,
    alpha: float | None,
    out: Tensor,
    grad: Tensor | None,
) -> None:
    """:class:`_FocalElements` on a block of rows: the value into ``out``, the gradient
    (when ``grad`` is given) into ``grad``."""
    sp = softplus(x)
    sn = torch.neg(sp).exp_()  # sigmoid(-x) = exp(-softplus(x)), exact
    c, wt = _bce_value(x, t, w, sp)  # in the softplus's buffer
    s = torch.sigmoid(x)
    q = torch.lerp(s, sn, t).clamp_min_(torch.finfo(x.dtype).tiny)
    qg = q.pow(gamma)
    if alpha is not None:
        qg.mul_(torch.mul(t, 2.0 * alpha - 1.0).add_(1.0 - alpha))
    torch.mul(c, qg, out=out)
    if grad is not None:
        # gamma (1 - 2t) s sn c / q, as v - 2 t v, in sn's buffer
        v = sn.mul_(s).mul_(c).div_(q).mul_(gamma)
        v.addcmul_(t, v, value=-2.0)
        dc = s.sub_(t) if w is None else s.mul_(1.0 + wt - t).sub_(wt)
        torch.mul(dc.add_(v), qg, out=grad)
