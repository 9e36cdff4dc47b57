r"""Fused linear + cross-entropy head that never builds the N x V logit matrix.

For hidden states :math:`h \in \mathbb{R}^{N \times D}`, classifier :math:`W \in \mathbb{R}^{V
\times D}` (and bias :math:`b`) the logits are :math:`z = h W^\top + b`, optionally soft-capped
(Gemma 2): :math:`z \leftarrow c \tanh(z / c)`. Per valid row :math:`i` (target
:math:`y_i \ne` ``ignore_index``), with :math:`\ell_i = \log\sum_k e^{z_{ik}}`, label smoothing
:math:`\epsilon` and PaLM's z-loss weight :math:`\lambda`:

.. math::

    L_i = (1-\epsilon)(\ell_i - z_{i y_i}) + \epsilon(\ell_i - \tfrac{1}{V}\textstyle\sum_k z_{ik})
          + \lambda \ell_i^2

which is ``F.cross_entropy(z, y, label_smoothing=eps) + lam * logsumexp(z)**2`` row by row. Its
gradient with respect to the (capped) logits is

.. math::

    G_{ik} = r_i\big[(1 + 2\lambda\ell_i)\,p_{ik} - (1-\epsilon)[k = y_i] - \epsilon / V\big],
    \qquad p_{ik} = e^{z_{ik} - \ell_i},

times :math:`1 - (z_{ik}/c)^2` under soft-capping, with :math:`r_i` = 1/#valid ("mean"),
1 ("sum") or the upstream gradient ("none"), and 0 for ignored rows. Then
:math:`\nabla h = G W`, :math:`\nabla W = G^\top h`, :math:`\nabla b = G^\top 1`.

Algorithm (chunking over tokens as in Liger-Kernel's fused linear cross-entropy,
`linkedin/Liger-Kernel`, and PyTorch 2.13's ``F.linear_cross_entropy``; log-sum-exp over
vocabulary tiles as in Cut Cross-Entropy, Wijmans et al., ICLR 2025, arXiv:2411.09009,
`apple/ml-cross-entropy`):

* ``reduction="mean"/"sum"`` with gradients wanted: each chunk of rows gets its logits from one
  GEMM, the softmax is formed in place in that buffer (:math:`G` is applied in factored form,
  see :func:`_fused_forward`), and :math:`\nabla h`,
  :math:`\nabla W` (float32 accumulator) and :math:`\nabla b` are accumulated in the forward pass
  (6NDV flops, the same as the naive head). Backward only scales them by the scalar upstream
  gradient, so a second backward through the same graph raises.
* ``reduction="none"`` (or no gradient wanted): the forward computes only the log-sum-exp with an
  online (running max / rescaled sum) reduction over (token chunk x vocabulary tile) blocks and
  saves the inputs and :math:`\ell`; backward recomputes each block's logits and applies
  :math:`G` with the per-row upstream gradient (8NDV flops), since
  :math:`\nabla W = \sum_i g_i\, G_i^\top h_i` cannot be rescaled after the token sum.

Logits are always float32 (float64 stays float64); bf16/fp16 inputs are up-cast per chunk and
the weight gradient is accumulated in float32 and cast once at the end.

Subnormal floats: on x86 CPUs, arithmetic that produces or consumes subnormal floats takes
microcode assists that are 10-100x slower. For large logits (std ~30) ``exp(z - max)`` underflows
into the subnormal range for most of the vocabulary and the naive head becomes ~8x slower.
Here a chunk whose logits all lie in [-30, 30] is exponentiated directly (no shift needed);
otherwise :math:`z - \max` is formed and, where a row's range exceeds :math:`T`, clamped from
below at :math:`-T` before ``exp``, with :math:`T` chosen so that :math:`e^{-T}` times the
smallest row factor :math:`r_i / V` is still a normal float
(about 80 - log V - log N in float32). A clamped entry contributes at most
:math:`V e^{-T} < 10^{-20}` relative error to the sum and to the gradient: far below float32
resolution, and no subnormal is ever produced.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from losslab._reduce import reduce_loss

from ._checks import (
    check_float,
    check_reduction,
    check_target,
    check_target_range,
)

__all__ = ["LinearCrossEntropy", "linear_cross_entropy"]

_FN = "linear_cross_entropy"


@dataclass(frozen=True)
class _Config:
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    reduction: str
    chunk_size: int
    vocab_chunk_size: int
    allow_retain_graph: bool = False


def _acc_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64 (gradcheck), else float32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _exp_floor(dtype: torch.dtype, vocab: int, min_scale: float) -> float:
    """Largest T such that exp(-T) * min_scale / vocab is still a normal float of ``dtype``.

    Clamping ``z - max`` at ``-T`` keeps every exp() and every entry of the gradient normal.
    Never below 40 (then e^-40 * V is still < 1e-10 relative), never above the exp limit.
    """
    log_tiny = math.log(torch.finfo(dtype).tiny)  # -87.3 (fp32), -708.4 (fp64)
    top = -log_tiny - 7.0
    t = top - math.log(max(vocab, 1)) + math.log(max(min_scale, 1e-300))
    return float(min(max(t, 40.0), top))


def auto_chunk_size(n: int, d: int, v: int, dtype: torch.dtype = torch.float32) -> int:
    """Rows per chunk so that one chunk of float32 logits is at most 0.4x the gradient memory.

    The returned gradients (N x D + V x D) are the memory floor of any exact head; a logit
    chunk of 0.4x that keeps the peak within ~1.45x the floor (measured: 1.42x at (4096, 1024,
    65536)). Larger chunks run faster on CPU (each chunk GEMM streams all of W), so the chunk
    is the largest multiple of 32 rows within that budget (at least 32 rows, at most N).
    """
    item = 4 if dtype != torch.float64 else 8
    budget = max(int(0.4 * (n * d + v * d) * item), 16 * 2**20)
    rows = max(budget // max(v * item, 1) // 32 * 32, 32)
    return int(max(1, min(rows, n)))


def _default_chunk(n: int, d: int, v: int, dtype: torch.dtype, softcap: float | None) -> int:
    """auto_chunk_size, halved under softcap (which needs a second, tanh, chunk buffer)."""
    c = auto_chunk_size(n, d, v, dtype)
    return max(32, c // 2 // 32 * 32) if softcap is not None and c > 32 else c


def _logits(h_c: Tensor, w: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """out <- h_c @ w.T (+ b), computed in out's dtype without a temporary."""
    if b is None:
        return torch.mm(h_c, w.t(), out=out)
    return torch.addmm(b, h_c, w.t(), out=out)


