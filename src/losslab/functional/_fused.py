r"""Row-wise losses with hand-written backward passes, for CPU speed.

Eager PyTorch runs one memory pass per elementwise op, and autograd keeps every
intermediate. The losses here have short closed-form gradients, so a custom
``autograd.Function`` computes forward and backward in a few passes over the ``(R, C)``
logits and saves at most two ``(R, C)`` buffers. Inputs are 2-D ``(R, C)`` float32/64
logits and int64 ``(R,)`` targets (callers flatten spatial dims). Gradients are checked
against autograd in float64 by the generic ``gradcheck`` tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from losslab.functional._common import z_score

if TYPE_CHECKING:
    from losslab.kinds.multiclass import MulticlassInput


def as_rows(x: Tensor) -> Tensor:
    """``(N, C, *)`` -> ``(R, C)`` with the class axis last."""
    return x if x.dim() == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


#: Elements per block of rows. The row-wise kernels below make several passes over their
#: ``(R, C)`` input; done block by block, the passes and temporaries stay in the CPU's
#: cache and the allocator reuses one small buffer instead of mapping fresh full-size ones.
BLOCK_ELEMENTS = 1 << 18


def _step(cols: int) -> int:
    """Rows per block for rows of ``cols`` elements."""
    return max(1, BLOCK_ELEMENTS // max(1, cols))


def row_blocks(rows: int, cols: int) -> list[slice]:
    """Consecutive row slices of about :data:`BLOCK_ELEMENTS` elements each."""
    step = _step(cols)
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def leading_blocks(x: Tensor) -> list[slice]:
    """:func:`row_blocks` over the leading axis of ``x`` (its rows: ``x[s]`` for each slice)."""
    rows = x.shape[0] if x.dim() else 1
    return row_blocks(rows, x.numel() // max(rows, 1))


def block_rows(z: Tensor) -> int:
    """Rows per block of ``(R, C)`` ``z`` (:func:`row_blocks`), for ``Tensor.split``."""
    return _step(z.shape[1])


def block_scratch(z: Tensor) -> Tensor:
    """A buffer of one block's rows of ``z`` (see :func:`row_blocks`), reused by every block
    through ``out=``: one allocation per pass instead of one per block and operation."""
    return z.new_empty(min(z.shape[0], block_rows(z)), z.shape[1])


def exp_floor(dtype: torch.dtype) -> float:
    """``0.8 log(tiny)`` of a float dtype (-69.9 in float32): exponents raised to it keep
    ``exp`` and the arithmetic on its result out of the subnormal range, which this CPU
    computes about 100 times slower, at a relative change of ``exp(floor) = 5e-31``,
    below any float's resolution of the sums it enters."""
    return 0.8 * math.log(torch.finfo(dtype).tiny)


