r"""Row-wise losses with hand-written backward passes, for CPU speed.

Eager PyTorch runs one memory pass per elementwise op, and autograd keeps every
intermediate. The losses here have short closed-form gradients, so a custom
``autograd.Function`` computes forward and backward in a few passes over the ``(R, C)``
logits and saves at most two ``(R, C)`` buffers. Inputs are 2-D ``(R, C)`` float32/64
logits and int64 ``(R,)`` targets (callers flatten spatial dims). Gradients are checked
against autograd in float64 by the generic ``gradcheck`` tests.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab.functional._common import z_score


def as_rows(x: Tensor) -> Tensor:
    """``(N, C, *)`` -> ``(R, C)`` with the class axis last."""
    return x if x.dim() == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


def ldr_row_stats(z: Tensor, normalize: str, floor: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(base, m, top)`` of LDR's normalisation ``f = base / m``, per row of ``(R, C)``.

    ``base`` is ``softplus(z)`` (``"softplus_mean"``) or ``z``; ``m`` the floored mean of
    ``base`` (``|z|`` for ``"abs_mean"``; 1 for ``"none"``); ``top`` the row maximum of
    ``base``, the shift that keeps the exponentials finite.
    """
    c = z.shape[1]
    if normalize == "softplus_mean":
        # logaddexp(z, 0) is softplus, with a faster vectorised kernel on CPU.
        base = torch.logaddexp(z, z.new_zeros(()))
        m = base.mean(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).eps)
    elif normalize == "abs_mean":
        base = z
        m = (torch.linalg.vector_norm(z, ord=1, dim=1, keepdim=True) / c).clamp_min(floor)
    else:
        base = z
        m = torch.ones_like(z[:, :1])
    return base, m, base.amax(dim=1, keepdim=True)


class LDRKLRows(torch.autograd.Function):
    r"""LDR-KL per row: ``-lambda log softmax(u)_y - lambda log C``,
    ``u = (f + c (1 - e_y)) / lambda``, ``f = normalize(z) = base / m`` (see
    :func:`ldr_row_stats`).

    Forward: ``exp(u - max u)`` is ``exp((base - max base) / (m lambda))`` off the target
    and that times ``exp(-c / lambda)`` at the target, so the margin costs no pass; the
    dot product the backward needs is taken here, so only the exponentials and the
    logits are saved. Backward, with ``G = softmax(u) - e_y`` (``dL/df = G``; lambda
    cancels) and ``k = 1/m``:

    * none: ``dL/dz = G``;
    * softplus_mean: ``dL/dz = k (G - k <G, base>/C) * sigmoid(z)``;
    * abs_mean: ``dL/dz = k (G - sign(z) k <G, z>/C)``, with ``sign(0)`` taken as ``+-1``
      (a subgradient of ``|z|``).

    Where the floor of ``m`` is active, ``m`` is a constant. ``temperature`` (float or
    ``(R,)`` tensor) carries no gradient. ``stats`` may pass ``(base, m, top)`` already
    computed (by ALDR-KL's temperature update) to save their passes.
    """

    @staticmethod
    def forward(
        ctx: Any,
        z: Tensor,
        index: Tensor,
        margin: float,
        temperature: Tensor | float,
        normalize: str,
        floor: float,
        stats: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        c = z.shape[1]
        idx = index.unsqueeze(1)
        lam = temperature.unsqueeze(1) if isinstance(temperature, Tensor) else temperature
        base, m, top = stats if stats is not None else ldr_row_stats(z, normalize, floor)
        scale = 1.0 / (m * lam)
        # Subtract before scaling: the row's maximum maps to exactly exp(0) whatever the
        # size of the logits.
        e = torch.sub(base, top).mul_(scale).exp_()
        base_y = base.gather(1, idx)
        drop = torch.exp(-margin / lam) if isinstance(lam, Tensor) else math.exp(-margin / lam)
        e.scatter_(1, idx, e.gather(1, idx) * drop)  # the target's term has no margin
        total = e.sum(dim=1, keepdim=True)
        loss = lam * (scale * (top - base_y) + margin / lam + total.log() - math.log(c))
        dot = None
        if normalize != "none":
            # <G, base> = <e, base> / total - base_y, as one batched dot product.
            dot = torch.bmm(e.unsqueeze(1), base.unsqueeze(2)).squeeze(2) / total - base_y
            # m has no gradient where its floor is active
            dot = torch.where(m > m.new_tensor(torch.finfo(m.dtype).eps), dot, 0.0)
            if normalize == "abs_mean":
                dot = torch.where(m > floor, dot, 0.0)
        ctx.normalize = normalize
        ctx.save_for_backward(z, e, total, index, m, dot)
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, e, total, index, m, dot = ctx.saved_tensors
        idx = index.unsqueeze(1)
        gk = grad_out.unsqueeze(1) / m
        grad = e * (gk / total)
        grad.scatter_add_(1, idx, -gk)
        if ctx.normalize == "none":
            return grad, None, None, None, None, None, None
        coef = gk * dot / (m * z.shape[1])
        if ctx.normalize == "softplus_mean":
            grad.sub_(coef).mul_(torch.sigmoid(z))
        else:
            # copysign takes only the magnitude of its first argument
            grad.sub_(torch.copysign(coef.abs(), z).mul_(coef.sign()))
        return grad, None, None, None, None, None, None


class ZLossRows(torch.autograd.Function):
    r"""Z-loss per row: ``softplus(a (b - z_y)) / a``, ``z_y = (o_y - mu) / max(sigma, eps)``.

    With ``d = o - mu``, ``den = max(sigma, eps)``, ``w = -sigmoid(x) / den`` and
    ``live = sigma > eps`` the gradient is affine in ``d``:

    .. math:: \partial L / \partial o_j = w\,(\delta_{jy} - 1/C)
              - [\text{live}]\, w\, z_y\, d_j / (C \sigma)

    so the backward is one pass over the saved deviations. When ``|o|`` is so large that
    the row sums or squares could overflow, each row is divided by its largest ``|o_k|``
    first (the score is unchanged wherever the floor is inactive), so logits of any finite
    size are exact; under ``torch.compile`` that path is always taken (no host sync).
    """

    @staticmethod
    def forward(ctx: Any, o: Tensor, index: Tensor, a: float, b: float, eps: float) -> Tensor:
        if o.shape[0] == 0:
            ctx.save_for_backward(o)
            return o.new_zeros(0)
        idx = index.unsqueeze(1)
        c = o.shape[1]
        if torch.compiler.is_compiling() or _may_overflow_squares(o):
            s = o.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(o.dtype).tiny)
            d = o / s
            d = d.sub_(d.mean(dim=1, keepdim=True))
        else:
            s = torch.ones_like(o[:, :1])
            d = o - o.mean(dim=1, keepdim=True)
        sigma_s = (torch.bmm(d.unsqueeze(1), d.unsqueeze(2)).squeeze(2) / c).sqrt_()
        sigma = s * sigma_s
        live = sigma > eps
        den = torch.where(live, sigma, eps)
        zy = z_score(d.gather(1, idx) * s, sigma, eps)
        x = a * (b - zy)
        ctx.save_for_backward(d, index, sigma_s, den, zy, x, live)
        return (torch.nn.functional.softplus(x) / a).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        if len(ctx.saved_tensors) == 1:
            return torch.zeros_like(ctx.saved_tensors[0]), None, None, None, None
        d, index, sigma_s, den, zy, x, live = ctx.saved_tensors
        c = d.shape[1]
        w = -grad_out.unsqueeze(1) * torch.sigmoid(x) / den
        tiny = torch.finfo(d.dtype).tiny
        beta = torch.where(live, -w * zy / (c * sigma_s.clamp_min(tiny)), 0.0)
        grad = (d * beta).sub_(w / c)
        grad.scatter_add_(1, index.unsqueeze(1), w)
        return grad, None, None, None, None


