"""Multi-class hinge losses of Crammer-Singer and Weston-Watkins."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._validate import Choice, Real
from losslab.functional._fused import hinge_sum
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


@register(
    "cs_svm",
    family="hinge",
    module="CSSVMLoss",
    reference="Crammer, Singer. On the Algorithmic Implementation of Multiclass Kernel-based "
    "Vector Machines. JMLR 2001",
    properties={"shift_invariant": {}, "convex": {}},
    constraints={"margin": Real(0.0)},
    soft_targets=False,
    test_configs=({"margin": 0.1}, {"margin": 10.0}),
)
def cs_svm(inp: MulticlassInput, *, margin: float = 1.0) -> Tensor:
    r"""Crammer-Singer multi-class hinge loss.

    $$
    \ell(z, y) = \max_k \big(c\,\mathbb{1}[k \ne y] + z_k - z_y\big)
               = \big[\max_{k \ne y} (c + z_k - z_y)\big]_+
    $$

    Shift-invariant and convex, but *not* classification-calibrated: when no class has
    probability above 1/2 its expected-loss minimiser can tie all classes (Zhang 2004;
    Tewari & Bartlett 2007). It is the $\lambda \to 0$ limit of LDR-KL.

    Args:
        margin: $c \ge 0$; the classical margin 1.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.cs_svm(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0000, 0.9000])
    """
    # max over k != y of z_k, via max() with indices: its backward is one scatter, while
    # amax's compares every element against the maximum.
    idx = inp.index.unsqueeze(1)
    z = inp.logits
    z_y = z.gather(1, idx)
    others = z.scatter(1, idx, float("-inf")).max(dim=1, keepdim=True).values
    return torch.relu(others + margin - z_y).squeeze(1)


@register(
    "ww_svm",
    family="hinge",
    module="WWSVMLoss",
    reference="Weston, Watkins. Support Vector Machines for Multi-Class Pattern Recognition. "
    "ESANN 1999",
    properties={"shift_invariant": {}, "convex": {}},
    constraints={"margin": Real(0.0), "class_reduction": Choice(("sum", "mean"))},
    soft_targets=False,
    test_configs=({"margin": 0.1}, {"class_reduction": "mean"}),
)
def ww_svm(inp: MulticlassInput, *, margin: float = 1.0, class_reduction: str = "sum") -> Tensor:
    r"""Weston-Watkins multi-class hinge loss.

    $$
    \ell(z, y) = \sum_{k \ne y} \big[c + z_k - z_y\big]_+
    $$

    Shift-invariant and convex; not classification-calibrated.

    Args:
        margin: $c \ge 0$; the classical margin 1.
        class_reduction: `"sum"` over the classes (the definition) or `"mean"` (the sum
            divided by $C$, as the LDR benchmark code computes it).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.ww_svm(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0000, 1.7000])
    """
    # The target's own term is relu(c) = c exactly (c >= 0) and has zero gradient, so
    # summing over every class and subtracting c is the k != y sum without a scatter.
    per = hinge_sum(inp.logits, inp.index, float(margin)) - margin
    return per / inp.num_classes if class_reduction == "mean" else per
