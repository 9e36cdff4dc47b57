r"""Vocabulary-parallel fused linear cross-entropy for tensor-parallel ranks.

Each rank of a process group holds the same hidden states :math:`h` (N x D) and one slice
:math:`W_r` (rows ``[vocab_start, vocab_start + V_r)``) of the classifier. Per token chunk:

1. local logits :math:`z_r = h W_r^\top (+ b_r)` (float32), soft-capped if asked;
2. ``all_reduce(MAX)`` of the local row maxima gives the global row max :math:`m`;
3. one fused ``all_reduce(SUM)`` of :math:`[\sum_k e^{z_{rk} - m},\ z_{i y_i}` (0 on ranks
   that do not own the target), :math:`\sum_k z_{rk}]` gives the global sum-exp, target logit
   and logit sum, hence :math:`\ell = m + \log\sum` and the loss, identical on every rank;
4. the logit gradient of the local columns, :math:`G_r`, gives the local
   :math:`\nabla W_r = G_r^\top h` and a partial :math:`G_r W_r` that is summed over ranks
   (one ``all_reduce(SUM)`` of :math:`\nabla h`, N x D, per call).

This is Megatron-LM's vocab-parallel cross-entropy (`NVIDIA/Megatron-LM`,
``megatron/core/tensor_parallel/cross_entropy.py``: all-reduce of row max, target logit and
sum-exp) fused with the token-chunked head of :mod:`losslab.heads.linear_ce`, so no rank holds
more than one chunk of its logits. Unlike Megatron, label smoothing uses PyTorch's convention
(mass :math:`\epsilon / V` on every class of the *full* vocabulary, via the all-reduced logit
sum), so the result equals the single-process :func:`~losslab.heads.linear_cross_entropy`.

Gradient convention: every rank returns the same (full) loss; ``loss.backward()`` on every rank
gives each rank the full :math:`\nabla h` and the gradient of its own weight slice, exactly the
single-process values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from losslab._reduce import reduce_loss

from ._checks import check_float, check_reduction, check_target, check_target_range
from .linear_ce import (
    _acc_dtype,
    _cap_,
    _Config,
    _default_chunk,
    _exp_floor,
    _flatten,
    _grad_from_probs_,
    _logits,
    _recompute_backward,
    _row_loss,
)

__all__ = ["vocab_parallel_linear_cross_entropy", "vocab_slice"]

_FN = "vocab_parallel_linear_cross_entropy"


def _all_reduce(t: Tensor, op: Any, group: Any) -> Tensor:
    dist.all_reduce(t, op=op, group=group)
    return t


class _VocabParallelFn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        cfg: _Config,
        need: tuple[bool, bool, bool],
        vocab_start: int,
        vocab_total: int,
        group: Any,
    ) -> Tensor:
        acc = _acc_dtype(hidden, weight, bias)
        n, d = hidden.shape
        v_loc = weight.shape[0]
        valid = target != cfg.ignore_index
        y_glob = torch.where(valid, target, torch.zeros_like(target)).long()
        y_loc = y_glob - vocab_start  # outside [0, v_loc): target owned by another rank
        owned = (y_loc >= 0) & (y_loc < v_loc)
        n_valid = valid.sum()
        w = weight.to(acc)
        b = None if bias is None else bias.to(acc)
        precompute = cfg.reduction != "none" and any(need)
        if precompute:
            scale = 1.0 / n_valid.clamp_min(1).to(acc) if cfg.reduction == "mean" else 1.0
            r = valid.to(acc) * scale
        floor = _exp_floor(acc, vocab_total, 1.0 / max(n, 1) if cfg.reduction == "mean" else 1.0)
        c = max(1, min(cfg.chunk_size, n))
        buf = torch.empty((c, v_loc), dtype=acc, device=hidden.device)
        tanh_buf = torch.empty_like(buf) if cfg.softcap is not None else None
        loss = torch.empty(n, dtype=acc, device=hidden.device)
        lse = torch.empty(n, dtype=acc, device=hidden.device)
        dh = (
            torch.empty((n, d), dtype=acc, device=hidden.device) if precompute and need[0] else None
        )
        dw = (
            torch.zeros((v_loc, d), dtype=acc, device=hidden.device)
            if precompute and need[1]
            else None
        )
        db = torch.zeros(v_loc, dtype=acc, device=hidden.device) if precompute and need[2] else None
        for s in range(0, n, c):
            e = min(s + c, n)
            h_c = hidden[s:e].to(acc)
            z = buf[: e - s]
            _logits(h_c, w, b, z)
            t_c = None
            if tanh_buf is not None and cfg.softcap is not None:
                t_c = tanh_buf[: e - s]
                _cap_(z, cfg.softcap, t_c)
            own_c = owned[s:e]
            idx = torch.where(own_c, y_loc[s:e], torch.zeros_like(y_loc[s:e]))
            zy = torch.where(
                own_c, z.gather(1, idx[:, None]).squeeze(1), torch.zeros_like(lse[s:e])
            )
            zsum = z.sum(1) if cfg.label_smoothing > 0.0 else torch.zeros_like(zy)
            m = _all_reduce(z.amax(1), dist.ReduceOp.MAX, group)
            z.sub_(m[:, None]).clamp_(min=-floor).exp_()  # clamp: no subnormals (linear_ce doc)
            stats = torch.stack([z.sum(1), zy, zsum])
            _all_reduce(stats, dist.ReduceOp.SUM, group)  # one fused reduction (Megatron)
            ssum, zy, zsum = stats[0], stats[1], stats[2]
            lse_c = ssum.log() + m
            lse[s:e] = lse_c
            loss[s:e] = _row_loss(lse_c, zy, zsum, valid[s:e], cfg, vocab_total)
            if precompute:
                y_local = torch.where(own_c, idx, torch.full_like(idx, -1))
                _grad_from_probs_(
                    z, r[s:e], lse_c, y_local, cfg, vocab_total, t_c, prob_scale=1.0 / ssum
                )
                if dh is not None:
                    torch.mm(z, w, out=dh[s:e])
                if dw is not None:
                    dw.addmm_(z.t(), h_c)
                if db is not None:
                    db.add_(z.sum(0))
        ctx.cfg, ctx.need, ctx.group, ctx.vocab_total = cfg, need, group, vocab_total
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.precomputed = precompute
        if precompute:
            if dh is not None:
                _all_reduce(dh, dist.ReduceOp.SUM, group)  # sum of the ranks' partial G_r W_r
            ctx.grads = [dh, dw, db]
        elif any(need):
            ctx.save_for_backward(hidden, weight, bias, y_loc, valid, lse)
        # Ignored tokens carry loss 0; the library's one reduction divides by the valid count.
        return reduce_loss(loss, cfg.reduction, mask=valid)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h_dt, w_dt, b_dt = ctx.dtypes
        tail = (None,) * 6
        if ctx.precomputed:
            if ctx.grads is None:
                raise RuntimeError(f"{_FN}: backward through the same graph twice is not supported")
            grads, ctx.grads = ctx.grads, None
            out: list[Tensor | None] = []
            for g, dt in zip(grads, (h_dt, w_dt, b_dt), strict=True):
                if g is None:
                    out.append(None)
                    continue
                g.mul_(grad_out.to(g.dtype))
                out.append(g if g.dtype == dt else g.to(dt))
            return (*out, *tail)
        hidden, weight, bias, y_loc, valid, lse = ctx.saved_tensors
        acc = lse.dtype
        w = weight.to(acc)
        b = None if bias is None else bias.to(acc)
        r = valid.to(acc) * grad_out.to(acc)
        dh, dw, db = _recompute_backward(
            hidden, w, b, y_loc, lse, r, ctx.cfg, ctx.need, vocab_total=ctx.vocab_total
        )
        if dh is not None:
            _all_reduce(dh, dist.ReduceOp.SUM, ctx.group)
        return (
            None if dh is None else dh.to(h_dt),
            None if dw is None else dw.to(w_dt),
            None if db is None or b_dt is None else db.to(b_dt),
            *tail,
        )


def vocab_parallel_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    vocab_start: int,
    vocab_size: int,
    group: Any = None,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    shift: int = 0,
    validate: bool = True,
) -> Tensor:
    """:func:`~losslab.heads.linear_cross_entropy` with the vocabulary split over ranks.

    Args:
        hidden: ``(N, D)`` or ``(..., D)``, the same on every rank of ``group``.
        weight: this rank's ``(V_r, D)`` slice: global classes ``vocab_start ... + V_r - 1``.
        target: global class indices, the same on every rank.
        vocab_start: first global class of this rank's slice.
        vocab_size: the full vocabulary size V (sum of the slices).
        group: ``torch.distributed`` process group (default: the world).
        bias: this rank's ``(V_r,)`` bias slice.
        Other options as in :func:`~losslab.heads.linear_cross_entropy` (``reduction="none"``
        recomputes in backward).

    Returns:
        The full loss, identical on every rank.
    """
    check_float(_FN, "hidden", hidden)
    check_float(_FN, "weight", weight)
    check_target(_FN, target)
    check_reduction(_FN, reduction)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{_FN}: torch.distributed must be initialised (init_process_group)")
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{_FN}: hidden has D={hidden.shape[-1]} features but weight slice has shape "
            f"{tuple(weight.shape)} (expected (V_r, {hidden.shape[-1]}))"
        )
    if not 0 <= vocab_start <= vocab_start + weight.shape[0] <= vocab_size:
        raise ValueError(
            f"{_FN}: slice [{vocab_start}, {vocab_start + weight.shape[0]}) is not inside the "
            f"vocabulary [0, {vocab_size})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"{_FN}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    if hidden.shape[:-1] != target.shape:
        raise ValueError(
            f"{_FN}: target shape {tuple(target.shape)} must equal hidden shape without D "
            f"{tuple(hidden.shape[:-1])}"
        )
    h2, y1, batch_shape = _flatten(hidden, target, shift)
    if validate:
        check_target_range(_FN, y1, vocab_size, ignore_index, rows="classes in total")
    n, d = h2.shape
    acc = _acc_dtype(hidden, weight, bias)
    cfg = _Config(
        ignore_index=int(ignore_index),
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        reduction=reduction,
        chunk_size=int(chunk_size or _default_chunk(n, d, weight.shape[0], acc, softcap)),
        vocab_chunk_size=int(weight.shape[0]),
    )
    grad_on = torch.is_grad_enabled()
    need = (
        grad_on and h2.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    out = _VocabParallelFn.apply(
        h2, weight, bias, y1, cfg, need, int(vocab_start), int(vocab_size), group
    )
    if reduction == "none":
        out = out.reshape(batch_shape)
    return out


def vocab_slice(vocab_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s slice when V is split as evenly as possible."""
    per = math.ceil(vocab_size / world_size)
    start = min(rank * per, vocab_size)
    return start, min(start + per, vocab_size)
