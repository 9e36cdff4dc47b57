r"""Vocabulary-parallel fused linear cross-entropy for tensor-parallel ranks.

Each rank of a process group holds the same hidden states :math:`h` (N x D) and one slice
:math:`W_r` (rows ``[vocab_start, vocab_start + V_r)``) of the classifier, and runs the engine
of :mod:`losslab.heads._engine` on its slice with an all-reducing :class:`GroupReducer`. Per
token chunk:

1. local logits :math:`z_r = h W_r^\top (+ b_r)` (float32), soft-capped if asked;
2. ``all_reduce(MAX)`` of the chunk's logit bounds, so that every rank takes the same path, and
   (only when a logit leaves [-30, 30]) of the local row maxima, giving the global row max
   :math:`m`;
3. one fused ``all_reduce(SUM)`` of :math:`[\sum_k e^{z_{rk} - m},\ z_{i y_i}` (0 on ranks
   that do not own the target), :math:`\sum_k z_{rk}]` gives the global sum-exp, target logit
   and logit sum, hence :math:`\ell = m + \log\sum` and the loss, identical on every rank;
4. the logit gradient of the local columns, :math:`G_r`, gives the local
   :math:`\nabla W_r = G_r^\top h` and a partial :math:`G_r W_r` that is summed over ranks
   (one ``all_reduce(SUM)`` of :math:`\nabla h`, N x D, per call).

This is Megatron-LM's vocab-parallel cross-entropy (`NVIDIA/Megatron-LM`,
``megatron/core/tensor_parallel/cross_entropy.py``: all-reduce of row max, target logit and
sum-exp) fused with the token-chunked head, so no rank holds more than one chunk of its
logits. Unlike Megatron, label smoothing uses PyTorch's convention (mass :math:`\epsilon / V`
on every class of the *full* vocabulary, via the all-reduced logit sum), so the result equals
the single-process :func:`~losslab.heads.linear_cross_entropy`. ``reduction="none"`` combines
the ranks' online log-sum-exps (rescaled to the global max) and recomputes in backward.

With ``validate=True`` the finiteness and target checks are reduced over the group too, so a
NaN in one rank's weight slice makes every rank raise (instead of one rank raising while the
others wait in an all-reduce).

Gradient convention: every rank returns the same (full) loss; ``loss.backward()`` on every rank
gives each rank the full :math:`\nabla h` and the gradient of its own weight slice, exactly the
single-process values.
"""

from __future__ import annotations

import math
from typing import Any

import torch.distributed as dist
from torch import Tensor

from losslab._validate import Int, fail

from ._engine import HeadOptions, Reducer, run_head, takes_options

__all__ = ["GroupReducer", "vocab_parallel_linear_cross_entropy", "vocab_slice"]

_FN = "vocab_parallel_linear_cross_entropy"


class GroupReducer(Reducer):
    """The engine's cross-rank reductions as all-reduces over a process group."""

    sharded = True

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def max_(self, t: Tensor) -> Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def sum_(self, t: Tensor) -> Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t


@takes_options(omit=("impl",))
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
    vocab_chunk_size: int | None = None,
    shift: int = 0,
    validate: bool = True,
    allow_retain_graph: bool = False,
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
        Other options as in :func:`~losslab.heads.linear_cross_entropy` (no ``impl``: the
        optional back-ends are single-process).

    Returns:
        The full loss, identical on every rank.
    """
    opts = HeadOptions.from_arguments(_FN, locals())
    Int(0).check(_FN, "vocab_start", vocab_start)
    Int(1).check(_FN, "vocab_size", vocab_size)
    if not dist.is_available() or not dist.is_initialized():
        fail(
            _FN,
            "group",
            "an initialised torch.distributed process group (call init_process_group first)",
            "no initialised default process group",
            RuntimeError,
        )
    return run_head(
        _FN,
        hidden,
        weight,
        target,
        bias,
        opts,
        vocab_start=vocab_start,
        vocab_size=vocab_size,
        reducer=GroupReducer(group),
    )


def vocab_slice(vocab_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s slice when V is split as evenly as possible."""
    per = math.ceil(vocab_size / world_size)
    start = min(rank * per, vocab_size)
    return start, min(start + per, vocab_size)
