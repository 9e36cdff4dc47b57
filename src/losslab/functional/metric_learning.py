"""Pair- and prototype-based metric learning: Multi-Similarity (with its miner) and the two
SuSana few-shot losses, Proto-Triplet and ICNN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from losslab._reduce import KernelResult
from losslab._validate import Int, Real, describe, fail
from losslab.functional._pairs import (
    masked_logsumexp,
    normalize,
    pair_masks,
    pairwise_sq_dist,
)
from losslab.kinds import Param
from losslab.kinds.embedding import EmbeddingInput
from losslab.registry import register

#: Inside the square root of the SuSana distances: keeps the gradient finite at d = 0.
DIST_EPS = 1e-6
#: The divisions of the ICNN score are guarded by this (as in the official code).
ICNN_EPS = 1e-7

_PAIRS = Param(
    "pairs",
    "tuple[Tensor, Tensor, Tensor, Tensor] | None",
    "mined pairs `(a1, p, a2, n)` (index tensors into the rows of `(N, D)` embeddings, as "
    "returned by `MultiSimilarityMiner` or any pytorch-metric-learning miner): positive "
    "pairs `(a1, p)` and negative pairs `(a2, n)` replace the built-in mining.",
    None,
)
_SUPPORT = Param(
    "support",
    "Tensor | None",
    "bool `(N,)`: the support samples of the episode (the others are queries); `None`: "
    "every sample is both.",
    None,
)


def _ms_mining(s: Tensor, pos: Tensor, neg: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """The MS miner on similarities ``s`` (no gradient): a negative is kept when it is
    more similar than the anchor's least similar positive minus epsilon, a positive when
    it is less similar than the most similar negative plus epsilon."""
    s = s.detach()
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    hardest_pos = torch.where(pos, s, inf).amin(dim=1, keepdim=True)
    hardest_neg = torch.where(neg, s, -inf).amax(dim=1, keepdim=True)
    return pos & (s < hardest_neg + epsilon), neg & (s > hardest_pos - epsilon)


def _pairs_mask(where: str, pairs: object, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    if not isinstance(pairs, Sequence) or len(pairs) != 4:
        fail(where, "pairs", "a tuple (a1, p, a2, n) of index tensors", describe(pairs), TypeError)
    out = []
    for a, b in ((pairs[0], pairs[1]), (pairs[2], pairs[3])):
        for t in (a, b):
            if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.dim() != 1:
                fail(where, "pairs", "1-D int64 index tensors", describe(t), TypeError)
        if a.shape != b.shape:
            fail(where, "pairs", "index tensors of equal length per pair set", describe(b))
        if a.numel() and (int(torch.cat([a, b]).min()) < 0 or int(torch.cat([a, b]).max()) >= m):
            fail(where, "pairs", f"row indices in [0, {m - 1}]", "an index out of range")
        mask = torch.zeros(m, m, dtype=torch.bool, device=device)
        mask[a.to(device), b.to(device)] = True
        out.append(mask)
    return out[0], out[1]


@register(
    "multi_similarity",
    kind="embedding",
    family="metric_learning",
    module="MultiSimilarityLoss",
    reference="Wang, Han, Huang, Dong, Scott. Multi-Similarity Loss with General Pair "
    "Weighting for Deep Metric Learning. CVPR 2019, arXiv:1904.06627; official code "
    "github.com/MalongTech/research-ms-loss",
    constraints={
        "alpha": Real(0.0, lo_open=True),
        "beta": Real(0.0, lo_open=True),
        "base": Real(-1.0, 1.0),
        "epsilon": Real(0.0, allow_none=True),
    },
    extra_inputs=(_PAIRS,),
    components=("positive_pairs", "negative_pairs"),
    test_configs=({"epsilon": None}, {"beta": 50.0, "base": 1.0}),
)
def multi_similarity(
    inp: EmbeddingInput,
    *,
    alpha: float = 2.0,
    beta: float = 40.0,
    base: float = 0.5,
    epsilon: float | None = 0.1,
    pairs: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> KernelResult:
    r"""Multi-Similarity loss: soft weighting of mined positive and negative pairs.

    $$
    \ell_i = \frac{1}{\alpha}\log\Big(1 + \sum_{k \in \hat P_i} e^{-\alpha (S_{ik} - \lambda)}
    \Big) + \frac{1}{\beta}\log\Big(1 + \sum_{k \in \hat N_i} e^{\beta (S_{ik} - \lambda)}\Big)
    $$

    on cosine similarities $S$ of the L2-normalised embeddings (every view is a row),
    with $\lambda$ = `base`. The mined sets keep a negative $k$ when
    $S_{ik} > \min_{p \in P_i} S_{ip} - \epsilon$ and a positive when
    $S_{ik} < \max_{n \in N_i} S_{in} + \epsilon$; mining takes no gradient. The gradient
    of each pair is its General Pair Weighting weight. An anchor without mined pairs
    contributes 0 and still counts in the mean (the official code divides by the batch
    size). The components count the positive and negative pairs used.

    Args:
        alpha: scale $\alpha > 0$ of the positive term (official code and
            pytorch-metric-learning: 2).
        beta: scale $\beta > 0$ of the negative term (official code: 40;
            pytorch-metric-learning: 50).
        base: the similarity offset $\lambda$ (official code and pytorch-metric-learning:
            0.5).
        epsilon: mining margin $\epsilon \ge 0$ (0.1), or `None` to use every pair.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> e = torch.tensor(
        ...     [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.55, 0.0, 0.835], [0.0, 0.0, 1.0]]
        ... )
        >>> F.multi_similarity(e, torch.tensor([0, 0, 1, 1]), beta=50.0, epsilon=None)
        tensor(0.2787)
    """
    e, pos, neg, _ = pair_masks(inp)
    if pairs is not None:
        if inp.views != 1:
            fail("multi_similarity", "embeddings", "shape (N, D) when pairs are given", "views")
        mined_pos, mined_neg = _pairs_mask("multi_similarity", pairs, e.shape[0], e.device)
        keep = inp.keep
        both = keep[:, None] & keep[None, :]
        pos, neg = mined_pos & both, mined_neg & both
    e = normalize(e)
    s = e @ e.T
    if pairs is None and epsilon is not None:
        pos, neg = _ms_mining(s, pos, neg, epsilon)
    pos_term = masked_logsumexp(-alpha * (s - base), pos, dim=1, add_one=True) / alpha
    neg_term = masked_logsumexp(beta * (s - base), neg, dim=1, add_one=True) / beta
    values = inp.per_sample(pos_term + neg_term)
    return KernelResult(values, None, {"positive_pairs": pos.sum(), "negative_pairs": neg.sum()})


class MultiSimilarityMiner:
    """The Multi-Similarity miner: the informative pairs of a batch, as index tuples.

    Returns `(a1, p, a2, n)` in pytorch-metric-learning's format (row indices of the
    embeddings): the positive pairs $(a_1, p)$ with $S_{ap} < \\max_n S_{an} + \\epsilon$
    and the negative pairs $(a_2, n)$ with $S_{an} > \\min_p S_{ap} - \\epsilon$, on the
    cosine similarities $S$. Feed them to `multi_similarity(..., pairs=...)` or to any
    loss that takes mined pairs.

    Args:
        epsilon: the mining margin $\\epsilon \\ge 0$ (0.1 in the paper's code and in
            pytorch-metric-learning).

    Example:
        >>> import torch
        >>> from losslab.functional import MultiSimilarityMiner
        >>> e = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.55, 0.835], [0.0, 1.0]])
        >>> a1, p, a2, n = MultiSimilarityMiner(0.1)(e, torch.tensor([0, 0, 1, 1]))
        >>> a1.tolist(), p.tolist()
        ([0, 1, 2, 3], [1, 0, 3, 2])
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        Real(0.0).check("MultiSimilarityMiner", "epsilon", epsilon)
        self.epsilon = epsilon

    def __call__(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from losslab.kinds.embedding import prepare

        inp = prepare("MultiSimilarityMiner", {"views": 1, "min_views": 1}, embeddings, labels)
        e, pos, neg, _ = pair_masks(inp)
        with torch.no_grad():
            e = normalize(e)
            pos, neg = _ms_mining(e @ e.T, pos, neg, self.epsilon)
        a1, p = pos.nonzero(as_tuple=True)
        a2, n = neg.nonzero(as_tuple=True)
        return a1, p, a2, n

    def __repr__(self) -> str:
        return f"MultiSimilarityMiner(epsilon={self.epsilon!r})"


def _sqrt_dist(sq: Tensor) -> Tensor:
    return torch.sqrt(sq + DIST_EPS)


def _support_mask(where: str, support: object, inp: EmbeddingInput) -> Tensor:
    n = inp.labels.shape[0]
    if support is None:
        return torch.ones(n, dtype=torch.bool, device=inp.labels.device)
    if not isinstance(support, Tensor) or support.dtype != torch.bool:
        fail(where, "support", "a bool tensor (N,) or None", describe(support), TypeError)
    if support.shape != (n,):
        fail(where, "support", f"shape ({n},), one flag per sample", describe(support))
    return support.to(inp.labels.device)


@register(
    "proto_triplet",
    kind="embedding",
    family="metric_learning",
    module="ProtoTripletLoss",
    reference="Mendez-Ruiz, Gonzalez-Mendoza, Garcia, Ochoa-Ruiz. SuSana Distancia is all "
    "you need: Enforcing class separability in metric learning via two novel distance-based "
    "loss functions for few-shot image classification. arXiv:2305.09062, 2023; official "
    "code github.com/maumruiz/FSL-Loss",
    constraints={"margin": Real(0.0)},
    extra_inputs=(_SUPPORT,),
    components=("queries",),
    test_configs=({"margin": 2.0},),
)
def proto_triplet(
    inp: EmbeddingInput, *, margin: float = 0.5, support: Tensor | None = None
) -> KernelResult:
    r"""Proto-Triplet loss: each query closer to its class prototype than to any other.

    $$
    \ell(q) = \max\big(0,\ d(q, c_y) - \min_{k \ne y} d(q, c_k) + m\big),\qquad
    d(x, z) = \sqrt{\lVert x - z\rVert^2 + 10^{-6}}
    $$

    Prototypes $c_k$ are the means of the support embeddings of class $k$ (every view is
    a point; Euclidean, not normalised, as ProtoNet). The queries are the samples outside
    `support` (all samples when `support=None`); a query counts when its class has a
    prototype and another class has one too. The $10^{-6}$ inside the square root keeps
    the gradient finite at coincident points, as in the official code.

    Args:
        margin: $m \ge 0$ (official code: 0.5).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, 0.0], [0.0, 0.0]])
        >>> support = torch.tensor([True, False, True, False])
        >>> F.proto_triplet(e, torch.tensor([0, 0, 1, 0]), support=support)
        tensor(0.2010)
    """
    sup = _support_mask("proto_triplet", support, inp)
    e, y, _, keep = inp.flat()
    v = inp.views
    sup_rows = sup.repeat_interleave(v) & keep
    query_rows = keep & ~sup.repeat_interleave(v) if support is not None else keep
    # Row j of `protos` is the prototype of row j's class (repeated per member row), which
    # keeps every shape static (no unique over labels).
    member = (y[:, None] == y[None, :]) & sup_rows[None, :]
    count = member.sum(dim=1)
    protos = (member.to(e.dtype) @ e) / count.clamp_min(1)[:, None].to(e.dtype)
    has_proto = count > 0
    d = _sqrt_dist(pairwise_sq_dist(e, protos))
    same = (y[:, None] == y[None, :]) & has_proto[None, :]
    other = (y[:, None] != y[None, :]) & has_proto[None, :]
    inf = torch.tensor(float("inf"), dtype=e.dtype, device=e.device)
    d_pos = torch.where(same, d, -inf).amax(dim=1)
    d_neg = torch.where(other, d, inf).amin(dim=1)
    ok = query_rows & same.any(dim=1) & other.any(dim=1)
    per_row = torch.where(ok, torch.relu(torch.where(ok, d_pos - d_neg, 0.0) + margin), 0.0)
    counted = ok.reshape(-1, v).sum(dim=1)
    values = per_row.reshape(-1, v).sum(dim=1) / counted.clamp_min(1).to(e.dtype)
    return KernelResult(values, counted > 0, {"queries": ok.sum()})


def icnn_score(
    x: Tensor, y: Tensor, target: Tensor, y_target: Tensor, k: int, ipc: int | None
) -> Tensor:
    """The ICNN score $\\psi \\in [0, 1]$ of points ``x`` (labels ``y``) against the
    neighbour set ``target`` (``y_target``), as the official ``modified_score``."""
    size = target.shape[0]
    k = size - 2 if k + 2 >= size else k
    ipc = k + 1 if ipc is None else ipc
    if k == 0:
        # Two points: every term of the official score is at its maximum.
        return 1.0 + 0.0 * x.sum()
    dist = _sqrt_dist(pairwise_sq_dist(x, target))
    # The nearest neighbour is skipped: the point itself when x is the target set.
    near, idx = dist.topk(min(ipc + 1, size), dim=1, largest=False)
    near, idx = near[:, 1:], idx[:, 1:]
    same = y[:, None] == y_target[idx]
    diff = ~same
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    nearest_other = torch.where(diff, near, inf).amin(dim=1, keepdim=True)
    nd = (near / (nearest_other + ICNN_EPS))[:, :k]
    nd = nd / nd.amax(dim=1, keepdim=True).clamp_min(1.0)
    same_k, diff_k = same[:, :k], diff[:, :k]
    sc_counts = same_k.sum(dim=1).to(x.dtype)
    sc_mean = torch.where(same_k, nd, 0.0).sum(dim=1) / (sc_counts + ICNN_EPS)
    lam_sc = 1 - sc_mean.sum() / ((sc_counts > 0).sum().to(x.dtype) + ICNN_EPS)
    dcd = torch.where(diff_k, near[:, :k], 0.0)
    dcd = dcd / (dcd.amax() + ICNN_EPS)
    dc_counts = diff_k.sum(dim=1).to(x.dtype)
    dc_mean = dcd.sum(dim=1) / (dc_counts + ICNN_EPS)
    lam_dc = dc_mean.sum() / ((dc_counts > 0).sum().to(x.dtype) + ICNN_EPS)
    # With no different-class neighbour anywhere the official score counts full separation.
    lam_dc = torch.where(diff_k.any(), lam_dc, 1.0).abs()
    if k + 2 < size:
        gamma = (sc_counts / k).sum() / x.shape[0]
    else:
        gamma = torch.ones((), dtype=x.dtype, device=x.device)
    return ((lam_sc + lam_dc) / 2 + gamma) / 2


@register(
    "icnn",
    kind="embedding",
    family="metric_learning",
    module="ICNNLoss",
    reference="Mendez-Ruiz, Gonzalez-Mendoza, Garcia, Ochoa-Ruiz. SuSana Distancia is all "
    "you need: Enforcing class separability in metric learning via two novel distance-based "
    "loss functions for few-shot image classification. arXiv:2305.09062, 2023; official "
    "code github.com/maumruiz/FSL-Loss",
    constraints={"k": Int(1)},
    extra_inputs=(_SUPPORT,),
    test_configs=({"k": 2},),
)
def icnn(
    inp: EmbeddingInput, *, k: int = 4, ipc: int | None = None, support: Tensor | None = None
) -> Tensor | KernelResult:
    r"""ICNN loss: the negative log of the batch's neighbourhood-separability score.

    $$
    \mathcal{L} = -\log \max(\psi, 10^{-7}),\qquad
    \psi = \tfrac12\Big(\tfrac12(\lambda_{sc} + \lambda_{dc}) + \gamma\Big)
    $$

    On Euclidean distances $d = \sqrt{\lVert\cdot\rVert^2 + 10^{-6}}$ to the nearest
    neighbours (the nearest one skipped, which is the point itself for the full set):
    $\lambda_{sc}$ is one minus the mean distance to same-class neighbours among the first
    $k$, relative to the nearest different-class neighbour among the first `ipc`;
    $\lambda_{dc}$ the mean distance to different-class neighbours over the batch maximum;
    $\gamma$ the fraction of same-class neighbours; $\psi \in [0, 1]$. With `support`, the
    queries are scored against the support set (the official "queryicnn"); without, the
    whole batch against itself ("fullicnn"). $k$ shrinks to $n - 2$ on a neighbour set of
    $n \le k + 2$ points, where $\gamma = 1$. The score is of the whole batch: every sample
    carries the batch's loss (so `"mean"` gives it), and only the distances carry
    gradient. $\psi$ is floored at $10^{-7}$, where the official code would return
    infinity.

    Args:
        k: number of neighbours $k \ge 1$ (official default 4).
        ipc: neighbours searched for the nearest different-class point, `None` for $k + 1$
            (the official "full" variant passes shots + queries).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> e = torch.tensor(
        ...     [[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1], [0.0, 0.1], [5.1, 5.0]]
        ... )
        >>> F.icnn(e, torch.tensor([0, 0, 1, 1, 0, 1]), k=2)
        tensor(0.0041)
    """
    if ipc is not None:
        Int(1).check("icnn", "ipc", ipc)
    sup = _support_mask("icnn", support, inp)
    keep = inp.keep
    n = inp.labels.shape[0]
    if inp.mask is not None:
        # Ignored samples leave the neighbour sets, whose size sets k: select them.
        rows = keep.nonzero(as_tuple=True)[0]
    else:
        rows = torch.arange(n, device=keep.device)
    x = inp.embeddings[rows]
    y = inp.labels[rows]
    v = inp.views
    flat_x = x.reshape(-1, x.shape[-1])
    flat_y = y.repeat_interleave(v)
    if support is None:
        qx, qy, tx, ty = flat_x, flat_y, flat_x, flat_y
    else:
        s = sup[rows].repeat_interleave(v)
        qx, qy, tx, ty = flat_x[~s], flat_y[~s], flat_x[s], flat_y[s]
    if qx.shape[0] == 0 or tx.shape[0] < 2:
        zero = inp.embeddings.sum() * 0.0
        return KernelResult(zero.expand(n), torch.zeros(n, dtype=torch.bool, device=keep.device))
    psi = icnn_score(qx, qy, tx, ty, k, ipc)
    loss = -torch.log(psi.clamp_min(ICNN_EPS))
    return loss.expand(n)
