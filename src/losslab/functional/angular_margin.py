"""Additive and multiplicative angular margins on cosine logits (ArcFace, CosFace,
SphereFace) and UNPG, which appends the batch's feature-pair negatives to them.

The losses take the cosines between L2-normalised features and L2-normalised class
centres, ``(N, C)``; the centres are parameters of ``losslab.heads.MarginHead``, never
of a loss. The ``*_logits`` helpers return the margined, scaled logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab._reduce import KernelResult
from losslab._validate import Choice, Int, Real, describe, fail
from losslab.distributed import all_gather_nograd, all_gather_with_grad, require_process_group
from losslab.functional._fused import ScaledCERows, as_rows
from losslab.functional._pairs import masked_logsumexp, normalize
from losslab.kinds import Param
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register

#: acos has an infinite slope at +-1: cosines are clamped this far inside.
ACOS_EPS = 1e-7

_MARGIN_RULES: dict[str, Any] = {"soft_targets": False, "neg_inf_ok": False}


def _angles(cosine: Tensor) -> Tensor:
    return torch.acos(cosine.clamp(-1 + ACOS_EPS, 1 - ACOS_EPS))


def _with_target(cosine: Tensor, target: Tensor, new: Tensor, scale: float) -> Tensor:
    """``scale * cosine`` with the target entry ``scale * new`` (``new``: ``(N, 1, *)``):
    one full-size buffer, written in place, so the margin costs a pass over N values."""
    return (cosine * scale).scatter_(1, target.unsqueeze(1), new * scale)


def _target_cos(cosine: Tensor, target: Tensor) -> Tensor:
    return cosine.gather(1, target.unsqueeze(1))


def arcface_target(cos: Tensor, margin: float, fallback: bool = True) -> Tensor:
    r"""$\cos(\theta + m)$; with `fallback`, $\cos\theta - m \sin m$ once
    $\theta + m > \pi$ (insightface, pytorch-metric-learning), keeping the target logit
    decreasing in $\theta$."""
    theta = _angles(cos)
    out = torch.cos(theta + margin)
    if fallback:
        out = torch.where(
            theta + margin <= math.pi, out, torch.cos(theta) - margin * math.sin(margin)
        )
    return out


def sphereface_target(cos: Tensor, margin: int) -> Tensor:
    r"""$\psi(\theta) = (-1)^k \cos(m\theta) - 2k$ for $\theta \in [k\pi/m, (k+1)\pi/m]$."""
    theta = _angles(cos)
    k = torch.floor(margin * theta.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(margin * theta) - 2.0 * k


def arcface_logits(
    cosine: Tensor,
    target: Tensor,
    *,
    margin: float = 0.5,
    scale: float = 64.0,
    fallback: bool = True,
) -> Tensor:
    r"""ArcFace logits: $s \cos(\theta_y + m)$ at the target, $s \cos\theta_j$ elsewhere.

    Args:
        cosine: `(N, C, ...)` cosines between normalised features and class centres.
        target: int64 class indices `(N, ...)`.
        margin: additive angular margin $m$ in radians.
        scale: $s$.
        fallback: past $\theta + m > \pi$ use $\cos\theta - m\sin m$.

    Example:
        >>> import torch
        >>> from losslab.functional import arcface_logits
        >>> arcface_logits(torch.tensor([[0.0, 0.5]]), torch.tensor([0])).round(decimals=3)
        tensor([[-30.6830,  32.0000]])
    """
    new = arcface_target(_target_cos(cosine, target), margin, fallback)
    return _with_target(cosine, target, new, scale)


def cosface_logits(
    cosine: Tensor, target: Tensor, *, margin: float = 0.35, scale: float = 64.0
) -> Tensor:
    r"""CosFace logits: $s(\cos\theta_y - m)$ at the target, $s\cos\theta_j$ elsewhere.

    Example:
        >>> import torch
        >>> from losslab.functional import cosface_logits
        >>> cosface_logits(torch.tensor([[0.5, 0.1]]), torch.tensor([0]))
        tensor([[9.6000, 6.4000]])
    """
    return _with_target(cosine, target, _target_cos(cosine, target) - margin, scale)


def sphereface_logits(
    cosine: Tensor, target: Tensor, *, margin: int = 4, scale: float = 64.0
) -> Tensor:
    r"""SphereFace (A-Softmax) logits: $s\,\psi(\theta_y)$ at the target, $s\cos\theta_j$
    elsewhere.

    Example:
        >>> import torch
        >>> from losslab.functional import sphereface_logits
        >>> sphereface_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), scale=1.0)
        tensor([[1.0000, 0.0000]])
    """
    new = sphereface_target(_target_cos(cosine, target), margin)
    return _with_target(cosine, target, new, scale)


def _margin_ce(cosine: Tensor, target: Tensor, new: Tensor, scale: float) -> Tensor:
    """Per-element cross-entropy of the margined logits (``new``: the target's margined
    cosine, ``(N, 1, *)``) for ``(N, C, *)`` cosines, without building the logits."""
    per = ScaledCERows.apply(as_rows(cosine), target.reshape(-1), as_rows(new), float(scale))
    return per.reshape(target.shape)


@register(
    "arcface",
    family="angular_margin",
    module="ArcFaceLoss",
    reference="Deng, Guo, Xue, Zafeiriou. ArcFace: Additive Angular Margin Loss for Deep "
    "Face Recognition. CVPR 2019, arXiv:1801.07698; official code "
    "github.com/deepinsight/insightface (recognition/arcface_torch)",
    constraints={
        "margin": Real(0.0, math.pi),
        "scale": Real(0.0, lo_open=True),
        "fallback": Choice((True, False)),
    },
    test_configs=({"margin": 0.2, "scale": 8.0, "fallback": False},),
    **_MARGIN_RULES,
)
def arcface(
    inp: MulticlassInput, *, margin: float = 0.5, scale: float = 64.0, fallback: bool = True
) -> Tensor:
    r"""ArcFace: cross-entropy of scaled cosines with an additive angular margin at the
    target.

    $$
    \ell = -\log\frac{e^{s\cos(\theta_y + m)}}{e^{s\cos(\theta_y + m)}
    + \sum_{j \ne y} e^{s\cos\theta_j}}
    $$

    The input is the cosines $\cos\theta_j$ between the normalised feature and the
    normalised class centres (`losslab.heads.MarginHead` holds the centres). Cosines are
    clamped to $[-1 + 10^{-7}, 1 - 10^{-7}]$ before `acos`. With `fallback` (insightface
    and pytorch-metric-learning), $\cos\theta - m \sin m$ replaces $\cos(\theta + m)$ once
    $\theta + m > \pi$, so the target logit keeps decreasing in $\theta$. $m = 0$ is the
    normalised softmax at scale $s$.

    Args:
        margin: angular margin $m$ in radians (0.5; pytorch-metric-learning takes degrees:
            28.6).
        scale: $s > 0$ (64).
        fallback: use the monotone continuation past $\theta + m > \pi$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.6, 0.0]])
        >>> F.arcface(cos, torch.tensor([0, 1]), scale=16.0, reduction="none")
        tensor([0.0066, 2.5974])
    """
    new = arcface_target(_target_cos(inp.logits, inp.index), margin, fallback)
    return _margin_ce(inp.logits, inp.index, new, scale)


@register(
    "cosface",
    family="angular_margin",
    module="CosFaceLoss",
    reference="Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu. CosFace: Large Margin Cosine Loss "
    "for Deep Face Recognition. CVPR 2018, arXiv:1801.09414; reference code "
    "github.com/deepinsight/insightface (recognition/arcface_torch)",
    constraints={"margin": Real(0.0), "scale": Real(0.0, lo_open=True)},
    test_configs=({"margin": 0.1, "scale": 8.0},),
    **_MARGIN_RULES,
)
def cosface(inp: MulticlassInput, *, margin: float = 0.35, scale: float = 64.0) -> Tensor:
    r"""CosFace (large margin cosine loss): cross-entropy of scaled cosines with an additive
    cosine margin at the target.

    $$
    \ell = -\log\frac{e^{s(\cos\theta_y - m)}}{e^{s(\cos\theta_y - m)}
    + \sum_{j \ne y} e^{s\cos\theta_j}}
    $$

    on the cosines between the normalised feature and the normalised class centres.

    Args:
        margin: cosine margin $m \ge 0$ (the paper's 0.35; insightface uses 0.4).
        scale: $s > 0$ (64).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.6, 0.0]])
        >>> F.cosface(cos, torch.tensor([0, 1]), scale=16.0, reduction="none")
        tensor([0.0037, 1.1768])
    """
    return _margin_ce(inp.logits, inp.index, _target_cos(inp.logits, inp.index) - margin, scale)


@register(
    "sphereface",
    family="angular_margin",
    module="SphereFaceLoss",
    reference="Liu, Wen, Yu, Li, Raj, Song. SphereFace: Deep Hypersphere Embedding for Face "
    "Recognition. CVPR 2017, arXiv:1704.08063; reference code "
    "github.com/KevinMusgrave/pytorch-metric-learning (SphereFaceLoss)",
    constraints={"margin": Int(1), "scale": Real(0.0, lo_open=True)},
    test_configs=({"margin": 2, "scale": 4.0},),
    **_MARGIN_RULES,
)
def sphereface(inp: MulticlassInput, *, margin: int = 4, scale: float = 64.0) -> Tensor:
    r"""SphereFace (A-Softmax): cross-entropy of scaled cosines with a multiplicative
    angular margin at the target.

    $$
    \ell = -\log\frac{e^{s\,\psi(\theta_y)}}{e^{s\,\psi(\theta_y)} + \sum_{j \ne y}
    e^{s\cos\theta_j}},\qquad \psi(\theta) = (-1)^k\cos(m\theta) - 2k,\
    \theta \in \big[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}\big]
    $$

    $\psi$ is the monotone extension of $\cos(m\theta)$ of the paper. On cosine inputs the
    feature norm of the original is replaced by a fixed scale $s$ (normalised features);
    the paper's annealing with the plain softmax is left to the caller.

    Args:
        margin: integer multiplicative margin $m \ge 1$ (4).
        scale: $s > 0$ (64).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.6, 0.0]])
        >>> F.sphereface(cos, torch.tensor([0, 1]), scale=4.0, reduction="none")
        tensor([4.0536, 6.0927])
    """
    new = sphereface_target(_target_cos(inp.logits, inp.index), margin)
    return _margin_ce(inp.logits, inp.index, new, scale)


def tukey_keep(values: Tensor, valid: Tensor, whisker: float) -> Tensor:
    """Bool mask of the ``valid`` entries inside the Tukey fences
    ``[Q1 - k IQR, Q3 + k IQR]``, with the official quartiles ``sorted[floor(q L)]``.
    No gradient; static shapes (no boolean indexing)."""
    v = values.detach().reshape(-1)
    ok = valid.reshape(-1)
    inf = torch.tensor(float("inf"), dtype=v.dtype, device=v.device)
    ordered = torch.where(ok, v, inf).sort().values
    count = ok.sum()
    top = max(v.numel() - 1, 0)
    q1 = ordered[torch.floor(0.25 * count).long().clamp_max(top)]
    q3 = ordered[torch.floor(0.75 * count).long().clamp_max(top)]
    iqr = q3 - q1
    inside = (v >= q1 - whisker * iqr) & (v <= q3 + whisker * iqr)
    return (ok & inside & (count > 0)).reshape(values.shape)


@register(
    "unpg",
    family="angular_margin",
    module="UNPGLoss",
    reference="Jung, Lee, Oh, Park, Park, Son. Unified Negative Pair Generation toward "
    "Well-discriminative Feature Space for Face Recognition. BMVC 2022; official "
    "code github.com/Jung-Jun-Uk/UNPG",
    constraints={
        "margin": Real(0.0),
        "scale": Real(0.0, lo_open=True),
        "margin_type": Choice(("arcface", "cosface")),
        "whisker": Real(0.0, allow_none=True),
        "gather": Choice(("none", "all")),
    },
    extra_inputs=(
        Param(
            "embeddings",
            "Tensor | None",
            "the features `(N, D)` behind the cosines (normalised inside); their "
            "different-class pairs are the generated negatives. `None`: no generated "
            "negatives (plain ArcFace / CosFace).",
            None,
        ),
    ),
    components=("negative_pairs",),
    test_configs=({"margin_type": "cosface", "margin": 0.35, "scale": 8.0, "whisker": None},),
    **_MARGIN_RULES,
)
def unpg(
    inp: MulticlassInput,
    *,
    margin: float = 0.5,
    scale: float = 64.0,
    margin_type: str = "arcface",
    whisker: float | None = 1.5,
    gather: str = "none",
    embeddings: Tensor | None = None,
) -> KernelResult:
    r"""UNPG: a margin softmax whose every row also holds the batch's filtered
    feature-pair negatives.

    $$
    \ell_i = -\log\frac{e^{s\psi_i}}{e^{s\psi_i} + \sum_{c \ne y_i} e^{s\cos\theta_{ic}}
    + \sum_{t \in S'_n} e^{s t}}
    $$

    with $\psi_i$ the ArcFace (no monotone fallback, as the official head) or CosFace
    target cosine, and $S'_n$ the cosines $\langle \hat f_i, \hat f_j\rangle$ of the
    pairs $i < j$ of different labels in the batch that lie inside the Tukey fences
    $[Q_1 - k\,\mathrm{IQR}, Q_3 + k\,\mathrm{IQR}]$ (quartiles $Q_q$ = the sorted
    values at $\lfloor qL \rfloor$). The set is shared by all rows, so its log-sum-exp is
    computed once. The generated negatives carry gradient to both features; the filter
    does not. Ignored samples are in no pair. With `gather="all"` the pairs come from
    the global batch (features and labels of every rank); the cross-entropy stays over
    the local rows. The component counts the kept pairs.

    Args:
        margin: ArcFace angle (radians) or CosFace cosine margin (official: 0.5 for both).
        scale: $s > 0$ (64).
        margin_type: `"arcface"` or `"cosface"`.
        whisker: the fence factor $k \ge 0$ (official 1.5), `None` to keep every pair.
        gather: `"none"` or `"all"` (pairs over the batches of all ranks).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> y = torch.tensor([0, 1])
        >>> cos = torch.tensor([[0.5, 0.1], [0.2, 0.7]])
        >>> f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
        >>> F.unpg(cos, y, margin_type="cosface", margin=0.35, reduction="none")
        tensor([3.9953e-02, 6.6757e-05])
        >>> F.unpg(cos, y, margin_type="cosface", margin=0.35, embeddings=f, reduction="none")
        tensor([28.8000, 16.0000])
    """
    z, y = inp.logits, inp.index
    target_cos = _target_cos(z, y)
    if margin_type == "arcface":
        new = arcface_target(target_cos, margin, fallback=False)
    else:
        new = target_cos - margin
    per = _margin_ce(z, y, new, scale)
    count = torch.zeros((), dtype=torch.int64, device=z.device)
    if embeddings is not None:
        if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point():
            fail(
                "unpg",
                "embeddings",
                "a float tensor (N, D) or None",
                describe(embeddings),
                TypeError,
            )
        if z.dim() != 2 or embeddings.dim() != 2 or embeddings.shape[0] != z.shape[0]:
            fail(
                "unpg",
                "embeddings",
                f"shape ({z.shape[0]}, D) for (N, C) cosines",
                describe(embeddings),
            )
        f = normalize(embeddings.to(z.dtype))
        keep = torch.ones_like(y, dtype=torch.bool) if inp.mask is None else inp.mask
        labels = y
        if gather == "all":
            require_process_group("unpg")
            f = all_gather_with_grad(f)
            labels = all_gather_nograd(labels)
            keep = all_gather_nograd(keep)
        s = f @ f.T
        upper = torch.ones_like(s, dtype=torch.bool).triu(diagonal=1)
        pairs = upper & (labels[:, None] != labels[None, :]) & keep[:, None] & keep[None, :]
        kept = pairs if whisker is None else tukey_keep(s, pairs, whisker)
        count = kept.sum()
        extra = masked_logsumexp((scale * s).reshape(1, -1), kept.reshape(1, -1), dim=1)
        # log(e^lse + e^extra) - s new = per + softplus(extra - lse), lse = per + s new
        lse = per + scale * new.reshape(per.shape)
        per = torch.where(count > 0, per + torch.nn.functional.softplus(extra - lse), per)
    return KernelResult(per, None, {"negative_pairs": count})
