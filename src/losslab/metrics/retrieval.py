r"""Retrieval metrics of embeddings: Recall@k and MAP@R (Musgrave, Belongie and Lim, "A
Metric Learning Reality Check", ECCV 2020, arXiv:2003.08505).

Every row is a query against all the *other* rows (the reference set is the query set
with the query itself left out), ranked by the cosine similarity of the L2-normalised
embeddings. For a query of class $y$, $R$ is the number of other rows of class $y$.

* **Recall@k**: the fraction of queries with at least one row of their class among
  their $k$ nearest neighbours. Recall@1 is the leave-one-out 1-nearest-neighbour
  accuracy (pytorch-metric-learning's ``precision_at_1``).
* **MAP@R**: the mean over queries of
  $\frac{1}{R}\sum_{i=1}^{R} P(i)\,\mathrm{rel}(i)$, where $\mathrm{rel}(i)$ says whether
  the $i$-th neighbour is of the query's class and $P(i)$ is the precision of the first
  $i$ neighbours: 1 when the $R$ nearest neighbours are exactly the query's class,
  rewarding the order within them, unlike R-precision.

Queries whose class has no other row ($R = 0$) have nothing to retrieve and are left
out of every average, as in pytorch-metric-learning. Equal similarities are ranked by
row order (the lower row first), so the metrics are a function of the embeddings, the
labels and their order, never of the sorting algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from losslab._validate import check_finite, check_float_tensor, compute_dtype, describe, fail

__all__ = ["map_at_r", "recall_at_k", "retrieval_metrics"]

_WHERE = "retrieval_metrics"


def _inputs(where: str, embeddings: object, labels: object) -> tuple[Tensor, Tensor]:
    x = check_float_tensor(where, "embeddings", embeddings, "embeddings (N, D)")
    if x.dim() != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        fail(where, "embeddings", "shape (N, D) with N >= 2 rows", describe(x))
    check_finite(where, "embeddings", x)
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        fail(where, "labels", "an integer tensor (N,)", describe(labels), TypeError)
    if labels.dtype == torch.bool or labels.shape != (x.shape[0],):
        fail(where, "labels", f"an integer tensor of shape ({x.shape[0]},)", describe(labels))
    return x, labels.to(device=x.device, dtype=torch.int64)


def _ranked(s: Tensor, k: int) -> Tensor:
    """Column indices of the ``k`` largest entries of each row of ``s``, ordered by value
    (descending), equal values by column (ascending)."""
    vals, idx = torch.topk(s, k, dim=1)
    by_col = idx.argsort(dim=1)
    idx, vals = idx.gather(1, by_col), vals.gather(1, by_col)
    idx = idx.gather(1, vals.argsort(dim=1, descending=True, stable=True))
    # a tie at the k-th value may reach past the window: topk chose among the tied
    # columns arbitrarily, so those rows take the exact order of a full stable sort
    kth = vals.amin(dim=1, keepdim=True)
    spill = (s >= kth).sum(dim=1) > k
    if bool(spill.any()):
        rows = spill.nonzero().squeeze(1)
        full = torch.sort(s[rows], dim=1, descending=True, stable=True).indices[:, :k]
        idx[rows] = full
    return idx


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ks: Sequence[int] = (1, 4),
    include_map: bool = True,
    chunk_size: int = 1024,
) -> dict[str, float]:
    r"""Recall@k for every ``k`` in ``ks`` and MAP@R of ``embeddings`` ``(N, D)`` with
    integer ``labels`` ``(N,)``, each row a query against the other rows (cosine).

    Returns ``{"recall_at_1": ..., "recall_at_4": ..., "map_at_r": ...}`` (``map_at_r``
    only with ``include_map``), averaged over the queries that have at least one other
    row of their class. ``k`` larger than ``N - 1`` ranks every other row. Queries are
    processed ``chunk_size`` at a time (memory ``chunk_size x N``).

    Example:
        >>> import torch
        >>> from losslab.metrics import retrieval_metrics
        >>> e = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
        >>> retrieval_metrics(e, torch.tensor([0, 0, 1, 1]), ks=(1, 2))
        {'recall_at_1': 0.5, 'recall_at_2': 1.0, 'map_at_r': 0.5}
    """
    x, y = _inputs(_WHERE, embeddings, labels)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        fail(_WHERE, "ks", "a non-empty sequence of positive ints", describe(ks), TypeError)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            fail(_WHERE, "ks", "positive ints", describe(k))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        fail(_WHERE, "chunk_size", "a positive int", describe(chunk_size))
    n = x.shape[0]
    _, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    r = counts[inverse] - 1  # rows of the query's class other than itself
    counted = r > 0
    if not bool(counted.any()):
        fail(_WHERE, "labels", "at least two rows of some class", f"{n} distinct labels")
    u = torch.nn.functional.normalize(x.to(compute_dtype(x.dtype)), dim=1)
    ks = list(dict.fromkeys(ks))
    depth = min(n - 1, max(max(ks), int(r.max()) if include_map else 0))
    hits = {k: torch.zeros(n, dtype=torch.bool, device=x.device) for k in ks}
    ap = torch.zeros(n, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        q = torch.arange(start, min(start + chunk_size, n), device=x.device)
        s = u[q] @ u.T
        s[torch.arange(len(q), device=x.device), q] = -torch.inf
        same = y[_ranked(s, depth)] == y[q][:, None]
        for k in ks:
            hits[k][q] = same[:, :k].any(dim=1)
        if include_map:
            rq = r[q]
            pos = torch.arange(1, depth + 1, device=x.device)
            rel = same & (pos[None, :] <= rq[:, None])
            precision = rel.cumsum(dim=1).double() / pos
            ap[q] = (precision * rel).sum(dim=1) / rq.clamp_min(1)
    m = int(counted.sum())
    out = {f"recall_at_{k}": float(hits[k][counted].sum()) / m for k in ks}
    if include_map:
        out["map_at_r"] = float(ap[counted].sum()) / m
    return out


def recall_at_k(embeddings: Tensor, labels: Tensor, k: int = 1) -> float:
    """Recall@k (see :func:`retrieval_metrics`).

    Example:
        >>> import torch
        >>> from losslab.metrics import recall_at_k
        >>> e = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
        >>> recall_at_k(e, torch.tensor([0, 0, 1, 1]), k=2)
        1.0
    """
    return retrieval_metrics(embeddings, labels, ks=(k,), include_map=False)[f"recall_at_{k}"]


def map_at_r(embeddings: Tensor, labels: Tensor) -> float:
    """MAP@R (see :func:`retrieval_metrics`).

    Example:
        >>> import torch
        >>> from losslab.metrics import map_at_r
        >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> map_at_r(e, torch.tensor([0, 0, 1, 1]))
        1.0
    """
    return retrieval_metrics(embeddings, labels, ks=(1,))["map_at_r"]
