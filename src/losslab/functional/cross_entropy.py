"""Cross-entropy and focal loss."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._validate import Real, RealOrClassVector
from losslab.functional._common import one_minus_exp
from losslab.functional._fused import TargetLogProb
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


@register(
    "ce",
    family="cross_entropy",
    module="CELoss",
    reference="Standard multinomial logistic loss; label smoothing: Szegedy et al., "
    "CVPR 2016, arXiv:1512.00567",
    properties={
        "shift_invariant": {},
        "convex": {},
        "classification_calibrated": {},
        "reduces_to_ce": {},
    },
    constraints={"label_smoothing": Real(0.0, 1.0)},
    test_configs=({"label_smoothing": 0.1},),
)
def ce(inp: MulticlassInput, *, label_smoothing: float = 0.0) -> Tensor:
    r"""Cross-entropy with index or soft targets and label smoothing.

    $$
    \ell(z, q) = -\sum_k \tilde q_k \log p_k,\qquad p = \mathrm{softmax}(z),\quad
    \tilde q = (1 - \varepsilon)\, q + \varepsilon / C
    $$

    with $q$ the one-hot of an index target or the given probabilities. Equals
    `torch.nn.functional.cross_entropy` for index targets (with `weight` and
    `ignore_index` too, when $\varepsilon = 0$). With class weights, soft targets use the
    expected class weight $\sum_k w_k q_k$ as the element weight, so index targets equal
    their one-hot encoding under every reduction.

    Args:
        label_smoothing: $\varepsilon \in [0, 1]$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.ce(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2413, 1.0019])
        >>> F.ce(logits, torch.tensor([0, 2]), label_smoothing=0.1)
        tensor(0.7016)
    """
    logp = TargetLogProb(inp, with_sum=label_smoothing > 0)
    nll = -logp.value(lambda v: v)
    if logp.row_sum is not None:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.row_sum / inp.num_classes
    return nll


@register(
    "focal",
    family="cross_entropy",
    module="FocalLoss",
    reference="Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. "
    "ICCV 2017, arXiv:1708.02002; calibration of the multi-class form: Charoenphakdee, "
    "Vongkulbhisal, Chairatanakul, Sugiyama, ICML 2021, arXiv:2011.09172",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "reduces_to_ce": {"gamma": 0.0},
    },
    constraints={"gamma": Real(0.0), "alpha": RealOrClassVector(Real(0.0))},
    test_configs=({"gamma": 0.5}, {"gamma": 2.0, "alpha": 0.25}),
)
def focal(
    inp: MulticlassInput, *, gamma: float = 2.0, alpha: float | Tensor | None = None
) -> Tensor:
    r"""Multi-class (softmax) focal loss.

    $$
    \ell(z, y) = -\alpha_y\,(1 - p_y)^{\gamma}\,\log p_y,\qquad p = \mathrm{softmax}(z)
    $$

    Soft targets take the expectation $\sum_k q_k \ell(z, k)$. $1 - p$ is computed as
    $-\mathrm{expm1}(\log p)$, as precise as $\log p$ (near $p = 1$ the float's
    absolute resolution, 6e-8 in float32: the softmax normaliser rounds to 1 before its
    log is taken) and floored at the smallest normal number. Not convex for
    $\gamma > 0$; $\gamma = 0$ gives cross-entropy.

    Args:
        gamma: focusing parameter $\gamma \ge 0$ (the paper's 2).
        alpha: `None` (no balancing, the multi-class default), a float scaling every
            class, or per-class values `(C,)` giving $\alpha_y$. (The paper's
            $\alpha = 0.25$ belongs to its binary form, `binary_focal`.)

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.focal(logits, torch.tensor([0, 2]), gamma=2.0, reduction="none")
        tensor([0.0111, 0.4013])
    """

    def per_class(lp: Tensor) -> Tensor:
        return -(one_minus_exp(lp) ** gamma) * lp if gamma != 0 else -lp

    logp = TargetLogProb(inp)
    per = logp.value(per_class)
    if isinstance(alpha, (Tensor, list, tuple)):
        a = torch.as_tensor(alpha, dtype=per.dtype, device=per.device)
        if a.shape != (inp.num_classes,):
            raise ValueError(
                f"focal: alpha expected shape ({inp.num_classes},), one value per "
                f"class, got shape {tuple(a.shape)}"
            )
        if inp.soft is None:
            return per * a[inp.index]
        shape = (1, -1) + (1,) * (inp.soft.dim() - 2)
        assert logp.full is not None
        return inp.gather(per_class(logp.full) * a.view(shape))
    if alpha is not None:
        return per * alpha
    return per


@register(
    "poly1",
    family="cross_entropy",
    module="Poly1Loss",
    reference="Leng, Tan, Liu, Cubuk, Shi, Cheng, Anguelov. PolyLoss: A Polynomial Expansion "
    "Perspective of Classification Loss Functions. ICLR 2022, arXiv:2204.12511",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "reduces_to_ce": {"epsilon": 0.0},
    },
    constraints={"epsilon": Real(-1.0)},
    test_configs=({"epsilon": -1.0}, {"epsilon": 5.0}),
)
def poly1(inp: MulticlassInput, *, epsilon: float = 1.0) -> Tensor:
    r"""Poly-1 loss: cross-entropy plus $\epsilon$ times the first polynomial term.

    $$
    \ell(z, q) = -\sum_k q_k \log p_k + \epsilon \Big(1 - \sum_k q_k p_k\Big),
    \qquad p = \mathrm{softmax}(z)
    $$

    For an index target, $\mathrm{CE} + \epsilon\,(1 - p_y)$: the leading term of CE's
    expansion $\sum_j (1 - p_y)^j / j$ gets weight $1 + \epsilon$. $\epsilon \ge -1$ keeps
    the loss non-negative; $\epsilon = 0$ is cross-entropy.

    Args:
        epsilon: weight $\epsilon \ge -1$ of $1 - p_y$; the paper's 1.0.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.poly1(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.4557, 1.6348])
    """
    return TargetLogProb(inp).value(lambda lp: -lp + epsilon * one_minus_exp(lp))
