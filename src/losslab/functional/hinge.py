"""Multi-class hinge losses of Crammer-Singer and Weston-Watkins."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import Real
from losslab.functional._common import prepare
from losslab.registry import register


@register(
    "cs_svm",
    family="hinge",
    reference="Crammer, Singer. On the Algorithmic Implementation of Multiclass Kernel-based "
    "Vector Machines. JMLR 2001",
    formula=r"\ell(z, y) = \max_k \big(c\,\mathbb{1}[k \ne y] + z_k - z_y\big)",
    properties={"shift_invariant": {}, "convex": {}},
    constraints={"margin": Real(0.0)},
    soft_targets=False,
    test_configs=({"margin": 0.1}, {"margin": 10.0}),
)
def cs_svm(
    logits: Tensor,
    target: Tensor,
    *,
    margin: float = 1.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Crammer-Singer multi-class hinge loss.

    .. math::
        \ell(z, y) = \max_k \big(c\,\mathbb{1}[k \ne y] + z_k - z_y\big)
                   = \big[\max_{k \ne y} (c + z_k - z_y)\big]_+

    Args:
        margin: ``c >= 0``; default 1 (the classical margin; the LDR benchmark grid is
            {0.1, 1, 10}).

    Properties: shift-invariant and convex. It is *not* classification-calibrated: when
    no class has probability above 1/2 its expected-loss minimiser can tie all classes
    (Zhang 2004; Tewari & Bartlett 2007). It is the ``lambda -> 0`` limit of LDR-KL.

    Reference: Crammer & Singer, JMLR 2001.
    """
    inp = prepare(
        cs_svm,
        logits,
        target,
        {"margin": margin},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    # max over k != y of z_k, via max() with indices: its backward is one scatter, while
    # amax's compares every element against the maximum.
    idx = inp.index.unsqueeze(1)
    z = inp.logits
    z_y = z.gather(1, idx)
    others = z.scatter(1, idx, float("-inf")).max(dim=1, keepdim=True).values
    per = torch.relu(others + margin - z_y).squeeze(1)
    return reduce_input(per, inp, reduction)


@register(
    "ww_svm",
    family="hinge",
    reference="Weston, Watkins. Support Vector Machines for Multi-Class Pattern Recognition. "
    "ESANN 1999",
    formula=r"\ell(z, y) = \sum_{k \ne y} \big[c + z_k - z_y\big]_+",
    properties={"shift_invariant": {}, "convex": {}},
    constraints={"margin": Real(0.0)},
    soft_targets=False,
    test_configs=({"margin": 0.1},),
)
def ww_svm(
    logits: Tensor,
    target: Tensor,
    *,
    margin: float = 1.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Weston-Watkins multi-class hinge loss.

    .. math:: \ell(z, y) = \sum_{k \ne y} \big[c + z_k - z_y\big]_+

    The LDR benchmark code divides this sum by ``C`` (it averages over classes); here
    the class axis is summed, as in the original definition.

    Properties: shift-invariant and convex; not classification-calibrated.

    Reference: Weston & Watkins, ESANN 1999.
    """
    inp = prepare(
        ww_svm,
        logits,
        target,
        {"margin": margin},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    z_y = inp.logits.gather(1, inp.index.unsqueeze(1))
    # The target's own term is relu(c) = c exactly (c >= 0) and has zero gradient, so
    # summing over every class and subtracting c is the k != y sum without a scatter.
    per = torch.relu(inp.logits - (z_y - margin)).sum(dim=1) - margin
    return reduce_input(per, inp, reduction)
