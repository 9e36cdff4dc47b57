"""The ``regression`` kind: real-valued predictions and targets of the same shape.

``pred`` is ``(N,)`` or ``(N, D, *)`` (``D`` outputs per sample); every entry is an element
with its own real target. ``ignore_index`` masks the elements whose target equals it (a
integer sentinel such as ``-100``; a NaN target is an error, not a mask). ``sample_weight`` is
per sample ``(N,)`` or per element. The reduction is the library's one rule over the
elements.

No per-loss rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losslab._validate import (
    check_finite,
    check_float_tensor,
    check_ignore_index,
    check_reduction,
    check_same_device,
    check_sample_or_element_weight,
    check_weights,
    compute_dtype,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.kinds import (
    REDUCTION_PARAM,
    Kind,
    Param,
    define_kind,
    ignore_index_param,
    validate_param,
)


@dataclass
class RegressionInput:
    """Validated inputs of a regression loss.

    Attributes:
        pred: float32 or float64 predictions, element shape ``(N, *)``.
        target: targets of the same shape and dtype (ignored entries are 0).
        mask: bool valid (not ignored) elements, or ``None`` when all are valid.
        weight: per-element weight (``sample_weight`` broadcast), or ``None``.
    """

    pred: Tensor
    target: Tensor
    mask: Tensor | None
    weight: Tensor | None

    @property
    def element_shape(self) -> torch.Size:
        return self.pred.shape


def prepare(
    loss: str,
    rules: dict[str, object],
    pred: object,
    target: object,
    *,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> RegressionInput:
    """The validation stage of the regression kind."""
    check_reduction(loss, reduction)
    x = check_float_tensor(loss, "pred", pred, "real-valued predictions")
    if x.dim() < 1 or 0 in x.shape[1:]:
        fail(loss, "pred", "shape (N,) or (N, D, ...) with non-empty output dims", describe(x))
    shape = x.shape
    if not isinstance(target, Tensor):
        fail(loss, "target", "a torch.Tensor", describe(target), TypeError)
    check_same_device(loss, "target", target, x, "pred")
    if not target.is_floating_point():
        fail(loss, "target", "a floating-point tensor of real targets", describe(target), TypeError)
    if target.shape != shape:
        fail(loss, "target", f"the predictions' shape {tuple(shape)}", describe(target))
    check_ignore_index(loss, ignore_index)
    if sample_weight is not None:
        check_sample_or_element_weight(loss, sample_weight, shape[0], shape, "sample")

    mask: Tensor | None = None
    if ignore_index is not None:
        mask = target != ignore_index
    if value_checks_enabled(validate):
        check_finite(loss, "pred", x)
        kept = target if mask is None else target[mask]
        check_finite(loss, "target", kept)
        if sample_weight is not None:
            check_weights(loss, "sample_weight", sample_weight)

    cdtype = compute_dtype(x.dtype)
    t = target.to(cdtype)
    if mask is not None:
        t = torch.where(mask, t, 0.0)
    w: Tensor | None = None
    if sample_weight is not None:
        sw = sample_weight.to(cdtype)
        w = sw.reshape(sw.shape + (1,) * (len(shape) - sw.dim())).expand(shape)
    return RegressionInput(x.to(cdtype), t, mask, w)


REGRESSION = define_kind(
    Kind(
        name="regression",
        description="real predictions `(N,)` or `(N, D, *)` with real targets of the same shape",
        inputs=(
            Param("pred", "Tensor", "predictions `(N,)` or `(N, D, ...)`, one value per element."),
            Param("target", "Tensor", "real targets of the predictions' shape (float)."),
        ),
        options=(
            Param(
                "sample_weight",
                "Tensor | None",
                "per-sample `(N,)` or per-element weights.",
                None,
            ),
            ignore_index_param(
                "elements whose target equals it (an integer sentinel such as -100) are masked out."
            ),
            REDUCTION_PARAM,
            validate_param("non-finite predictions or targets, negative weights"),
        ),
        per_call=("sample_weight",),
        rules={},
        prepare=prepare,
        returns="The loss: a scalar, or per-element values of the predictions' shape for "
        '`reduction="none"`; float32 for half-precision predictions.',
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> pred = torch.tensor([[0.5], [1.5], [2.0]])\n"
            ">>> loss_fn(pred, torch.tensor([[0.0], [2.0], [2.5]]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["REGRESSION", "RegressionInput", "prepare"]
