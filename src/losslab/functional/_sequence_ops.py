"""Memory-light building blocks of the sequence losses.

A language model's logits ``(B, T, V)`` are the largest tensor of a training step. The
losses of :mod:`losslab.functional.sequence` need only a few numbers per position from
them (log-probabilities at some token ids, distances under a cost embedding), so the
autograd functions here read the logits in row chunks, keep per-position statistics
(the log-partition, ``O(B T)``) instead of ``(B, T, V)`` activations, and recompute the
softmax chunk by chunk in the backward pass. The only ``(B, T, V)`` tensor they allocate
is the returned gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab.functional._fused import log_softmax_at

#: Elements of one ``(rows, V)`` chunk: 2**25 floats (128 MiB in float32). Smaller chunks
#: save little next to the gradient, and EMO's products need a few hundred rows to run at
#: full matrix-multiply speed.
CHUNK_ELEMENTS = 1 << 25


def _rows(v: int, d: int = 0) -> int:
    return max(1, CHUNK_ELEMENTS // max(v + d, 1))


def _log_partition(z: Tensor, rows: int) -> Tensor:
    """``logsumexp`` over the last axis of ``z`` ``(M, V)``, chunk by chunk; rows of only
    ``-inf`` (masked padding) get 0 so that ``z - lse`` stays ``-inf``, never NaN."""
    lse = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
    for s in range(0, z.shape[0], rows):
        lse[s : s + rows] = torch.logsumexp(z[s : s + rows], dim=1)
    return torch.where(torch.isfinite(lse), lse, 0.0)


def gathered_log_softmax(z: Tensor, idx: Tensor) -> Tensor:
    """``log_softmax(z, -1).gather(-1, idx)`` without a ``(..., V)`` activation.

    ``z`` is ``(B, T, V)``, ``idx`` int64 ``(B, T, K)`` (an expanded view is fine);
    returns ``(B, T, K)``. Memory: ``O(B T K)`` plus the gradient of ``z`` in backward
    (:class:`losslab.functional._fused.LogSoftmaxAt`).
    """
    v, k = z.shape[-1], idx.shape[-1]
    return log_softmax_at(z.reshape(-1, v), idx.reshape(-1, k)).reshape(idx.shape)


class _EmoTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, y: Tensor, emb: Tensor | None) -> tuple[Tensor, Tensor]:
        v = z.shape[-1]
        zf = z.reshape(-1, v)
        yf = y.reshape(-1)
        rows = _rows(v, 0 if emb is None else v)
        lse = _log_partition(zf, rows)
        nll = lse - zf.gather(1, yf[:, None]).squeeze(1)
        demd = torch.empty_like(lse)
        for s in range(0, zf.shape[0], rows):
            e = slice(s, s + rows)
            p = torch.exp(zf[e] - lse[e, None])
            demd[e] = (p * _cost_rows(emb, yf[e], p)).sum(dim=1)
        ctx.save_for_backward(z, y, lse, demd, *(() if emb is None else (emb,)))
        return nll.reshape(y.shape), demd.reshape(y.shape)

    @staticmethod
    def backward(ctx: Any, g_nll: Tensor, g_demd: Tensor) -> tuple[Tensor, None, None]:
        z, y, lse, demd, *rest = ctx.saved_tensors
        emb = rest[0] if rest else None
        v = z.shape[-1]
        zf = z.reshape(-1, v)
        yf = y.reshape(-1)
        gn = g_nll.reshape(-1, 1)
        gd = g_demd.reshape(-1, 1)
        grad = torch.empty_like(zf)
        rows = _rows(v, 0 if emb is None else v)
        for s in range(0, zf.shape[0], rows):
            e = slice(s, s + rows)
            p = torch.exp(zf[e] - lse[e, None])
            # d nll / dz = p - onehot(y); d demd / dz_j = p_j (cost_j - demd)
            cost = _cost_rows(emb, yf[e], p).sub_(demd[e, None]).mul_(gd[e])
            grad[e] = cost.add_(gn[e]).mul_(p)
        grad.scatter_add_(1, yf[:, None], -gn)
        return grad.reshape(z.shape), None, None


def _cost_rows(emb: Tensor | None, y: Tensor, like: Tensor) -> Tensor:
    """Transport costs ``1 - cos(e_k, e_y)`` from the target of each row to every token
    ``k`` ``(rows, V)``; without an embedding, 1 between distinct tokens (0 at ``y``)."""
    if emb is None:
        return torch.ones_like(like).scatter_(1, y[:, None], 0.0)
    return torch.addmm(like.new_ones(()), emb[y], emb.t(), alpha=-1)


def emo_terms(z: Tensor, y: Tensor, emb: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-position ``(nll, demd)`` of logits ``z`` ``(B, T, V)`` at targets ``y`` ``(B, T)``.

    ``nll = -log softmax(z)_y``; ``demd = sum_k softmax(z)_k (1 - cos(e_k, e_y))`` with the
    rows of ``emb`` ``(V, D)`` already L2-normalised (``None``: one-hot embeddings, so
    ``demd = 1 - p_y``). Memory: ``O(B T)`` saved, chunks of ``(rows, V)`` and the
    gradient of ``z``; compute ``O(B T V D)``, one product per pass like an output layer.
    """
    if emb is not None:
        emb = emb.detach().to(z.dtype)
    nll, demd = _EmoTerms.apply(z, y, emb)
    return nll, demd
