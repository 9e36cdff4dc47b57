"""Numerics shared by the embedding, contrastive and margin families: masked reductions
that stay finite (value and gradient) on empty rows, and pair masks of a batch."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab.kinds.embedding import EmbeddingInput

#: ``F.normalize``'s floor on the norm: a zero embedding stays zero instead of NaN.
NORM_EPS = 1e-12


def normalize(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x, dim=-1, eps=NORM_EPS)


def masked_logsumexp(x: Tensor, mask: Tensor, dim: int, *, add_one: bool = False) -> Tensor:
    """``log(sum_{mask} exp(x))`` along ``dim`` (``log(1 + sum ...)`` with ``add_one``).

    Masked entries never reach ``exp``, so an entry that would overflow there cannot put
    NaN into the gradient through ``where``. An empty row gives a finite value (0 with
    ``add_one``, ``log(tiny)`` without) and a zero gradient; callers mark such rows.
    """
    lowest = torch.finfo(x.dtype).min
    m = torch.where(mask, x, lowest).amax(dim=dim, keepdim=True).detach()
    m = torch.where(m == lowest, 0.0, m)
    if add_one:
        m = m.clamp_min(0.0)
    e = torch.where(mask, torch.exp(torch.where(mask, x, m) - m), 0.0)
    s = e.sum(dim=dim, keepdim=True)
    if add_one:
        s = s + torch.exp(-m)
    out = torch.log(s.clamp_min(torch.finfo(x.dtype).tiny)) + m
    return out.squeeze(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Mean of ``x`` over ``mask`` along ``dim`` (0 on empty rows) and the counts."""
    count = mask.sum(dim=dim)
    total = torch.where(mask, x, 0.0).sum(dim=dim)
    return total / count.clamp_min(1).to(x.dtype), count


def pair_masks(inp: EmbeddingInput) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flattened views ``E`` ``(M, D)`` with ``M = N V``, and bool ``(M, M)`` masks of the
    positive pairs (same label, not the same row) and negative pairs (different labels),
    both restricted to samples that are not ignored; plus the sample index of each row."""
    e, y, sample, keep = inp.flat()
    both = keep[:, None] & keep[None, :]
    same = y[:, None] == y[None, :]
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return e, same & ~eye & both, ~same & both, sample


def pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||^2`` by explicit differences: exact at coincident points, where the
    expanded ``|a|^2 + |b|^2 - 2 a.b`` form cancels catastrophically."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(dim=-1)


__all__ = [
    "NORM_EPS",
    "masked_logsumexp",
    "masked_mean",
    "normalize",
    "pair_masks",
    "pairwise_sq_dist",
]