def _cap_(z: Tensor, softcap: float, tanh_out: Tensor) -> None:
    """In place: z <- c * tanh(z / c); tanh_out <- tanh(z / c) (for the derivative)."""
    torch.div(z, softcap, out=tanh_out)
    tanh_out.tanh_()
    torch.mul(tanh_out, softcap, out=z)


def _target_logit(
    h: Tensor, w: Tensor, b: Tensor | None, y: Tensor, softcap: float | None
) -> Tensor:
    """z[i, y_i] by an indexed dot product (O(N D)); used where the full row is not at hand."""
    zy = (h * w.index_select(0, y)).sum(1)
    if b is not None:
        zy = zy + b.index_select(0, y)
    if softcap is not None:
        zy = torch.tanh(zy / softcap) * softcap
    return zy


def _row_loss(
    lse: Tensor, zy: Tensor, zsum: Tensor | None, valid: Tensor, cfg: _Config, vocab: int
) -> Tensor:
    ls, zl = cfg.label_smoothing, cfg.z_loss
    loss = lse - (1.0 - ls) * zy
    if ls > 0.0 and zsum is not None:
        loss = loss - (ls / vocab) * zsum
    if zl > 0.0:
        loss = loss + zl * lse * lse
    return torch.where(valid, loss, torch.zeros_like(loss))


def _grad_from_probs_(
    p: Tensor,
    r_c: Tensor,
    lse_c: Tensor,
    y_local: Tensor | None,
    cfg: _Config,
    vocab: int,
    tanh_c: Tensor | None,
    prob_scale: Tensor | None = None,
) -> Tensor:
    """In place: p <- dL/dz for one block (see the module docstring).

    ``p`` holds e^{z - m} (``prob_scale`` = 1/sum) or already-normalised probabilities.
    ``y_local`` is the target column inside this block (-1 where the target is elsewhere).
    """
    ls, zl = cfg.label_smoothing, cfg.z_loss
    coef = r_c * (1.0 + 2.0 * zl * lse_c) if zl > 0.0 else r_c
    if prob_scale is not None:
        coef = coef * prob_scale
    p.mul_(coef[:, None])
    if y_local is not None:
        hit = y_local >= 0
        idx = torch.where(hit, y_local, torch.zeros_like(y_local))
        delta = torch.where(hit, -(1.0 - ls) * r_c, torch.zeros_like(r_c))
        p.scatter_add_(1, idx[:, None], delta[:, None].to(p.dtype))
    if ls > 0.0:
        p.sub_(((ls / vocab) * r_c)[:, None])
    if tanh_c is not None:  # d(c tanh(x/c))/dx = 1 - tanh^2, computed in place in the tanh buffer
        tanh_c.mul_(tanh_c).neg_().add_(1.0)
        p.mul_(tanh_c)
    return p


