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


def as_rows(x: Tensor) -> Tensor:
    """``(N, C, *)`` -> ``(R, C)`` with the class axis last."""
    return x if x.dim() == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


class LDRKLRows(torch.autograd.Function):
    r"""LDR-KL per row: ``-lambda log softmax(u)_y - lambda log C``,
    ``u = (f + c (1 - e_y)) / lambda``, ``f = normalize(z) = k * base`` with ``base`` =
    ``softplus(z)``, ``z`` or ``z`` and ``k = 1 / mean(base)``, ``1 / mean|z|`` or ``1``.

    Forward: ``exp(u - max u)`` is ``exp(k (base - max base) / lambda)`` off the target
    and that times ``exp(-c / lambda)`` at the target, so the margin costs no pass.
    Backward, with ``G = softmax(u) - e_y`` (``dL/df = G``; lambda cancels):

    * none: ``dL/dz = G``;
    * softplus_mean: ``dL/dz = k (G - k <G, base>/C) * sigmoid(z)``;
    * abs_mean: ``dL/dz = k (G - sign(z) k <G, base>/C)``.

    ``temperature`` (float or ``(R,)`` tensor) carries no gradient. The normaliser ``m``
    is floored (``floor`` for ``abs_mean``, ``finfo.eps`` for ``softplus_mean``); where the
    floor is active ``m`` is a constant.
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
    ) -> Tensor:
        c = z.shape[1]
        idx = index.unsqueeze(1)
        lam = temperature.unsqueeze(1) if isinstance(temperature, Tensor) else temperature
        eps = floor if normalize == "abs_mean" else torch.finfo(z.dtype).eps
        if normalize == "softplus_mean":
            base = torch.nn.functional.softplus(z)
            m_raw = base.mean(dim=1, keepdim=True)
        elif normalize == "abs_mean":
            base = z
            m_raw = torch.linalg.vector_norm(z, ord=1, dim=1, keepdim=True) / c
        else:
            base = z
            m_raw = torch.ones_like(z[:, :1])
        m = m_raw.clamp_min(eps)
        scale = 1.0 / (m * lam)  # u = scale * base + margin / lam off the target
        top = base.max(dim=1, keepdim=True).values
        # Subtract before scaling: the row's maximum must map to exactly exp(0) (a fused
        # base * scale - top * scale rounds differently at large logits and overflows).
        e = (base - top).mul_(scale).exp_()
        base_y = base.gather(1, idx)
        drop = torch.exp(-margin / lam) if isinstance(lam, Tensor) else math.exp(-margin / lam)
        e.scatter_(1, idx, e.gather(1, idx) * drop)  # the target's term has no margin
        total = e.sum(dim=1, keepdim=True)
        loss = lam * (scale * (top - base_y) + margin / lam + total.log() - math.log(c))
        clamped = m_raw <= eps
        ctx.normalize = normalize
        ctx.save_for_backward(
            z, e, total, index, base if normalize == "softplus_mean" else None, m, clamped
        )
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, e, total, index, s, m, clamped = ctx.saved_tensors
        idx = index.unsqueeze(1)
        g = grad_out.unsqueeze(1)
        if ctx.normalize == "none":
            grad = e * (g / total)
            grad.scatter_add_(1, idx, -g)
            return grad, None, None, None, None, None
        c = z.shape[1]
        base = s if s is not None else z
        # <G, base> = <e, base> / total - base_y, as one batched dot product.
        dot = torch.bmm(e.unsqueeze(1), base.unsqueeze(2)).squeeze(2) / total
        dot = dot - base.gather(1, idx)
        k = 1.0 / m
        coef = torch.where(clamped, 0.0, dot * k / c)  # m has no gradient where clamped
        gk = g * k
        if ctx.normalize == "softplus_mean":
            grad = torch.addcmul(-coef * gk, e, gk / total)
            grad.scatter_add_(1, idx, -gk)
            return grad.mul_(torch.sigmoid(z)), None, None, None, None, None
        grad = e * (gk / total)
        grad.scatter_add_(1, idx, -gk)
        grad.addcmul_(torch.sign(z), -coef * gk)
        return grad, None, None, None, None, None


class ZLossRows(torch.autograd.Function):
    r"""Z-loss per row: ``softplus(a (b - z_y)) / a``, ``z_y = (o_y - mu) / max(sigma, eps)``.

    The row is first divided by ``s = max_k |o_k|`` (``u = o / s``): the loss is scale-
    invariant wherever the floor is inactive, and the moments of ``u`` cannot overflow,
    so logits of any finite size are exact. With ``den = max(sigma, eps)``,
    ``w = -sigmoid(x) / den`` and ``live = sigma > eps`` the gradient is affine in ``u``:

    .. math:: \partial L / \partial o_j = w\,(\delta_{jy} - 1/C)
              - [\text{live}]\, w\, z_y\,(u_j - \bar u)/(C \sigma_u)

    so the backward is one pass over the saved ``u``.
    """

    @staticmethod
    def forward(ctx: Any, o: Tensor, index: Tensor, a: float, b: float, eps: float) -> Tensor:
        if o.shape[0] == 0:  # var_mean warns on empty input
            ctx.save_for_backward(o)
            return o.new_zeros(0)
        idx = index.unsqueeze(1)
        s = torch.linalg.vector_norm(o, ord=math.inf, dim=1, keepdim=True)
        s = s.clamp_min(torch.finfo(o.dtype).tiny)
        u = o / s
        var_u, mu_u = torch.var_mean(u, dim=1, keepdim=True, correction=0)
        sd_u = var_u.sqrt()
        sigma = s * sd_u
        live = sigma > eps
        den = torch.where(live, sigma, eps)
        zy = (u.gather(1, idx) - mu_u) * (s / den)
        x = a * (b - zy)
        ctx.a = a
        ctx.save_for_backward(u, index, mu_u, sd_u, den, zy, x, live)
        return (torch.nn.functional.softplus(x) / a).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        if len(ctx.saved_tensors) == 1:
            return torch.zeros_like(ctx.saved_tensors[0]), None, None, None, None
        u, index, mu_u, sd_u, den, zy, x, live = ctx.saved_tensors
        c = u.shape[1]
        w = -grad_out.unsqueeze(1) * torch.sigmoid(x) / den
        beta = torch.where(live, -w * zy / (c * sd_u.clamp_min(torch.finfo(u.dtype).tiny)), 0.0)
        alpha = -w / c - beta * mu_u
        grad = torch.addcmul(alpha, u, beta)
        grad.scatter_add_(1, index.unsqueeze(1), w)
        return grad, None, None, None, None


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