def row_dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_k a_k b_k`` per row of ``(R, C)``, as ``(R, 1)`` (several times faster on CPU
    than the batched ``bmm`` of ``(R, 1, C) x (R, C, 1)``)."""
    return (a * b).sum(dim=1, keepdim=True)


def softplus(x: Tensor, out: Tensor | None = None, largest: Tensor | None = None) -> Tensor:
    """``softplus(x)`` (into ``out`` if given): ``log1p(exp(x))`` where every ``exp(x)`` is
    finite (exact there, and faster on CPU than the overflow-safe ``logaddexp(x, 0)``,
    taken otherwise and under ``torch.compile``). ``largest`` may pass maxima of ``x``
    already computed (any tensor whose maximum is ``x``'s)."""
    if not torch.compiler.is_compiling() and x.numel():
        top = x.amax() if largest is None else largest.amax()
        if float(top) < math.log(torch.finfo(x.dtype).max) - 1.0:
            return torch.exp(x, out=out).log1p_() if out is not None else torch.exp(x).log1p_()
    zero = x.new_zeros(())
    return torch.logaddexp(x, zero, out=out) if out is not None else torch.logaddexp(x, zero)


def ldr_block(
    z: Tensor, normalize: str, floor: float, work: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(base, m, top)`` of LDR's normalisation ``f = base / m`` for a block of rows of
    ``(R, C)``: ``base`` is ``softplus(z)`` (``"softplus_mean"``, written to ``work``) or
    ``z``; ``m`` the floored mean of ``base`` (of ``|z|`` for ``"abs_mean"``; 1 for
    ``"none"``); ``top`` the row maximum of ``base``, the shift that keeps the
    exponentials finite.

    softplus (:func:`softplus`) is increasing, so ``top`` is the softplus of the rows'
    largest logits.
    """
    top = z.amax(dim=1, keepdim=True)
    if normalize == "softplus_mean":
        base = softplus(z, out=work, largest=top)
        top = torch.nn.functional.softplus(top)
        m = base.mean(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).eps)
    elif normalize == "abs_mean":
        m = (torch.abs(z, out=work).sum(dim=1, keepdim=True) / z.shape[1]).clamp_min(floor)
        base = z
    else:
        base, m = z, torch.ones_like(top)
    return base, m, top


class LDRPass(NamedTuple):
    """Per-row results of LDR-KL's forward pass over ``(R, C)`` logits: the saved
    exponentials ``e`` ``(R, C)`` and ``(R, 1)`` columns ``m``, ``top``, ``scale = 1 / (m
    lambda)``, ``total = sum e`` and ``dot = <e, base>`` (``None`` without normalisation)."""

    e: Tensor
    m: Tensor
    top: Tensor
    scale: Tensor
    total: Tensor
    dot: Tensor | None


class LDRPassBuilder:
    """Builds an :class:`LDRPass` block by block: :meth:`add` takes a block's ``base``,
    ``m``, ``top`` and temperatures and writes its exponentials, so that a caller that
    has the block in cache for another reason (ALDR-KL's temperature step) adds the
    loss's forward work to the same visit."""

    def __init__(self, z: Tensor, margin: float, normalize: str) -> None:
        self.e = torch.empty_like(z)
        self.margin, self.normalize = margin, normalize
        self.parts: list[list[Tensor]] = [[], [], [], [], []]
        self.start = 0

    def add(
        self, base: Tensor, m: Tensor, top: Tensor, ids: Tensor, lam: Tensor | float, work: Tensor
    ) -> None:
        n = base.shape[0]
        scale = (m * lam).reciprocal_()
        # The target's exponent has no margin: -c / lambda is added to it before exp.
        # Subtract before scaling: the row's maximum maps to exactly exp(0) whatever the
        # size of the logits.
        shift = (
            -self.margin / lam
            if isinstance(lam, Tensor)
            else m.new_full(m.shape, -self.margin / lam)
        )
        es = self.e[self.start : self.start + n]
        e = torch.sub(base, top, out=es).mul_(scale).scatter_add_(1, ids, shift).exp_()
        self.start += n
        self.parts[0].append(m)
        self.parts[1].append(top)
        self.parts[2].append(scale)
        self.parts[3].append(e.sum(dim=1, keepdim=True))
        if self.normalize != "none":
            self.parts[4].append(torch.mul(e, base, out=work).sum(dim=1, keepdim=True))

    def result(self) -> LDRPass:
        empty = self.e.new_empty(0, 1)
        m, top, scale, total = (torch.cat(p) if p else empty for p in self.parts[:4])
        dot = torch.cat(self.parts[4]) if self.parts[4] else None
        return LDRPass(self.e, m, top, scale, total, dot)


def ldr_pass(
    z: Tensor,
    idx: Tensor,
    margin: float,
    lam: Tensor | float,
    normalize: str,
    floor: float,
) -> LDRPass:
    """LDR-KL's forward pass over ``(R, C)`` logits, block by block (:func:`row_blocks`);
    ``idx`` ``(R, 1)``, ``lam`` a float or ``(R, 1)``."""
    step = block_rows(z)
    lam_b = lam.split(step) if isinstance(lam, Tensor) else itertools.repeat(lam)
    buf = block_scratch(z)
    out = LDRPassBuilder(z, margin, normalize)
    # lam_b may be endless (one float for every block)
    for zs, ids, lam_s in zip(z.split(step), idx.split(step), lam_b, strict=False):
        work = buf[: zs.shape[0]]
        base, m, top = ldr_block(zs, normalize, floor, work)
        out.add(base, m, top, ids, lam_s, work)
    return out.result()


class LDRKLRows(torch.autograd.Function):
    r"""LDR-KL per row: ``-lambda log softmax(u)_y - lambda log C``,
    ``u = (f + c (1 - e_y)) / lambda``, ``f = normalize(z) = base / m`` (see
    :func:`ldr_block`).

    Forward (:func:`ldr_pass`): ``exp(u - max u)`` is ``exp((base - max base) / (m
    lambda))`` off the target and ``exp(-c / lambda)`` times that at the target; the dot
    product the backward needs is taken there too. Both passes run block by block
    (:func:`row_blocks`); the exponentials are the one saved ``(R, C)`` buffer. With
    ``G = softmax(u) - e_y`` (``dL/df = G``; lambda cancels) and ``k = 1/m``:

    * none: ``dL/dz = G``;
    * softplus_mean: ``dL/dz = k (G - k <G, base>/C) * sigmoid(z)``;
    * abs_mean: ``dL/dz = k (G - sign(z) k <G, z>/C)``, with ``sign(0) = 0`` (a
      subgradient of ``|z|``, autograd's choice).

    Where the floor of ``m`` is active, ``m`` is a constant. ``temperature`` (float or
    ``(R,)`` tensor) carries no gradient. ``done`` may pass the forward pass already
    made at these temperatures (by ALDR-KL's temperature step, on the same visit).
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
        done: LDRPass | None = None,
    ) -> Tensor:
        c = z.shape[1]
        idx = index.unsqueeze(1)
        lam = temperature.unsqueeze(1) if isinstance(temperature, Tensor) else temperature
        fp = done if done is not None else ldr_pass(z, idx, margin, lam, normalize, floor)
        z_y = z.gather(1, idx)
        base_y = torch.nn.functional.softplus(z_y) if normalize == "softplus_mean" else z_y
        m, total = fp.m, fp.total
        loss = lam * (fp.scale * (fp.top - base_y) + margin / lam + total.log() - math.log(c))
        dot = torch.zeros_like(m)
        if fp.dot is not None:
            # <G, base> = <e, base> / total - base_y; m has no gradient where its floor is
            # active
            live = m > torch.finfo(m.dtype).eps
            if normalize == "abs_mean":
                live &= m > floor
            dot = torch.where(live, fp.dot / total - base_y, 0.0)
        ctx.normalize = normalize
        ctx.save_for_backward(z, fp.e, index, m, total, dot)
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, e, index, m, total, dot = ctx.saved_tensors
        idx = index.unsqueeze(1)
        gk = grad_out.unsqueeze(1) / m
        coef = gk * dot / (m * z.shape[1])
        scale = gk / total
        grad = torch.empty_like(z)
        step = block_rows(z)
        work = block_scratch(z)
        at_target = -gk
        blocks = (t.split(step) for t in (z, e, grad, scale, coef))
        for zs, es, gs, scale_s, coef_s in zip(*blocks, strict=True):
            torch.mul(es, scale_s, out=gs)
            if ctx.normalize == "softplus_mean":
                gs.sub_(coef_s).mul_(torch.sigmoid(zs, out=work[: zs.shape[0]]))
            elif ctx.normalize == "abs_mean":
                gs.sub_(torch.sign(zs, out=work[: zs.shape[0]]).mul_(coef_s))
        if ctx.normalize == "softplus_mean":
            # the target's -gk was to be multiplied by sigmoid(z_y) too
            at_target = at_target * torch.sigmoid(z.gather(1, idx))
        return grad.scatter_add_(1, idx, at_target), None, None, None, None, None, None


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
        sigma_s = (row_dot(d, d) / c).sqrt_()
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


class ScaledCERows(torch.autograd.Function):
    r"""Cross-entropy of ``s z`` with the target logit replaced by ``s new``, per row of
    ``(R, C)`` scores; ``new`` ``(R, 1)`` carries its own gradient (for the angular-margin
    losses, the margin transform of the target cosine; ``z_y`` itself for a plain scaled
    cross-entropy).

    Forward turns one ``(R, C)`` buffer into the softmax ``p``, block by block
    (:func:`row_blocks`); backward is ``s g p`` with the target column 0 for ``z`` and
    ``s g (p_y - 1)`` for ``new``: two full-size buffers in all, as torch's fused
    cross-entropy.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, index: Tensor, new: Tensor, scale: float) -> Tensor:
        idx = index.unsqueeze(1)
        target = new * scale
        p = torch.empty_like(z)
        top = z.new_empty(z.shape[0], 1)
        total = z.new_empty(z.shape[0], 1)
        # Subnormal floats cost the CPU about 100 times a normal operation, and large
        # scales put many score gaps below log(tiny) (exp) or near it (the division and
        # the backward's products). Exponents are raised to 0.8 log(tiny) (-69.9 in
        # float32): probabilities under 5e-31 become 5e-31 / row sum, a change far below
        # the dtype's resolution of the row sum and of the gradient. Blocks with masked
        # (-inf) scores, and compiled graphs, keep the exact exponentials (masked classes
        # must get exactly zero probability).
        floor = exp_floor(z.dtype)
        compiling = torch.compiler.is_compiling()
        for s in row_blocks(*z.shape):
            ps = torch.mul(z[s], scale, out=p[s]).scatter_(1, idx[s], target[s])
            top[s] = m = ps.amax(dim=1, keepdim=True)
            ps.sub_(m)
            if not compiling and float(ps.amin()) > -math.inf:
                ps.clamp_min_(floor)
            total[s] = t = ps.exp_().sum(dim=1, keepdim=True)
            ps.div_(t)
        loss = total.log_().add_(top).sub_(target)
        ctx.scale = scale
        ctx.save_for_backward(p, index)
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        p, index = ctx.saved_tensors
        idx = index.unsqueeze(1)
        gs = grad_out.unsqueeze(1) * ctx.scale
        grad_new = (p.gather(1, idx) - 1.0) * gs
        grad = torch.empty_like(p)
        for s in row_blocks(*p.shape):
            torch.mul(p[s], gs[s], out=grad[s])
        return grad.scatter_(1, idx, 0.0), None, grad_new, None


class SoftmaxSeparableRows(torch.autograd.Function):
    r"""``L = scale * sum_k phi(p_k) + psi(p_y)`` per row, ``p = softmax(z)``.

    With ``u = phi'(p)`` and ``t = scale <p, u> + p_y psi'(p_y)``, the softmax Jacobian
    gives ``dL/dz = p * (scale u - t) + e_y p_y psi'(p_y)``: a row dot product and three
    elementwise passes in backward, with ``p`` the only saved buffer. Both
    passes run block by block (:func:`row_blocks`). ``phi``/``dphi`` are elementwise
    callables on a block of ``p`` (``dphi`` may return its input, which is never written
    to); ``psi``/``dpsi`` act on the gathered ``(R, 1)``.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, index: Tensor, phi: Any, dphi: Any, psi: Any, dpsi: Any, scale: float
    ) -> Tensor:
        idx = index.unsqueeze(1)
        saved = torch.empty_like(z)
        acc = z.new_empty(z.shape[0], 1)
        for s in row_blocks(*z.shape):
            acc[s] = phi(torch.softmax(z[s], dim=1, out=saved[s])).sum(dim=1, keepdim=True)
        at = saved.gather(1, idx)
        ctx.dphi, ctx.dpsi, ctx.scale = dphi, dpsi, scale
        ctx.save_for_backward(saved, index)
        return (scale * acc + psi(at)).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        saved, index = ctx.saved_tensors
        idx = index.unsqueeze(1)
        g = grad_out.unsqueeze(1)
        at = saved.gather(1, idx)
        target_term = at * ctx.dpsi(at)
        gs_scale = g * ctx.scale
        grad = torch.empty_like(saved)
        for s in row_blocks(*saved.shape):
            ps = saved[s]
            u = ctx.dphi(ps)
            t = ctx.scale * row_dot(ps, u) + target_term[s]
            torch.mul(u, gs_scale[s], out=grad[s]).sub_(g[s] * t).mul_(ps)
        grad.scatter_add_(1, idx, g * target_term)
        return grad, None, None, None, None, None, None


class ComplementSeparableRows(torch.autograd.Function):
    r"""``L = scale * sum_k phi(p_k) + psi(p_y)`` per row, ``p = softmax(z)``, for terms
    of ``1 - p`` near ``p = 1`` (self-adjusting Dice). ``phi`` and ``psi`` are called as
    ``f(p, q, floored, out)`` with ``q = 1 - p`` floored at the smallest normal number
    (:func:`softmax_complement`) and ``floored`` whether that floor binds anywhere in the
    block; ``phi`` returns the row sums ``(R, 1)`` of its term, ``psi`` its value, and
    each writes ``p f'(p)`` (its total derivative times ``p``) into ``out`` unless that is
    ``None``, sharing the intermediates of the value.

    Forward evaluates both on each block while it is in cache (:func:`row_blocks`) and,
    when a gradient is wanted (``want``: autograd does not tell a ``Function``'s forward
    whether grad mode was on at the call), keeps ``w = p phi'(p)`` and ``t = scale sum_k
    w_k + p_y psi'(p_y)``; backward recomputes ``p`` block by block into the gradient
    and forms ``dL/dz = scale w - t p + e_y p_y psi'(p_y)``, with no derivative
    recomputed and ``w`` the only saved ``(R, C)`` buffer.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, index: Tensor, phi: Any, psi: Any, scale: float, want: bool
    ) -> Tensor:
        idx = index.unsqueeze(1)
        w = torch.empty_like(z) if want else None
        acc = z.new_empty(z.shape[0], 1)
        wsum = z.new_empty(z.shape[0], 1)
        p_at, q_at = z.new_empty(z.shape[0], 1), z.new_empty(z.shape[0], 1)
        work_p, work_q = block_scratch(z), block_scratch(z)
        for s in row_blocks(*z.shape):
            rows = s.stop - s.start
            ps, qs, floored = softmax_complement(z[s], work_p[:rows], work_q[:rows])
            p_at[s], q_at[s] = ps.gather(1, idx[s]), qs.gather(1, idx[s])
            acc[s] = phi(ps, qs, floored, None if w is None else w[s])
            if w is not None:
                wsum[s] = w[s].sum(dim=1, keepdim=True)
        floored_at = _floor_binds(q_at)
        target_term = torch.empty_like(p_at) if w is not None else None
        value_at = psi(p_at, q_at, floored_at, target_term)
        if w is not None:
            assert target_term is not None
            ctx.scale = scale
            ctx.save_for_backward(z, w, scale * wsum + target_term, target_term, index)
        return (scale * acc + value_at).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, w, t, target_term, index = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        gs, gt = g * ctx.scale, g.neg() * t
        grad = torch.empty_like(w)
        work = block_scratch(w)
        for s in row_blocks(*w.shape):
            part = torch.mul(w[s], gs[s], out=work[: s.stop - s.start])
            torch.softmax(z[s], dim=1, out=grad[s]).mul_(gt[s]).add_(part)
        grad.scatter_add_(1, index.unsqueeze(1), g * target_term)
        return grad, None, None, None, None, None


def _floor_binds(q: Tensor) -> bool:
    """Whether any ``1 - p`` in ``q`` is at or below the smallest normal number, where
    its floor binds (always ``True`` under compile, which cannot look)."""
    tiny = torch.finfo(q.dtype).tiny
    return torch.compiler.is_compiling() or bool(q.numel() and q.amin() <= tiny)


def softmax_complement(
    z: Tensor, p_out: Tensor | None = None, q_out: Tensor | None = None
) -> tuple[Tensor, Tensor, bool]:
    """``p = softmax(z)`` over axis 1 of ``(N, C, *)`` ``z`` and ``q = 1 - p`` floored at
    the smallest normal number, and whether that floor binds anywhere. With ``p_out``
    and ``q_out`` (one block's buffers, no autograd) the results are written there;
    without, they are differentiable.

    Near ``p = 1``, ``q`` has the float's absolute resolution (6e-8 in float32), not its
    relative one: ``-expm1(log_softmax(z))`` does no better, as the normaliser ``1 +
    rest`` rounds to 1 before its log is taken. The floor keeps ``q^alpha``
    differentiable where ``p`` rounds to 1."""
    tiny = torch.finfo(z.dtype).tiny
    if p_out is None or q_out is None:
        p = torch.softmax(z, dim=1)
        q = 1.0 - p
    else:
        p = torch.softmax(z, dim=1, out=p_out)
        q = torch.sub(p.new_ones(()), p, out=q_out)
    floored = _floor_binds(q)
    if floored:
        q = q.clamp_min(tiny) if q_out is None else q.clamp_min_(tiny)
    return p, q, floored


def softmax_separable(
    logits: Tensor,
    index: Tensor,
    phi: Any,
    dphi: Any,
    psi: Any,
    dpsi: Any,
    scale: float = 1.0,
) -> Tensor:
    """:class:`SoftmaxSeparableRows` on ``(N, C, *)`` logits and ``(N, *)`` index targets,
    per element ``(N, *)``."""
    per = SoftmaxSeparableRows.apply(
        as_rows(logits), index.reshape(-1), phi, dphi, psi, dpsi, scale
    )
    return per.reshape(index.shape)


def complement_separable(
    logits: Tensor, index: Tensor, phi: Any, psi: Any, scale: float = 1.0
) -> Tensor:
    """:class:`ComplementSeparableRows` on ``(N, C, *)`` logits and ``(N, *)`` index
    targets, per element ``(N, *)``."""
    want = torch.is_grad_enabled() and logits.requires_grad
    per = ComplementSeparableRows.apply(as_rows(logits), index.reshape(-1), phi, psi, scale, want)
    return per.reshape(index.shape)


class LogSoftmaxAt(torch.autograd.Function):
    r"""``log softmax(z)`` at ``K`` columns per row of ``(R, C)`` scores (``idx``
    ``(R, K)``), and optionally its row sum ``sum_k log softmax(z)_k``, without an
    ``(R, C)`` activation.

    Forward keeps the row maximum ``m`` and ``S = sum_k exp(z_k - m)`` per row (block by
    block, :func:`row_blocks`); the values are ``(z_j - m) - log S`` and ``sum_k (z_k - m)
    - C log S``, shifted before they are combined as ``log_softmax`` does, so logits of any
    size keep their differences. Backward recomputes ``p = exp(z - m) / S`` block by block
    into the gradient: ``dL/dz = sum_j g_j (e_{idx_j} - p) + g_s (1 - C p)`` for the
    gathered values' and the sum's incoming gradients ``g_j``, ``g_s``. The only ``(R, C)``
    tensor it allocates is that gradient. Rows of only ``-inf`` (masked padding) get
    ``m = 0`` and ``S = 1``, so their values stay ``-inf`` and their gradient 0.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, with_sum: bool) -> tuple[Tensor, Tensor]:
        rows = z.shape[0]
        m, mass = z.new_empty(rows, 1), z.new_empty(rows, 1)
        total = z.new_zeros(rows, 1)
        buf = block_scratch(z)
        for s in row_blocks(*z.shape):
            zs, work = z[s], buf[: s.stop - s.start]
            top = zs.amax(dim=1, keepdim=True)
            m[s] = top = torch.where(torch.isfinite(top), top, 0.0)
            mass[s] = torch.sub(zs, top, out=work).exp_().sum(dim=1, keepdim=True)
            if with_sum:
                total[s] = torch.sub(zs, top, out=work).sum(dim=1, keepdim=True)
        live = mass > 0
        mass = torch.where(live, mass, 1.0)
        log_mass = mass.log()
        ctx.with_sum = with_sum
        ctx.save_for_backward(z, idx, m, mass)
        row_sum = (total - z.shape[1] * log_mass).squeeze(1)
        if not with_sum:
            ctx.mark_non_differentiable(row_sum)
        return (z.gather(1, idx) - m) - log_mass, row_sum

    @staticmethod
    def backward(ctx: Any, g_at: Tensor, g_sum: Tensor | None) -> tuple[Tensor | None, ...]:
        z, idx, m, mass = ctx.saved_tensors
        coef = g_at.sum(dim=1, keepdim=True)
        gs = None
        if ctx.with_sum and g_sum is not None:
            gs = g_sum.unsqueeze(1)
            coef = coef + z.shape[1] * gs
        scale = coef.neg_() / mass
        grad = torch.empty_like(z)
        for s in row_blocks(*z.shape):
            gb = torch.sub(z[s], m[s], out=grad[s]).exp_().mul_(scale[s])
            if gs is not None:
                gb.add_(gs[s])
        return grad.scatter_add_(1, idx, g_at), None, None


def log_softmax_at(z: Tensor, idx: Tensor) -> Tensor:
    """``log_softmax(z, 1).gather(1, idx)`` for ``(R, C)`` scores and ``(R, K)`` indices,
    through :class:`LogSoftmaxAt`."""
    at, _ = LogSoftmaxAt.apply(z, idx, False)
    return at


def target_log_prob(logits: Tensor, index: Tensor) -> Tensor:
    """``log softmax(logits)`` at the target class, ``(N, *)``, for ``(N, C, *)`` logits
    and ``(N, *)`` index targets (:class:`LogSoftmaxAt`)."""
    return log_softmax_at(as_rows(logits), index.reshape(-1, 1)).reshape(index.shape)


def target_log_prob_and_sum(logits: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p_y, sum_k log p_k)`` per element, ``(N, *)`` each, for ``(N, C, *)`` logits
    and ``(N, *)`` index targets, ``p`` the softmax (:class:`LogSoftmaxAt`)."""
    at, total = LogSoftmaxAt.apply(as_rows(logits), index.reshape(-1, 1), True)
    return at.reshape(index.shape), total.reshape(index.shape)


class TargetLogProb:
    """``log softmax`` of multiclass logits, seen from the target.

    Index targets keep only ``log p_y`` (and, with ``with_sum``, ``sum_k log p_k``) through
    the blocked :class:`LogSoftmaxAt`, with no ``(N, C)`` activation; probability targets
    keep the full ``log_softmax``. Losses that are a function of ``log p_y`` read it with
    :meth:`value`, which takes the expectation under a probability target.
    """

    def __init__(self, inp: MulticlassInput, with_sum: bool = False) -> None:
        self.inp = inp
        self.full: Tensor | None = None
        self.at: Tensor | None = None
        self.row_sum: Tensor | None = None
        if inp.soft is None:
            if with_sum:
                self.at, self.row_sum = target_log_prob_and_sum(inp.logits, inp.index)
            else:
                self.at = target_log_prob(inp.logits, inp.index)
        else:
            self.full = torch.log_softmax(inp.logits, dim=1)
            self.row_sum = self.full.sum(dim=1) if with_sum else None

    def value(self, per_class: Callable[[Tensor], Tensor]) -> Tensor:
        """``per_class(log p)`` at the target (its expectation under a soft target)."""
        if self.at is not None:
            return per_class(self.at)
        assert self.full is not None
        return self.inp.gather(per_class(self.full))


class BlockSums(torch.autograd.Function):
    r"""Set-level sums of a function of the rows of ``x``: ``S = sum_b sums(x_b, *aux_b)``
    over the blocks ``x_b`` of its leading axis (:func:`leading_blocks`), a tensor of any
    fixed shape, with the gradient ``dL/dx_b = grad(x_b, *aux_b, dL/dS)`` that the loss
    writes into ``out`` (a keyword argument), block by block.

    ``aux`` are tensors (or ``None``) whose leading axis runs over ``x``'s rows (masses,
    targets, broadcast views); they are sliced with each block. The loss thus writes its
    sums and their gradient as few elementwise passes on a block in cache, and nothing of
    ``x``'s size is saved but the inputs.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, sums: Any, grad: Any, aux: tuple[Tensor | None, ...]
    ) -> Tensor:
        total: Tensor | None = None
        for s in leading_blocks(x) or [slice(0, 0)]:
            part = sums(x[s], *(a if a is None else a[s] for a in aux))
            total = part if total is None else total.add_(part)
        assert total is not None
        ctx.grad_fn = grad
        ctx.save_for_backward(x, *aux)
        return total

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, *aux = ctx.saved_tensors
        out = torch.empty_like(x)
        for s in leading_blocks(x):
            ctx.grad_fn(x[s], *(a if a is None else a[s] for a in aux), g, out=out[s])
        return out, None, None, None


def block_sums(x: Tensor, sums: Any, grad: Any, *aux: Tensor | None) -> Tensor:
    """:class:`BlockSums` of ``x`` (see there)."""
    return BlockSums.apply(x, sums, grad, aux)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum(a * b)`` over all elements, one BLAS call where both are contiguous."""
    if a.is_contiguous() and b.is_contiguous() and a.shape == b.shape:
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


def as_float(c: Tensor) -> float | Tensor:
    """A 0-d coefficient as a Python float for ``alpha=`` and scalar arguments (the
    tensor itself under ``torch.compile``)."""
    return c if torch.compiler.is_compiling() else float(c)


def add_scaled(out: Tensor, x: Tensor, c: float | Tensor) -> Tensor:
    """``out += c x`` in place (``c`` a float, or a 0-d tensor under compile)."""
    return out.add_(x, alpha=c) if isinstance(c, float) else out.add_(x * c)


def mass_sums(
    x: Tensor, f: Any, pos: Tensor, mass: Tensor | None, square: bool = False
) -> tuple[Tensor, Tensor]:
    r"""``S1 = sum_i pos_i f(x_i)`` and ``S2 = sum_i m_i f(x_i)^k`` (``k = 2`` with
    ``square``, else 1; ``mass`` ``None`` is ``m = 1``), the two sums the set-level binary
    losses (Dice, Tversky, AnyLoss) are made of, by :class:`BlockSums`.

    ``f(block, grad)`` returns ``f`` on a block and, with ``grad``, its derivative (else
    ``None``); the gradient is ``f'(x) (g_1 pos + g_2 m k f^{k-1})``. ``pos`` and
    ``mass`` have ``x``'s shape (broadcast views are fine)."""

    def sums(xb: Tensor, pb: Tensor, mb: Tensor | None) -> Tensor:
        v, _ = f(xb, False)
        if square:
            second = dot(v, v) if mb is None else dot(v * v, mb)
        else:
            second = v.sum() if mb is None else dot(v, mb)
        return torch.stack((dot(v, pb), second))

    def grad(xb: Tensor, pb: Tensor, mb: Tensor | None, g: Tensor, out: Tensor) -> None:
        g1, g2 = as_float(g[0]), as_float(g[1])
        v, d = f(xb, True)
        if square:
            coef = torch.mul(v, 2.0 * g2) if mb is None else torch.mul(v, mb).mul_(2.0 * g2)
            add_scaled(coef, pb, g1)
        else:
            coef = torch.mul(pb, g1)
            if mb is None:
                coef.add_(g2)
            else:
                add_scaled(coef, mb, g2)
        torch.mul(d, coef, out=out)

    s1, s2 = block_sums(x, sums, grad, pos, mass).unbind(0)
    return s1, s2


def sigmoid_and_slope(x: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
    """``p = sigmoid(x)`` and, with ``grad``, its derivative ``p - p^2`` (to absolute
    precision: it rounds to 0 where ``p`` rounds to 1, a term the set sums cannot see)."""
    p = torch.sigmoid(x)
    return p, (torch.addcmul(p, p, p, value=-1.0) if grad else None)


class HingeSumRows(torch.autograd.Function):
    r"""``sum_k [z_k - z_y + c]_+`` per row of ``(R, C)`` logits (the target's own term
    is ``c``), forward and backward block by block (:func:`row_blocks`) with no saved
    ``(R, C)`` buffer: ``dL/dz_k = g 1[z_k > z_y - c]``, and the target's column gets
    ``-g`` times the row's count of active terms besides."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, index: Tensor, margin: float) -> Tensor:
        idx = index.unsqueeze(1)
        thr = z.gather(1, idx).sub_(margin)
        acc = z.new_empty(z.shape[0], 1)
        work = block_scratch(z)
        for s in row_blocks(*z.shape):
            diff = torch.sub(z[s], thr[s], out=work[: s.stop - s.start])
            acc[s] = diff.clamp_min_(0.0).sum(dim=1, keepdim=True)
        ctx.save_for_backward(z, idx, thr)
        return acc.squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, idx, thr = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        grad = torch.empty_like(z)
        active = z.new_empty(z.shape[0], 1)
        for s in row_blocks(*z.shape):
            gs = torch.gt(z[s], thr[s], out=grad[s]).mul_(g[s])
            active[s] = gs.sum(dim=1, keepdim=True)
        return grad.scatter_add_(1, idx, active.neg_()), None, None


def hinge_sum(logits: Tensor, index: Tensor, margin: float) -> Tensor:
    """:class:`HingeSumRows` on ``(N, C, *)`` logits and ``(N, *)`` index targets, per
    element ``(N, *)``."""
    return HingeSumRows.apply(as_rows(logits), index.reshape(-1), margin).reshape(index.shape)