# Fast path: logits within +-_DIRECT_EXP_RANGE are exponentiated without subtracting the row
# max: e^30 * V cannot overflow float32 for any V < 1e25 and e^-30 is far from the subnormal
# range, so one in-place pass (exp) replaces three (subtract max, clamp, exp).
_DIRECT_EXP_RANGE = 30.0


def _fused_forward(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    valid: Tensor,
    r: Tensor,
    min_scale: float,
    cfg: _Config,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Loss rows, lse and the (unscaled by upstream) gradients, one token chunk at a time.

    Each chunk's logits are held transposed, ``z^T = W h_c^T`` (V x c), with the large ``W`` as
    the row operand of the GEMM: on the 2-core CPU of docs/benchmarks.md, ``h_c W^T`` for
    320-416-row chunks took 1.2-1.35x the time per row of ``W h_c^T`` (interleaved
    micro-benchmark, ``x N/c`` chunks: 8.2-9.4 s vs 6.8-7.0 s at (4096, 1024, 65536)), and the
    two gradient products ran as fast or faster in this layout.

    Without soft-capping the gradient of a chunk, ``G = diag(a) E - diag(t) onehot(y) -
    diag(u) 1 1^T`` with ``E = e^{z - s}`` (``s`` = 0 or the row max), ``a = r (1 + 2 lam lse) /
    sum(E)``, ``t = (1 - eps) r`` and ``u = eps r / V``, is never written out: ``a`` scales the
    rows of ``E W`` and of ``h`` (N x D, not N x V), the target term is an indexed update of
    ``D``-vectors, and the label-smoothing term is one rank-1 update at the end. That leaves two
    reads and one in-place write of each logit chunk besides its GEMMs.
    """
    acc = w.dtype
    n, d = h.shape
    v = w.shape[0]
    c = max(1, min(cfg.chunk_size, n))
    flat = torch.empty(v * c, dtype=acc, device=h.device)  # a (V, k) view per chunk of k rows
    tanh_flat = torch.empty_like(flat) if cfg.softcap is not None else None
    loss = torch.empty(n, dtype=acc, device=h.device)
    lse = torch.empty(n, dtype=acc, device=h.device)
    dh = torch.empty((n, d), dtype=acc, device=h.device) if need[0] else None
    dw = torch.zeros((v, d), dtype=acc, device=h.device) if need[1] else None
    db = torch.zeros(v, dtype=acc, device=h.device) if need[2] else None
    floor = _exp_floor(acc, v, min_scale)
    ls = cfg.label_smoothing
    w_colsum = w.sum(0) if dh is not None and ls > 0.0 and cfg.softcap is None else None
    rh_sum = torch.zeros(d, dtype=acc, device=h.device)  # sum_i r_i h_i, for the eps term of dW
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        zt = flat[: v * (e - s)].view(v, e - s)
        if b is None:
            torch.mm(w, h_c.t(), out=zt)
        else:
            torch.addmm(b[:, None], w, h_c.t(), out=zt)
        t_c = None
        if cfg.softcap is not None and tanh_flat is not None:
            t_c = tanh_flat[: v * (e - s)].view(v, e - s)
            _cap_(zt, cfg.softcap, t_c)
        y_c, r_c = y[s:e], r[s:e]
        zy = zt.gather(0, y_c[None, :]).squeeze(0)
        zsum = zt.sum(0) if ls > 0.0 else None
        # one global min/max (a per-column aminmax over dim 0 is ~18x slower on CPU)
        lo, hi = torch.aminmax(zt)
        if bool((hi <= _DIRECT_EXP_RANGE) & (lo >= -_DIRECT_EXP_RANGE)):
            m = torch.zeros(e - s, dtype=acc, device=h.device)
            zt.exp_()
        else:
            m = zt.amax(0)
            zt.sub_(m[None, :])
            if bool(hi - lo > floor):  # clamp: no subnormal exp (module doc)
                zt.clamp_(min=-floor)
            zt.exp_()
        ssum = zt.sum(0)
        lse_c = ssum.log() + m
        lse[s:e] = lse_c
        loss[s:e] = _row_loss(lse_c, zy, zsum, valid[s:e], cfg, v)
        if t_c is not None:  # the tanh derivative is elementwise: form G (as G^T) in place
            _grad_from_probs_(zt.t(), r_c, lse_c, y_c, cfg, v, t_c.t(), prob_scale=1.0 / ssum)
            if dh is not None:
                torch.mm(zt.t(), w, out=dh[s:e])
            if dw is not None:
                dw.addmm_(zt, h_c)
            if db is not None:
                db.add_(zt.sum(1))
            continue
        a = r_c * (1.0 + 2.0 * cfg.z_loss * lse_c) if cfg.z_loss > 0.0 else r_c
        a = a / ssum
        t = (1.0 - ls) * r_c
        if dh is not None:
            dh_c = dh[s:e]
            torch.mm(zt.t(), w, out=dh_c)
            dh_c.mul_(a[:, None])
            dh_c.sub_(w.index_select(0, y_c) * t[:, None])
            if w_colsum is not None:
                dh_c.sub_((ls / v) * r_c[:, None] * w_colsum)
        if dw is not None:
            dw.addmm_(zt, h_c * a[:, None])
            # index_put_(accumulate=True): ~12x faster than index_add_ over dim 0 on CPU
            dw.index_put_((y_c,), h_c * (-t)[:, None], accumulate=True)
            if ls > 0.0:
                rh_sum.add_(r_c @ h_c)
        if db is not None:
            db.addmv_(zt, a)
            db.index_put_((y_c,), -t, accumulate=True)
            if ls > 0.0:
                db.sub_((ls / v) * r_c.sum())
    if dw is not None and ls > 0.0 and cfg.softcap is None:
        dw.sub_((ls / v) * rh_sum)
    return loss, lse, dh, dw, db


def _lse_forward(
    h: Tensor, w: Tensor, b: Tensor | None, y: Tensor, valid: Tensor, cfg: _Config
) -> tuple[Tensor, Tensor]:
    """Loss rows and lse with an online log-sum-exp over (token chunk x vocab tile) blocks."""
    acc = w.dtype
    n = h.shape[0]
    v = w.shape[0]
    c = max(1, min(cfg.chunk_size, n))
    vb = max(1, min(cfg.vocab_chunk_size, v))
    buf = torch.empty((c, vb), dtype=acc, device=h.device)
    tanh_buf = torch.empty_like(buf) if cfg.softcap is not None else None
    loss = torch.empty(n, dtype=acc, device=h.device)
    lse = torch.empty(n, dtype=acc, device=h.device)
    floor = _exp_floor(acc, v, 1.0)
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        m_run = torch.full((e - s,), -math.inf, dtype=acc, device=h.device)
        s_run = torch.zeros(e - s, dtype=acc, device=h.device)
        zsum = torch.zeros(e - s, dtype=acc, device=h.device)
        for vs in range(0, v, vb):
            ve = min(vs + vb, v)
            z = buf[: e - s, : ve - vs]
            _logits(h_c, w[vs:ve], None if b is None else b[vs:ve], z)
            if cfg.softcap is not None and tanh_buf is not None:
                _cap_(z, cfg.softcap, tanh_buf[: e - s, : ve - vs])
            if cfg.label_smoothing > 0.0:
                zsum += z.sum(1)
            m_new = torch.maximum(m_run, z.amax(1))
            z.sub_(m_new[:, None]).clamp_(min=-floor).exp_()
            s_run = s_run * torch.exp(m_run - m_new) + z.sum(1)
            m_run = m_new
        lse_c = s_run.log() + m_run
        zy = _target_logit(h_c, w, b, y[s:e], cfg.softcap)
        lse[s:e] = lse_c
        loss[s:e] = _row_loss(lse_c, zy, zsum, valid[s:e], cfg, v)
    return loss, lse


def _recompute_backward(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    lse: Tensor,
    r: Tensor,
    cfg: _Config,
    need: tuple[bool, bool, bool],
    vocab_total: int | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for per-row upstream factors r, recomputing logits block by block.

    ``w`` may be a vocabulary shard (``vocab_total`` = full V, ``y`` shifted to the shard);
    targets outside ``[0, w.shape[0])`` then simply never hit a column here.
    """
    acc = w.dtype
    n, d = h.shape
    v = w.shape[0]
    v_all = vocab_total or v
    c = max(1, min(cfg.chunk_size, n))
    vb = max(1, min(cfg.vocab_chunk_size, v))
    buf = torch.empty((c, vb), dtype=acc, device=h.device)
    tanh_buf = torch.empty_like(buf) if cfg.softcap is not None else None
    dh = torch.zeros((n, d), dtype=acc, device=h.device) if need[0] else None
    dw = torch.zeros((v, d), dtype=acc, device=h.device) if need[1] else None
    db = torch.zeros(v, dtype=acc, device=h.device) if need[2] else None
    # p = exp(z - lse) <= 1 is multiplied by |r_i|: clamp per row so that the product stays normal
    log_tiny = math.log(torch.finfo(acc).tiny)
    top = -log_tiny - 7.0
    floor = (top + torch.log(r.abs().clamp_min(1e-300))).clamp(40.0, top)
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        lse_c, r_c, y_c = lse[s:e], r[s:e], y[s:e]
        lower = (lse_c - floor[s:e])[:, None]
        for vs in range(0, v, vb):
            ve = min(vs + vb, v)
            z = buf[: e - s, : ve - vs]
            _logits(h_c, w[vs:ve], None if b is None else b[vs:ve], z)
            t_c = None
            if cfg.softcap is not None and tanh_buf is not None:
                t_c = tanh_buf[: e - s, : ve - vs]
                _cap_(z, cfg.softcap, t_c)
            torch.maximum(z, lower, out=z)
            z.sub_(lse_c[:, None]).exp_()
            inside = (y_c >= vs) & (y_c < ve)
            y_local = torch.where(inside, y_c - vs, torch.full_like(y_c, -1))
            _grad_from_probs_(z, r_c, lse_c, y_local, cfg, v_all, t_c)
            if dh is not None:
                dh[s:e].addmm_(z, w[vs:ve])
            if dw is not None:
                dw[vs:ve].addmm_(z.t(), h_c)
            if db is not None:
                db[vs:ve] += z.sum(0)
    return dh, dw, db


class _LinearCrossEntropyFn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        cfg: _Config,
        need: tuple[bool, bool, bool],
    ) -> Tensor:
        acc = _acc_dtype(hidden, weight, bias)
        n = hidden.shape[0]
        valid = target != cfg.ignore_index
        y = torch.where(valid, target, torch.zeros_like(target)).long()
        n_valid = valid.sum()
        w = weight.to(acc)  # no copy for float32 weights; one up-cast copy for bf16/fp16
        b = None if bias is None else bias.to(acc)
        ctx.cfg = cfg
        ctx.need = need
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.precomputed = cfg.reduction != "none" and any(need)
        if ctx.precomputed:
            denom = n_valid.clamp_min(1).to(acc)
            scale = 1.0 / denom if cfg.reduction == "mean" else torch.ones((), dtype=acc)
            r = valid.to(acc) * scale
            min_scale = 1.0 / max(n, 1) if cfg.reduction == "mean" else 1.0
            loss, _, dh, dw, db = _fused_forward(hidden, w, b, y, valid, r, min_scale, cfg, need)
            # Kept as attributes (not saved tensors): backward hands them to autograd and drops
            # its own reference, so AccumulateGrad can adopt the float32 buffers without a copy.
            ctx.grads = [dh, dw, db]
        else:
            loss, lse = _lse_forward(hidden, w, b, y, valid, cfg)
            if any(need):
                ctx.save_for_backward(hidden, weight, bias, y, valid, lse)
        # Ignored tokens carry loss 0; the library's one reduction divides by the valid count.
        return reduce_loss(loss, cfg.reduction, mask=valid)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        cfg: _Config = ctx.cfg
        h_dt, w_dt, b_dt = ctx.dtypes
        if ctx.precomputed:
            if ctx.grads is None:
                raise RuntimeError(
                    f"{_FN}: gradients for reduction={cfg.reduction!r} are computed in the "
                    "forward pass and handed out once; backward through the same graph twice "
                    "(retain_graph=True) needs allow_retain_graph=True (keeps a copy of them)."
                )
            if cfg.allow_retain_graph:  # keep the buffers; hand out scaled copies
                return (
                    *(
                        None if g is None else (g * grad_out.to(g.dtype)).to(dt)
                        for g, dt in zip(ctx.grads, (h_dt, w_dt, b_dt), strict=True)
                    ),
                    None,
                    None,
                    None,
                )
            grads, ctx.grads = ctx.grads, None
            out: list[Tensor | None] = []
            for g, dt in zip(grads, (h_dt, w_dt, b_dt), strict=True):
                if g is None:
                    out.append(None)
                    continue
                g.mul_(grad_out.to(g.dtype))  # in place: our own buffer, no second V x D copy
                out.append(g if g.dtype == dt else g.to(dt))
                del g
            del grads
            return out[0], out[1], out[2], None, None, None
        hidden, weight, bias, y, valid, lse = ctx.saved_tensors
        acc = lse.dtype
        w = weight.to(acc)
        b = None if bias is None else bias.to(acc)
        r = valid.to(acc) * grad_out.to(acc)
        dh, dw, db = _recompute_backward(hidden, w, b, y, lse, r, cfg, ctx.need)
        return (
            None if dh is None else dh.to(h_dt),
            None if dw is None else dw.to(w_dt),
            None if db is None or b_dt is None else db.to(b_dt),
            None,
            None,
            None,
        )


