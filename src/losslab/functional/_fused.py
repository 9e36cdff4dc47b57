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
    ``u = (f + c (1 - e_y)) / lambda``, ``f = normalize(z)``.

    With ``G = softmax(u) - e_y`` the gradient is ``dL/df = G`` (lambda cancels), and
    through the normalisations, with ``m`` the row mean of ``s = softplus(z)`` or ``|z|``:

    * none: ``dL/dz = G``;
    * softplus_mean: ``dL/dz = (G - <G, f>/C) / m * sigmoid(z)``;
    * abs_mean: ``dL/dz = (G - sign(z) <G, f>/C) / m``.

    ``temperature`` (float or ``(R,)`` tensor) carries no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        z: Tensor,
        index: Tensor,
        margin: float,
        temperature: Tensor | float,
        normalize: str,
    ) -> Tensor:
        c = z.shape[1]
        idx = index.unsqueeze(1)
        eps = torch.finfo(z.dtype).eps
        lam = temperature.unsqueeze(1) if isinstance(temperature, Tensor) else temperature
        s = m = None
        if normalize == "softplus_mean":
            s = torch.nn.functional.softplus(z)
            m_raw = s.mean(dim=1, keepdim=True)
        elif normalize == "abs_mean":
            m_raw = z.abs().mean(dim=1, keepdim=True)
        if normalize == "none":
            u = (z + margin) / lam
        else:
            m = m_raw.clamp_min(eps)
            # u = f / lam + c / lam with f = s / m (or z / m), in one fused pass.
            shift = torch.full_like(z[:, :1], margin) / lam
            u = torch.addcmul(shift, s if s is not None else z, 1.0 / (m * lam))
        # u_y loses the margin: a_y = 0.
        u.scatter_add_(1, idx, torch.full_like(z[:, :1], -margin) / lam)
        u_y = u.gather(1, idx)
        mx = u.max(dim=1, keepdim=True).values
        e = u.sub_(mx).exp_()  # u's buffer now holds exp(u - max)
        total = e.sum(dim=1, keepdim=True)
        loss = lam * (mx + total.log() - u_y - math.log(c))
        ctx.normalize = normalize
        ctx.num_classes = c
        clamped = None if m is None else (m_raw <= eps)
        ctx.save_for_backward(z, e, total, index, s, m, clamped)
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, e, total, index, s, m, clamped = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        grad = e / total
        grad.scatter_add_(1, index.unsqueeze(1), torch.full_like(grad[:, :1], -1.0))
        if ctx.normalize == "none":
            return grad.mul_(g), None, None, None, None
        base = s if s is not None else z
        # <G, f> / C with f = base / m; zero where m was clamped (m then has no gradient).
        dot = (grad * base).sum(dim=1, keepdim=True) / (m * ctx.num_classes)
        dot = torch.where(clamped, 0.0, dot)
        if ctx.normalize == "softplus_mean":
            grad.sub_(dot).mul_(g / m).mul_(torch.sigmoid(z))
        else:
            grad.sub_(torch.sign(z).mul_(dot)).mul_(g / m)
        return grad, None, None, None, None


class ZLossRows(torch.autograd.Function):
    r"""Z-loss per row: ``softplus(a (b - z_y)) / a``, ``z = (o - mu) / sigma``.

    With ``w = -sigmoid(a (b - z_y)) / sigma`` the gradient is affine in ``o``:

    .. math:: \partial L / \partial o_j = w\,(\delta_{jy} - 1/C) - w\,z_y\,(o_j - \mu)/(C\sigma)

    (the last term vanishes where ``sigma`` was clamped), so the backward is one pass.
    """

    @staticmethod
    def forward(ctx: Any, o: Tensor, index: Tensor, a: float, b: float) -> Tensor:
        if o.shape[0] == 0:  # var_mean warns on empty input
            ctx.save_for_backward(o)
            return o.new_zeros(0)
        idx = index.unsqueeze(1)
        var, mu = torch.var_mean(o, dim=1, keepdim=True, correction=0)
        eps = torch.finfo(o.dtype).eps
        sd = var.clamp_min(eps * eps).sqrt()
        zy = (o.gather(1, idx) - mu) / sd
        x = a * (b - zy)
        ctx.a = a
        ctx.save_for_backward(o, index, mu, sd, zy, x, var > eps * eps)
        return (torch.nn.functional.softplus(x) / a).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        if len(ctx.saved_tensors) == 1:
            return torch.zeros_like(ctx.saved_tensors[0]), None, None, None
        o, index, mu, sd, zy, x, live = ctx.saved_tensors
        c = o.shape[1]
        w = -grad_out.unsqueeze(1) * torch.sigmoid(x) / sd
        beta = torch.where(live, -w * zy / (c * sd), 0.0)
        alpha = -w / c - beta * mu
        grad = torch.addcmul(alpha, o, beta)
        grad.scatter_add_(1, index.unsqueeze(1), w)
        return grad, None, None, None


class SoftmaxSeparableRows(torch.autograd.Function):
    r"""``L = sum_k phi(p_k) + psi(p_y)`` per row, ``p = softmax(z)``, with one saved buffer.

    With ``d = phi'(p) + e_y psi'(p_y)``, the softmax Jacobian gives
    ``dL/dz_j = p_j (d_j - sum_k p_k d_k)``: two passes in backward instead of autograd's
    chain through every intermediate. ``phi``/``psi`` and their derivatives are
    elementwise callables (``psi`` applies to the gathered ``(R, 1)`` column).
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, index: Tensor, phi: Any, dphi: Any, psi: Any, dpsi: Any
    ) -> Tensor:
        idx = index.unsqueeze(1)
        p = torch.softmax(z, dim=1)
        p_y = p.gather(1, idx)
        ctx.dphi, ctx.dpsi = dphi, dpsi
        ctx.save_for_backward(p, index)
        return (phi(p).sum(dim=1, keepdim=True) + psi(p_y)).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        p, index = ctx.saved_tensors
        idx = index.unsqueeze(1)
        d = ctx.dphi(p)
        d.scatter_add_(1, idx, ctx.dpsi(p.gather(1, idx)))
        t = (p * d).sum(dim=1, keepdim=True)
        grad = d.sub_(t).mul_(p).mul_(grad_out.unsqueeze(1))
        return grad, None, None, None, None, None
