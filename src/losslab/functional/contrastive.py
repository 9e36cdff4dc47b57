"""Contrastive and self-supervised losses on embeddings: NT-Xent / InfoNCE, SupCon, the
symmetric CLIP loss, CWCL, Barlow Twins and CACR."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._reduce import KernelResult
from losslab._validate import Choice, Real
from losslab.functional._pairs import masked_logsumexp, normalize, pair_masks
from losslab.kinds.embedding import EmbeddingInput
from losslab.registry import register

#: Batch-norm epsilon of the Barlow Twins projector outputs (torch's BatchNorm1d default).
BN_EPS = 1e-5


def _ntxent(inp: EmbeddingInput, *, temperature: float = 0.1) -> KernelResult:
    r"""NT-Xent (InfoNCE): each positive against the anchor's negatives, at a temperature.

    $$
    \ell_i = \frac{1}{|P_i|}\sum_{p \in P_i} -\log
    \frac{e^{s_{ip}/\tau}}{e^{s_{ip}/\tau} + \sum_{n \in N_i} e^{s_{in}/\tau}},
    \qquad s_{ij} = \hat z_i^\top \hat z_j
    $$

    over every view $i$ as an anchor (cosine similarities of L2-normalised embeddings),
    with $P_i$ the other views of its class and $N_i$ the views of other classes; a
    sample's loss is the mean over its views. Two views per sample with `labels=None` is
    SimCLR's loss (the mean over the $2N$ anchors); with labels, each positive sees only
    the negatives in its denominator (other positives are left out). Samples without a
    positive do not count; the component counts the positive pairs. The mean over
    anchors of each anchor's mean over its positives equals pytorch-metric-learning's
    mean over positive pairs when every anchor has as many positives.

    Args:
        temperature: $\tau > 0$ (SimCLR's code: 0.1; pytorch-metric-learning: 0.07).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> views = torch.eye(2).repeat_interleave(2, dim=0).reshape(2, 2, 2)
        >>> F.ntxent(views, temperature=0.5)
        tensor(0.2395)
    """
    e, pos, neg, _ = pair_masks(inp)
    e = normalize(e)
    s = (e @ e.T) / temperature
    neg_lse = masked_logsumexp(s, neg, dim=1)
    has_neg = neg.any(dim=1, keepdim=True)
    # log(e^{s_ip} + sum_n e^{s_in}) for every pair (i, p); exact without negatives too.
    denom = torch.where(has_neg, torch.logaddexp(s, neg_lse[:, None]), s)
    per_pair = torch.where(pos, denom - s, 0.0)
    count = pos.sum(dim=1)
    per_row = per_pair.sum(dim=1) / count.clamp_min(1).to(s.dtype)
    values = inp.per_sample(per_row)
    valid = count.reshape(-1, inp.views).sum(dim=1) > 0
    return KernelResult(values, valid, {"positive_pairs": pos.sum()})


_NTXENT_REFERENCE = (
    "Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning of "
    "Visual Representations (SimCLR). ICML 2020, arXiv:2002.05709; official code "
    "github.com/google-research/simclr; InfoNCE: van den Oord, Li, Vinyals, "
    "arXiv:1807.03748"
)
_NTXENT = {
    "kind": "embedding",
    "family": "contrastive",
    "reference": _NTXENT_REFERENCE,
    "constraints": {"temperature": Real(0.0, lo_open=True)},
    "components": ("positive_pairs",),
    "test_configs": ({"temperature": 1.0},),
}
ntxent = register("ntxent", module="NTXentLoss", **_NTXENT)(_ntxent)  # type: ignore[arg-type]
infonce = register("infonce", module="InfoNCELoss", **_NTXENT)(_ntxent)  # type: ignore[arg-type]


@register(
    "supcon",
    kind="embedding",
    family="contrastive",
    module="SupConLoss",
    reference="Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan. "
    "Supervised Contrastive Learning. NeurIPS 2020, arXiv:2004.11362; official code "
    "github.com/HobbitLong/SupContrast",
    constraints={
        "temperature": Real(0.0, lo_open=True),
        "base_temperature": Real(0.0, lo_open=True),
    },
    components=("positive_pairs",),
    test_configs=({"temperature": 0.5, "base_temperature": 0.5},),
)
def supcon(
    inp: EmbeddingInput, *, temperature: float = 0.07, base_temperature: float = 0.07
) -> KernelResult:
    r"""Supervised contrastive loss ($\mathcal{L}^{sup}_{out}$): all same-class views are
    positives, every other view is in the denominator.

    $$
    \ell_i = -\frac{\tau}{\tau_b}\,\frac{1}{|P_i|}\sum_{p \in P_i}
    \log\frac{e^{s_{ip}/\tau}}{\sum_{a \ne i} e^{s_{ia}/\tau}}
    $$

    over every view $i$ as an anchor (`contrast_mode="all"` of the official code), with
    cosine similarities $s$ of the L2-normalised embeddings. A sample's loss is the mean
    over its views. As in the official code, an anchor without positives contributes 0
    and still counts in the mean; the component counts the positive pairs. `labels=None`
    with two views is SimCLR's loss (times $\tau / \tau_b$).

    Args:
        temperature: $\tau > 0$ (official default 0.07; its README trains with 0.1).
        base_temperature: $\tau_b > 0$ (official 0.07); `base_temperature=temperature`
            drops the factor, as pytorch-metric-learning does.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> e = torch.eye(2).repeat_interleave(2, dim=0)
        >>> F.supcon(e, torch.tensor([0, 0, 1, 1]), temperature=0.5, base_temperature=0.5)
        tensor(0.2395)
    """
    e, pos, _, _ = pair_masks(inp)
    _, _, _, keep = inp.flat()
    e = normalize(e)
    s = (e @ e.T) / temperature
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    others = keep[None, :] & ~eye
    log_prob = s - masked_logsumexp(s, others, dim=1)[:, None]
    count = pos.sum(dim=1)
    mean_pos = torch.where(pos, log_prob, 0.0).sum(dim=1) / count.clamp_min(1).to(s.dtype)
    values = inp.per_sample(-(temperature / base_temperature) * mean_pos)
    return KernelResult(values, None, {"positive_pairs": pos.sum()})


def label_ce(logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
    """Row cross-entropies of a ``(N, N)`` logit matrix whose row ``i`` targets the columns
    with its label, evenly (column ``i`` alone for distinct labels)."""
    both = keep[:, None] & keep[None, :]
    target = (labels[:, None] == labels[None, :]) & both
    q = target.to(logits.dtype) / target.sum(dim=1, keepdim=True).clamp_min(1).to(logits.dtype)
    lp = torch.where(target, logits - masked_logsumexp(logits, both, dim=1)[:, None], 0.0)
    return -(q * lp).sum(dim=1)


def clip_from_logits(logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
    """Per-pair symmetric InfoNCE of a ``(N, N)`` image-text logit matrix: the mean of the
    row (image-to-text) and column (text-to-image) cross-entropies. Shared with
    ``ClipHead``."""
    return 0.5 * (label_ce(logits, labels, keep) + label_ce(logits.T, labels, keep))


@register(
    "clip",
    kind="embedding",
    family="contrastive",
    module="CLIPLoss",
    reference="Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, "
    "Krueger, Sutskever. Learning Transferable Visual Models From Natural Language "
    "Supervision. ICML 2021, arXiv:2103.00020; reference code "
    "github.com/mlfoundations/open_clip (ClipLoss)",
    constraints={"temperature": Real(0.0, lo_open=True)},
    test_configs=({"temperature": 1.0},),
    views=2,
)
def clip(inp: EmbeddingInput, *, temperature: float = 0.07) -> Tensor:
    r"""Symmetric InfoNCE of CLIP between the two views (image, text) of each pair.

    $$
    \ell_i = -\tfrac12\Big(\log\frac{e^{s_{ii}/\tau}}{\sum_j e^{s_{ij}/\tau}}
    + \log\frac{e^{s_{ii}/\tau}}{\sum_j e^{s_{ji}/\tau}}\Big),\qquad
    s_{ij} = \hat x_i^\top \hat t_j
    $$

    with $x$ = view 0 and $t$ = view 1 of `(N, 2, D)` embeddings, L2-normalised. With
    labels, a row's target is spread evenly over the columns with its label (duplicate
    captions); `labels=None` is CLIP's pairing. For a learnable temperature, use
    `losslab.heads.ClipHead`, which keeps $\log(1/\tau)$ as a parameter.

    Args:
        temperature: $\tau > 0$; CLIP initialises $1/\tau = 1/0.07$ and learns it.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> pairs = torch.eye(3)[:, None, :].expand(3, 2, 3)
        >>> F.clip(pairs, temperature=0.5)
        tensor(0.2395)
    """
    e = normalize(inp.embeddings)
    logits = (e[:, 0] @ e[:, 1].T) / temperature
    return clip_from_logits(logits, inp.labels, inp.keep)


@register(
    "cwcl",
    kind="embedding",
    family="contrastive",
    module="CWCLLoss",
    reference="Srinivasa, Shen, Patel, Jeong, Moon, Kim. CWCL: Cross-Modal Transfer with "
    "Continuously Weighted Contrastive Loss. NeurIPS 2023, arXiv:2309.14580 (no official "
    "code)",
    constraints={"temperature": Real(0.0, lo_open=True), "reverse": Choice(("cwcl", "infonce"))},
    test_configs=({"reverse": "infonce"},),
    views=2,
)
def cwcl(inp: EmbeddingInput, *, temperature: float = 0.07, reverse: str = "cwcl") -> Tensor:
    r"""Continuously weighted contrastive loss: soft cross-modal targets from the
    similarities within the frozen modality.

    $$
    \ell_i^{U\to V} = -\frac{1}{\sum_j w_{ij}}\sum_j w_{ij}
    \log\frac{e^{\langle p_i, q_j\rangle/\tau}}{\sum_k e^{\langle p_i, q_k\rangle/\tau}},
    \qquad w_{ij} = \tfrac12 \langle p_i, p_j\rangle + \tfrac12
    $$

    with $p$ = view 0 (the modality of the frozen, pre-trained encoder) and $q$ = view 1
    (the modality being trained), L2-normalised. The weights come from the frozen
    encoder, so in CWCL's setting they receive no gradient; the function differentiates
    the formula as written (pass a detached view 0 to hold them constant otherwise).
    The loss is $\tfrac12(\ell^{U\to V} + \ell^{V\to U})$: the reverse term is the same
    weighting over columns (`reverse="cwcl"`) or CLIP's InfoNCE (`"infonce"`, where labels
    spread the target as in `clip`). With $w = I$ both forms are `clip`.

    Args:
        temperature: $\tau > 0$ (0.07, CLIP's initial value).
        reverse: `"cwcl"` or `"infonce"`: the form of the $V \to U$ term.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> p = torch.eye(2)
        >>> F.cwcl(torch.stack([p, p], dim=1), temperature=0.5, reverse="infonce")
        tensor(0.4603)
    """
    e = normalize(inp.embeddings)
    p, q = e[:, 0], e[:, 1]
    keep = inp.keep
    both = keep[:, None] & keep[None, :]
    w = torch.where(both, 0.5 * (p @ p.T) + 0.5, 0.0)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    logits = (p @ q.T) / temperature
    lp_row = torch.where(both, logits - masked_logsumexp(logits, both, dim=1)[:, None], 0.0)
    forward = -(w * lp_row).sum(dim=1)
    if reverse == "cwcl":
        lp_col = torch.where(both, logits.T - masked_logsumexp(logits.T, both, dim=1)[:, None], 0.0)
        backward = -(w * lp_col).sum(dim=1)
        return 0.5 * (forward + backward)
    return 0.5 * (forward + label_ce(logits.T, inp.labels, keep))


@register(
    "barlow_twins",
    kind="embedding",
    family="contrastive",
    module="BarlowTwinsLoss",
    reference="Zbontar, Jing, Misra, LeCun, Deny. Barlow Twins: Self-Supervised Learning via "
    "Redundancy Reduction. ICML 2021, arXiv:2103.03230; official code "
    "github.com/facebookresearch/barlowtwins",
    constraints={"lambd": Real(0.0)},
    test_configs=({"lambd": 0.5},),
    views=2,
)
def barlow_twins(inp: EmbeddingInput, *, lambd: float = 0.0051) -> KernelResult:
    r"""Barlow Twins: the cross-correlation of the two views' batch-normalised projections
    pushed to the identity.

    $$
    \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2,\qquad
    C = \tfrac1N\,\hat z_A^\top \hat z_B
    $$

    where $\hat z$ standardises each dimension over the batch (batch mean, biased
    variance, $\epsilon = 10^{-5}$: the official `BatchNorm1d(affine=False)`), for
    $z_A$ = view 0 and $z_B$ = view 1 of `(N, 2, D)` projector outputs. The objective is
    of the whole batch: every sample carries the batch's loss (so `"mean"` gives it;
    sample weights only scale the reduction). Fewer than two samples give an attached 0.

    Args:
        lambd: weight $\lambda \ge 0$ of the redundancy term (official code 0.0051; the
            paper's text says 5e-3).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
        >>> F.barlow_twins(torch.stack([z, -z], dim=1))
        tensor(7.9999)
    """
    keep = inp.keep
    k = keep.to(inp.embeddings.dtype)[:, None]
    count = k.sum()
    n = count.clamp_min(1)
    z = inp.embeddings
    za, zb = z[:, 0], z[:, 1]

    def standardise(x: Tensor) -> Tensor:
        mean = (k * x).sum(dim=0) / n
        var = (k * (x - mean) ** 2).sum(dim=0) / n
        return k * (x - mean) / torch.sqrt(var + BN_EPS)

    c = standardise(za).T @ standardise(zb) / n
    diag = torch.diagonal(c)
    loss = (1 - diag).pow(2).sum() + lambd * (c.pow(2).sum() - diag.pow(2).sum())
    ok = keep & (count >= 2)
    return KernelResult(loss.expand(keep.shape[0]), ok)


@register(
    "cacr",
    kind="embedding",
    family="contrastive",
    module="CACRLoss",
    reference="Zheng, Chen, Yao, Yang, Li, Zhang, Zhou. Contrastive Attraction and "
    "Contrastive Repulsion for Representation Learning. TMLR 2023, arXiv:2105.03746; "
    "official code github.com/JegZheng/CACR-SSL",
    constraints={
        "alpha": Real(0.0),
        "beta": Real(0.0),
        "tau_pos": Real(0.0),
        "tau_neg": Real(0.0),
    },
    test_configs=({"tau_pos": 0.5, "tau_neg": 2.0, "beta": 3.0},),
    min_views=2,
)
def cacr(
    inp: EmbeddingInput,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_pos: float = 1.0,
    tau_neg: float = 1.0,
) -> Tensor:
    r"""Contrastive attraction and contrastive repulsion: views pulled together with more
    weight on distant positives, negatives pushed apart with more weight on close ones.

    $$
    \ell_i = \frac1V\sum_x \sum_{v \ne x} \pi^+_{xv}\,\alpha\,c(z_i^x, z_i^v)
    - \frac{1}{\binom V2}\sum_{x<y}\sum_{j \in N_i} \pi^-_{j}\,\beta\,c(z_i^x, z_j^y)
    $$

    with $c(a, b) = \lVert a - b\rVert^2$ on L2-normalised views,
    $\pi^+ = \mathrm{softmax}_v(\tau^+ c(z_i^x, z_i^v))$ and
    $\pi^- = \mathrm{softmax}_j(-\tau^- c(z_i^x, z_j^y))$. The weights carry gradient, as
    in the official small-scale code. $N_i$ are the samples of other labels (every other
    sample with `labels=None`, the official setting). Needs at least two views.

    Args:
        alpha: weight $\alpha \ge 0$ of the attraction (official 1).
        beta: weight $\beta \ge 0$ of the repulsion (official 1).
        tau_pos: $\tau^+ \ge 0$ (official 1).
        tau_neg: $\tau^- \ge 0$ (official 1; its README runs use 0.9 and 2).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> z = torch.eye(2)
        >>> F.cacr(torch.stack([z, z], dim=1))
        tensor(-2.)
    """
    z = normalize(inp.embeddings)
    n, v, _ = z.shape
    keep = inp.keep
    # Attraction: (N, V, V) costs between the views of each sample.
    cost = (z[:, :, None, :] - z[:, None, :, :]).pow(2).sum(dim=-1)
    off = ~torch.eye(v, dtype=torch.bool, device=z.device)
    off = off.expand(n, v, v)
    logw = tau_pos * cost - masked_logsumexp(tau_pos * cost, off, dim=2)[..., None]
    pi = torch.where(off, torch.exp(torch.where(off, logw, 0.0)), 0.0)
    attraction = alpha * (pi * cost).sum(dim=2).mean(dim=1)
    # Repulsion over the view pairs x < y.
    neg = (inp.labels[:, None] != inp.labels[None, :]) & keep[:, None] & keep[None, :]
    repulsion = torch.zeros(n, dtype=z.dtype, device=z.device)
    pairs = 0
    for x in range(v):
        for y in range(x + 1, v):
            c = (z[:, None, x, :] - z[None, :, y, :]).pow(2).sum(dim=-1)
            logits = -tau_neg * c
            lw = logits - masked_logsumexp(logits, neg, dim=1)[:, None]
            w = torch.where(neg, torch.exp(torch.where(neg, lw, 0.0)), 0.0)
            repulsion = repulsion - beta * (w * c).sum(dim=1)
            pairs += 1
    return attraction + repulsion / pairs