def _flatten(hidden: Tensor, target: Tensor, shift: int) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(..., D) hidden and (...) target -> (N, D), (N); applies the next-token shift."""
    if shift:
        if hidden.dim() < 2 or target.dim() < 1:
            raise ValueError(
                f"{_FN}: shift={shift} needs hidden (..., T, D) and target (..., T), got "
                f"hidden {tuple(hidden.shape)} and target {tuple(target.shape)}"
            )
        hidden = hidden[..., :-shift, :]
        target = target[..., shift:]
    batch_shape = tuple(target.shape)
    return hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1), batch_shape


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    vocab_chunk_size: int | None = None,
    shift: int = 0,
    impl: str = "torch",
    validate: bool = True,
    allow_retain_graph: bool = False,
) -> Tensor:
    r"""Cross-entropy of ``hidden @ weight.T + bias`` without materialising the logits.

    Equals ``F.cross_entropy(z, target, ignore_index=..., label_smoothing=..., reduction=...)``
    plus ``z_loss * logsumexp(z)**2`` per valid token (PaLM's z-loss, reduced like the CE),
    where ``z = softcap * tanh((hidden @ weight.T + bias) / softcap)`` if ``softcap`` is set.
    See the module docstring for the math and the algorithm.

    Args:
        hidden: ``(N, D)`` or ``(..., D)`` (e.g. ``(B, T, D)``), any float dtype.
        weight: ``(V, D)`` classifier / un-embedding matrix.
        target: ``(N,)`` or ``(...)`` int class indices; ``ignore_index`` rows are skipped.
        bias: optional ``(V,)``.
        label_smoothing: PyTorch convention (mass ``eps / V`` on every class).
        z_loss: weight of ``logsumexp(z)**2`` (PaLM; not the spherical Z-loss, see
            :mod:`losslab.heads.spherical`).
        softcap: Gemma-2 tanh soft-capping of the logits.
        reduction: ``"mean"`` (over valid tokens; all-ignored gives 0 with zero gradients),
            ``"sum"`` or ``"none"`` (shape of ``target`` after ``shift``, 0 at ignored rows).
        chunk_size: token rows per chunk (default: :func:`auto_chunk_size`).
        vocab_chunk_size: vocabulary tile for the log-sum-exp-only forward and the
            recomputing backward of ``reduction="none"`` (default: whole vocabulary for
            V <= 65536, else 32768).
        shift: next-token prediction: ``hidden[..., :-shift, :]`` predicts
            ``target[..., shift:]``.
        impl: ``"torch"`` (this file, CPU and GPU), or an optional back-end
            (``"torch_native"``, ``"cce"``, ``"liger"``), see :mod:`losslab.heads._backends`.
        validate: check the target range (host sync); skipped under ``torch.compile``.
        allow_retain_graph: for "mean"/"sum" the gradients are made in the forward pass and
            handed to autograd once (no copy); set True to backpropagate through the same graph
            several times (``retain_graph=True``, ``gradcheck``) at the cost of a copy.

    Returns:
        float32 loss (float64 for float64 inputs): scalar, or per token for ``"none"``.
    """
    check_float(_FN, "hidden", hidden)
    check_float(_FN, "weight", weight)
    check_target(_FN, target)
    check_reduction(_FN, reduction)
    if bias is not None:
        check_float(_FN, "bias", bias)
    if weight.dim() != 2:
        raise ValueError(f"{_FN}: weight must be 2-D (V, D), got shape {tuple(weight.shape)}")
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{_FN}: hidden has D={hidden.shape[-1] if hidden.dim() else None} features but "
            f"weight has D={weight.shape[1]} (hidden {tuple(hidden.shape)}, weight "
            f"{tuple(weight.shape)})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"{_FN}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    if not isinstance(shift, int) or shift < 0:
        raise ValueError(f"{_FN}: shift must be a non-negative int, got {shift!r}")
    if hidden.shape[:-1] != target.shape:
        raise ValueError(
            f"{_FN}: target shape {tuple(target.shape)} must equal hidden shape without D "
            f"{tuple(hidden.shape[:-1])}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{_FN}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if z_loss < 0.0:
        raise ValueError(f"{_FN}: z_loss must be >= 0, got {z_loss}")
    if softcap is not None and not softcap > 0.0:
        raise ValueError(f"{_FN}: softcap must be > 0 or None, got {softcap}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"{_FN}: chunk_size must be >= 1, got {chunk_size}")
    if vocab_chunk_size is not None and vocab_chunk_size < 1:
        raise ValueError(f"{_FN}: vocab_chunk_size must be >= 1, got {vocab_chunk_size}")
    devices = {t.device for t in (hidden, weight, target, bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(
            f"{_FN}: all tensors must be on one device, got {sorted(map(str, devices))}"
        )

    h2, y1, batch_shape = _flatten(hidden, target, shift)
    v = weight.shape[0]
    if validate:
        check_target_range(_FN, y1, v, ignore_index)
    if impl != "torch":
        from ._backends import run_backend

        return run_backend(
            impl,
            h2,
            weight,
            y1,
            bias=bias,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            reduction=reduction,
            batch_shape=batch_shape,
        )
    n, d = h2.shape
    acc = _acc_dtype(hidden, weight, bias)
    cfg = _Config(
        ignore_index=int(ignore_index),
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        reduction=reduction,
        chunk_size=int(chunk_size or _default_chunk(n, d, v, acc, softcap)),
        vocab_chunk_size=int(vocab_chunk_size or (v if v <= 65536 else 32768)),
        allow_retain_graph=bool(allow_retain_graph),
    )
    grad_on = torch.is_grad_enabled()
    need = (
        grad_on and h2.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    out = _LinearCrossEntropyFn.apply(h2, weight, bias, y1, cfg, need)
    if reduction == "none":
        out = out.reshape(batch_shape)
    return out


class LinearCrossEntropy(nn.Module):
    """Module form of :func:`linear_cross_entropy`; the options go to the constructor.

    ``forward(hidden, weight, target, bias=None)``: the classifier weight is passed in (it is
    usually the model's un-embedding or a tied embedding), like ``F.linear_cross_entropy``.
    """

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        reduction: str = "mean",
        chunk_size: int | None = None,
        vocab_chunk_size: int | None = None,
        shift: int = 0,
        impl: str = "torch",
        validate: bool = True,
        allow_retain_graph: bool = False,
    ) -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.vocab_chunk_size = vocab_chunk_size
        self.shift = shift
        self.impl = impl
        self.validate = validate
        self.allow_retain_graph = allow_retain_graph

    def get_config(self) -> dict[str, Any]:
        return {
            "ignore_index": self.ignore_index,
            "label_smoothing": self.label_smoothing,
            "z_loss": self.z_loss,
            "softcap": self.softcap,
            "reduction": self.reduction,
            "chunk_size": self.chunk_size,
            "vocab_chunk_size": self.vocab_chunk_size,
            "shift": self.shift,
            "impl": self.impl,
            "validate": self.validate,
            "allow_retain_graph": self.allow_retain_graph,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LinearCrossEntropy:
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def forward(
        self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        return linear_cross_entropy(hidden, weight, target, bias=bias, **self.get_config())


def _config_dict(cfg: _Config) -> dict[str, Any]:  # for debugging / repr of saved configs
    return asdict(cfg)
