"""The ``binary`` kind: one logit per element, for binary and multi-label problems.

Scores are ``(N,)`` for a binary problem or ``(N, L, *)`` for ``L`` labels; every entry is
an element with its own target. Targets have the scores' shape: ``{0, 1}`` (bool or
integer) or probabilities in ``[0, 1]`` (float). Conventions follow
``torch.nn.functional.binary_cross_entropy_with_logits``: ``pos_weight`` scales the
positive term and broadcasts against the scores (shape ``(L,)`` for labels on dim 1 of
``(N, L)``); ``weight`` broadcasts too. Unlike torch, ``"mean"`` divides by the sum of
the element weights (the library's one reduction rule), and ``ignore_index`` masks the
elements whose target equals it.

Per-loss rule: ``soft_targets`` (the loss accepts probability targets).
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
class BinaryInput:
    """Validated inputs of a binary / multi-label loss.

    Attributes:
        logits: float32 or float64 scores, element shape ``(N, *)``.
        target: float targets of the same shape, in ``[0, 1]`` (ignored entries are 0).
        pos_weight: weight of the positive term broadcast to the element shape, or
            ``None``.
        mask: bool valid (not ignored) elements, or ``None`` when all are valid.
        weight: per-element weight (``weight`` times ``sample_weight``, broadcast), or
            ``None``.
    """

    logits: Tensor
    target: Tensor
    pos_weight: Tensor | None
    mask: Tensor | None
    weight: Tensor | None

    @property
    def element_shape(self) -> torch.Size:
        return self.logits.shape


def _broadcast_to(loss: str, name: str, t: object, shape: torch.Size, what: str) -> Tensor:
    if not isinstance(t, Tensor) or not t.is_floating_point():
        fail(loss, name, f"a float tensor ({what})", describe(t), TypeError)
    try:
        fits = torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits:
        fail(loss, name, f"a shape that broadcasts to {tuple(shape)} ({what})", describe(t))
    return t


def prepare(
    loss: str,
    rules: dict[str, object],
    logits: object,
    target: object,
    *,
    pos_weight: Tensor | None = None,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> BinaryInput:
    """The validation stage of the binary kind."""
    check_reduction(loss, reduction)
    x = check_float_tensor(loss, "logits", logits, "one logit per element")
    if x.dim() < 1:
        fail(loss, "logits", "shape (N,) or (N, L, ...)", describe(x))
    shape = x.shape
    if not isinstance(target, Tensor):
        fail(loss, "target", "a torch.Tensor", describe(target), TypeError)
    check_same_device(loss, "target", target, x, "logits")
    if target.shape != shape:
        fail(loss, "target", f"the logits' shape {tuple(shape)}", describe(target))
    if target.is_floating_point():
        if not rules["soft_targets"]:
            fail(
                loss,
                "target",
                "0/1 labels (bool or integer); this loss does not accept probability targets",
                describe(target),
            )
    elif target.is_complex():
        fail(loss, "target", "0/1 labels or float probabilities", describe(target), TypeError)
    check_ignore_index(loss, ignore_index)
    if pos_weight is not None:
        _broadcast_to(loss, "pos_weight", pos_weight, shape, "weights of the positive term")
    if weight is not None:
        _broadcast_to(loss, "weight", weight, shape, "element weights")
    if sample_weight is not None:
        check_sample_or_element_weight(loss, sample_weight, shape[0], shape, "sample")

    mask: Tensor | None = None
    if ignore_index is not None:
        mask = target != ignore_index
    cdtype = compute_dtype(x.dtype)
    t = target.to(cdtype)
    if value_checks_enabled(validate):
        check_finite(loss, "logits", x)
        # The range is checked on the converted targets (one pass over the narrower
        # dtype): integer labels in [0, 1] are 0 or 1, and a NaN fails the check.
        checked = t if mask is None else t[mask]
        lo, hi = torch.aminmax(checked) if checked.numel() else (checked.new_zeros(()),) * 2
        if not (bool(lo >= 0) and bool(hi <= 1)):
            valid = target if mask is None else target[mask]
            bad = valid[~((valid >= 0) & (valid <= 1))]
            expected = "probabilities in [0, 1]" if target.is_floating_point() else "labels 0 or 1"
            extra = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
            fail(loss, "target", expected + extra, f"a value {bad.flatten()[0].item()!r}")
        for name, given in (
            ("pos_weight", pos_weight),
            ("weight", weight),
            ("sample_weight", sample_weight),
        ):
            if given is not None:
                check_weights(loss, name, given)

    if mask is not None:
        t = torch.where(mask, t, 0.0)
    w: Tensor | None = None
    if weight is not None:
        w = weight.to(cdtype).expand(shape)
    if sample_weight is not None:
        sw = sample_weight.to(cdtype)
        sw = sw.reshape(sw.shape + (1,) * (len(shape) - sw.dim()))
        w = sw.expand(shape) if w is None else w * sw
    pw = None if pos_weight is None else pos_weight.to(cdtype).expand(shape)
    return BinaryInput(x.to(cdtype), t, pw, mask, w)


BINARY = define_kind(
    Kind(
        name="binary",
        description="one logit per element, `(N,)` or `(N, L, *)` (multi-label), with 0/1 "
        "or probability targets of the same shape",
        inputs=(
            Param("logits", "Tensor", "scores `(N,)` or `(N, L, ...)`, one logit per element."),
            Param(
                "target",
                "Tensor",
                "labels of the logits' shape: 0/1 (bool or integer) or probabilities in "
                "[0, 1] (float) where the loss accepts them.",
            ),
        ),
        options=(
            Param(
                "pos_weight",
                "Tensor | None",
                "weight of the positive term, broadcast against the logits (e.g. `(L,)` "
                "per label).",
                None,
            ),
            Param(
                "weight",
                "Tensor | None",
                "element weights broadcast against the logits (e.g. `(L,)` per label).",
                None,
            ),
            Param(
                "sample_weight",
                "Tensor | None",
                "per-sample `(N,)` or per-element weights.",
                None,
            ),
            ignore_index_param(),
            REDUCTION_PARAM,
            validate_param("label range, non-finite logits, negative weights"),
        ),
        per_call=("sample_weight",),
        rules={"soft_targets": True},
        prepare=prepare,
        returns="The loss: a scalar, or per-element values of the logits' shape for "
        '`reduction="none"`; float32 for half-precision logits.',
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> logits = torch.tensor([[2.0, -0.5], [0.1, 1.5]])\n"
            ">>> loss_fn(logits, torch.tensor([[1, 0], [0, 1]]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["BINARY", "BinaryInput", "prepare"]
