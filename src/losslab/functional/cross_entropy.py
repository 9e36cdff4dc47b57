"""Cross-entropy and focal loss."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._reduce import reduce_input
from losslab._validate import Real, RealOrClassVector
from losslab.functional._common import one_minus_exp, prepare, target_value
from losslab.registry import register


@register(
    "ce",
    family="cross_entropy",
    reference="Standard multinomial logistic loss; label smoothing: Szegedy et al., "
    "CVPR 2016, arXiv:1512.00567",
    formula=r"\ell(z, q) = -\sum_k \tilde q_k \log \mathrm{softmax}(z)_k,\quad "
    r"\tilde q = (1-\varepsilon) q + \varepsilon / C",
    properties={
        "shift_invariant": {},
        "convex": {},
        "classification_calibrated": {},
        "reduces_to_ce": {},
    },
    constraints={"label_smoothing": Real(0.0, 1.0)},
    test_configs=({"label_smoothing": 0.1},),
)
def ce(
    logits: Tensor,
    target: Tensor,
    *,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Cross-entropy with index or soft targets and label smoothing.

    .. math::
        \ell(z, q) = -\sum_k \tilde q_k \log p_k,\qquad p = \mathrm{softmax}(z),\quad
        \tilde q = (1 - \varepsilon)\, q + \varepsilon / C

    with ``q`` the one-hot of an index target or the given probabilities.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` logits.
        target: int64 class indices ``(N, ...)`` or float probabilities of the logits' shape.
        label_smoothing: ``epsilon`` in [0, 1]; default 0.
        weight, sample_weight, ignore_index, reduction, validate: see the call contract.

    Properties: shift-invariant, convex, classification-calibrated; equals
    :func:`torch.nn.functional.cross_entropy` for index targets (with ``weight`` and
    ``ignore_index`` too, when ``label_smoothing == 0``).

    Note: with class weights, soft targets use the expected class weight
    ``sum_k w_k q_k`` as the element weight, so index targets equal their one-hot
    encoding under every reduction (torch instead weights each class term and divides
    the mean by ``N``).

    Reference: label smoothing, Szegedy et al., CVPR 2016, arXiv:1512.00567.
    """
    inp = prepare(
        ce,
        logits,
        target,
        {"label_smoothing": label_smoothing},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)
    nll = -target_value(inp, lambda v: v, logp)
    if label_smoothing > 0:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(dim=1)
    return reduce_input(nll, inp, reduction)


@register(
    "focal",
    family="cross_entropy",
    reference="Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. "
    "ICCV 2017, arXiv:1708.02002; calibration of the multi-class form: Charoenphakdee, "
    "Vongkulbhisal, Chairatanakul, Sugiyama, ICML 2021, arXiv:2011.09172",
    formula=r"\ell(z, y) = -\alpha_y (1 - p_y)^{\gamma} \log p_y",
    properties={
        "shift_invariant": {},
        "classification_calibrated": {},
        "reduces_to_ce": {"gamma": 0.0},
    },
    constraints={"gamma": Real(0.0), "alpha": RealOrClassVector(Real(0.0))},
    test_configs=({"gamma": 0.5}, {"gamma": 2.0, "alpha": 0.25}),
)
def focal(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""Multi-class (softmax) focal loss.

    .. math::
        \ell(z, y) = -\alpha_y\,(1 - p_y)^{\gamma}\,\log p_y,\qquad p = \mathrm{softmax}(z)

    Soft targets take the expectation ``sum_k q_k l(z, k)``.

    Args:
        gamma: focusing parameter >= 0 (default 2, the paper's choice); 0 gives CE.
        alpha: ``None`` (no balancing, the multi-class default), a float scaling every
            class, or a per-class ``(C,)`` tensor ``alpha_y``. (The paper's alpha = 0.25
            is for its binary sigmoid form.)

    Properties: shift-invariant, classification-calibrated (Charoenphakdee et al. 2021);
    reduces to CE at ``gamma = 0``. Not convex for ``gamma > 0``.

    ``1 - p`` is computed as ``-expm1(log p)``: exact for confident predictions where
    ``1 - exp(log p)`` would cancel to 0.

    Reference: Lin et al., ICCV 2017, arXiv:1708.02002.
    """
    inp = prepare(
        focal,
        logits,
        target,
        {"gamma": gamma, "alpha": alpha},
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
    )
    logp = torch.log_softmax(inp.logits, dim=1)

    def per_class(lp: Tensor) -> Tensor:
        return -(one_minus_exp(lp) ** gamma) * lp if gamma != 0 else -lp

    per = target_value(inp, per_class, logp)
    if isinstance(alpha, (Tensor, list, tuple)):
        a = torch.as_tensor(alpha, dtype=per.dtype, device=per.device)
        if a.shape != (inp.num_classes,):
            raise ValueError(
                f"focal: alpha expected shape ({inp.num_classes},), one value per "
                f"class, got shape {tuple(a.shape)}"
            )
        if inp.soft is None:
            per = per * a[inp.index]
        else:
            shape = (1, -1) + (1,) * (inp.soft.dim() - 2)
            per = inp.gather(per_class(logp) * a.view(shape))
    elif alpha is not None:
        per = per * alpha
    return reduce_input(per, inp, reduction)