def _may_overflow_squares(o: Tensor) -> bool:
    """Whether row sums or squared deviations of ``o`` could overflow (one reduction)."""
    lo, hi = torch.aminmax(o.detach())
    return max(-float(lo), float(hi)) > math.sqrt(torch.finfo(o.dtype).max) / (4 * o.shape[1])


class SoftmaxSeparableRows(torch.autograd.Function):
    r"""``L = scale * sum_k phi(p_k) + psi(p_y)`` per row, ``p = softmax(z)``.

    With ``u = phi'(p)`` and ``t = scale <p, u> + p_y psi'(p_y)``, the softmax Jacobian
    gives ``dL/dz = p * (scale u - t) + e_y p_y psi'(p_y)``: a batched dot, one
    ``addcmul`` and one multiply in backward, with ``p`` the only saved buffer.
    ``phi``/``dphi`` are elementwise callables on ``(R, C)`` (``dphi`` may return its
    input, which is never written to); ``psi``/``dpsi`` act on the gathered ``(R, 1)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        z: Tensor,
        index: Tensor,
        phi: Any,
        dphi: Any,
        psi: Any,
        dpsi: Any,
        scale: float,
    ) -> Tensor:
        idx = index.unsqueeze(1)
        p = torch.softmax(z, dim=1)
        p_y = p.gather(1, idx)
        ctx.dphi, ctx.dpsi, ctx.scale = dphi, dpsi, scale
        ctx.save_for_backward(p, index)
        return (scale * phi(p).sum(dim=1, keepdim=True) + psi(p_y)).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        p, index = ctx.saved_tensors
        idx = index.unsqueeze(1)
        g = grad_out.unsqueeze(1)
        u = ctx.dphi(p)
        p_y = p.gather(1, idx)
        target_term = p_y * ctx.dpsi(p_y)
        t = ctx.scale * torch.bmm(p.unsqueeze(1), u.unsqueeze(2)).squeeze(2) + target_term
        grad = torch.addcmul(-g * t, u, g * ctx.scale).mul_(p)
        grad.scatter_add_(1, idx, g * target_term)
        return grad, None, None, None, None, None, None
