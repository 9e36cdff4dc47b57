"""Exact all-gather across ranks, with gradients through the gathered copies.

Batch-coupled losses (pairs, contrastive denominators, cross-correlations) compute on the
*global* batch when called with ``gather="all"``. The convention, which makes distributed
training exact:

* every rank gathers the embeddings of all ranks (rank-major order) with
  :func:`all_gather_with_grad` and evaluates the loss of the whole global batch, so the
  loss value on each rank equals the single-process loss on the concatenated batch;
* backward sums, over ranks, the gradient that each rank's loss sends to every gathered
  copy and keeps the slice of the local rank: each rank's local embeddings receive
  ``world_size`` times the single-process gradient (every rank back-propagates the whole
  loss);
* data-parallel training averages parameter gradients over ranks (what
  ``DistributedDataParallel`` does), which divides that factor out: the averaged
  gradient equals the single-process gradient exactly, for any reduction, masks and
  unequal local batch sizes.

Labels, sample weights and masks are gathered without gradient (:func:`all_gather_nograd`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from losslab._validate import fail


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def require_process_group(where: str) -> None:
    """Raise in the library's format unless a default process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        fail(
            where,
            "gather",
            '"none" without an initialised torch.distributed process group '
            '("all" gathers the batch of every rank)',
            "'all'",
        )


def _sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """All ranks' ``x`` concatenated along dim 0; unequal sizes are padded for the
    collective and trimmed after it."""
    top = max(sizes)
    pad = x.new_zeros((top - x.shape[0], *x.shape[1:]))
    padded = torch.cat([x, pad]) if top > x.shape[0] else x.contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        sizes = _sizes(x.shape[0], x.device)
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Every rank's loss depends on every copy: the local slice collects all of them.
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.start : ctx.stop]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """``x`` of every rank concatenated along dim 0 (rank-major), differentiable.

    Backward all-reduces (sums) the incoming gradient and returns the local rank's slice.
    Local batches may differ in size. Without a process group (or with one rank) this is
    the identity.
    """
    if world()[1] == 1:
        return x
    return _AllGather.apply(x)  # type: ignore[no-any-return]


def all_gather_nograd(x: Tensor) -> Tensor:
    """``x`` of every rank concatenated along dim 0 (rank-major), as a constant."""
    if world()[1] == 1:
        return x
    with torch.no_grad():
        return _gather_padded(x.detach(), _sizes(x.shape[0], x.device))


def rank_offset(n: int, device: torch.device) -> int:
    """Position of this rank's first element in the gathered batch."""
    rank, size = world()
    if size == 1:
        return 0
    return sum(_sizes(n, device)[:rank])


__all__ = [
    "all_gather_nograd",
    "all_gather_with_grad",
    "rank_offset",
    "require_process_group",
    "world",
]
