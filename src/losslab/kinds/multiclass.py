"""The ``multiclass`` kind: logits ``(N, C, *)`` with class indices or probabilities.

Target dispatch uses shape *and* dtype: an integer tensor of shape ``(N, *)`` holds class
indices; a float tensor with the logits' exact shape holds probabilities. Anything else
raises. ``ignore_index`` applies to index targets only (as in
``torch.nn.functional.cross_entropy``); soft targets are masked with ``sample_weight=0``.

Per-loss rules: ``soft_targets`` (the loss accepts probabilities), ``neg_inf_ok`` (a
``-inf`` logit masks a class; otherwise the loss is undefined and ``-inf`` raises),
``min_classes`` (the fewest classes the loss is defined for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from losslab._validate import (
    check_finite,
    check_float_tensor,
    check_ignore_index,
    check_per_sample,
    check_reduction,
    check_same_device,
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

INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


@dataclass
class MulticlassInput:
    """Validated, normalised inputs of a multi-class loss.

    Attributes:
        logits: float32 or float64 logits ``(N, C, *)`` (half precision is upcast).
        index: int64 ``(N, *)`` target class; ignored entries are clamped to 0 so that
            ``gather`` is always in range (their loss is masked out by the reduction).
            For soft targets it is the argmax class.
        soft: float ``(N, C, *)`` target probabilities, or ``None`` for index targets.
        mask: bool ``(N, *)`` valid (not ignored) elements, or ``None`` when all are valid.
        weight: float ``(N, *)`` per-element weight (class weight of the target times the
            sample weight), or ``None`` when unweighted.
        num_classes: the size of the class axis.
        input_dtype: the logits' dtype as given, in which their gradient is returned.
        memo: per-call values that a stateful loss's state update computes and its kernel
            reuses (e.g. LDR's normalisation statistics), so the two share their passes.
    """

    logits: Tensor
    index: Tensor
    soft: Tensor | None
    mask: Tensor | None
    weight: Tensor | None
    num_classes: int
    input_dtype: torch.dtype = torch.float32
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def element_shape(self) -> torch.Size:
        return self.index.shape

    def target_probs(self) -> Tensor:
        """Target as probabilities ``(N, C, *)``: the soft target or the one-hot of the index."""
        if self.soft is not None:
            return self.soft
        onehot = torch.nn.functional.one_hot(self.index, self.num_classes).to(self.logits.dtype)
        return onehot.movedim(-1, 1)

    def gather(self, per_class: Tensor) -> Tensor:
        """Value of ``per_class`` ``(N, C, *)`` at the target class -> ``(N, *)``.

        For soft targets this is the expectation over the target distribution,
        ``sum_k q_k per_class_k``, which is what makes index targets equal one-hot targets.
        """
        if self.soft is not None:
            # where() keeps 0 * inf (a masked class that the target gives no mass) at 0.
            terms = torch.where(self.soft > 0, self.soft * per_class, 0.0)
            return terms.sum(dim=1)
        return per_class.gather(1, self.index.unsqueeze(1)).squeeze(1)

    def target_value(self, per_class: object, source: Tensor) -> Tensor:
        """``phi(source)`` at the target class, for an elementwise callable ``phi``.

        Index targets gather ``source`` first and apply ``phi`` to ``N`` values only; soft
        targets apply ``phi`` to every class and take the expectation under the target.
        """
        assert callable(per_class)
        if self.soft is None:
            return per_class(source.gather(1, self.index.unsqueeze(1)).squeeze(1))
        return self.gather(per_class(source))


def check_logits(loss: str, logits: object) -> Tensor:
    x = check_float_tensor(loss, "logits", logits, "logits, not labels")
    if x.dim() < 2:
        fail(loss, "logits", "shape (N, C) or (N, C, d1, ...)", describe(x))
    return x


def prepare(
    loss: str,
    rules: dict[str, object],
    logits: object,
    target: object,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> MulticlassInput:
    """The validation stage of the multiclass kind."""
    check_reduction(loss, reduction)
    z_raw = check_logits(loss, logits)
    num_classes = z_raw.shape[1]
    min_classes = int(rules["min_classes"])  # type: ignore[call-overload]
    if num_classes < max(min_classes, 1):
        fail(loss, "logits", f"at least {max(min_classes, 1)} classes on dim 1", describe(z_raw))
    if not isinstance(target, Tensor):
        fail(loss, "target", "a torch.Tensor", describe(target), TypeError)
    check_same_device(loss, "target", target, z_raw, "logits")
    index_shape = z_raw.shape[:1] + z_raw.shape[2:]
    cdtype = compute_dtype(z_raw.dtype)
    z = z_raw.to(cdtype)

    soft: Tensor | None = None
    if target.is_floating_point():
        if target.shape != z_raw.shape:
            fail(
                loss,
                "target",
                f"probabilities of the logits' shape {tuple(z_raw.shape)} (float) or class "
                f"indices of shape {tuple(index_shape)} (int64)",
                describe(target),
            )
        if not rules["soft_targets"]:
            fail(
                loss,
                "target",
                "class indices (int64); this loss does not accept soft (probability) targets",
                describe(target),
            )
        soft = target.to(cdtype)
        index = soft.argmax(dim=1)
    elif target.dtype in INDEX_DTYPES:
        if target.shape != index_shape:
            fail(
                loss,
                "target",
                f"class indices of shape {tuple(index_shape)} for logits of "
                f"shape {tuple(z_raw.shape)}",
                describe(target),
            )
        index = target.long()
    else:
        fail(
            loss,
            "target",
            "int64 class indices or float probabilities",
            describe(target),
            TypeError,
        )

    check_ignore_index(loss, ignore_index)
    mask: Tensor | None = None
    if soft is None and ignore_index is not None:
        mask = index != ignore_index
        index = torch.where(mask, index, 0)

    if weight is not None:
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            fail(
                loss,
                "weight",
                "a 1-D float tensor of per-class weights",
                describe(weight),
                TypeError,
            )
        if weight.shape != (num_classes,):
            fail(loss, "weight", f"shape ({num_classes},), one weight per class", describe(weight))
    if sample_weight is not None:
        check_per_sample(loss, "sample_weight", sample_weight, index_shape)

    if value_checks_enabled(validate):
        _check_values(loss, rules, z_raw, target, index, soft, mask, ignore_index)
        for name, t in (("weight", weight), ("sample_weight", sample_weight)):
            if t is not None:
                check_weights(loss, name, t)

    w: Tensor | None = None
    if weight is not None:
        wc = weight.to(cdtype)
        if soft is not None:
            shape = (1, num_classes) + (1,) * (soft.dim() - 2)
            w = (soft * wc.view(shape)).sum(dim=1)
        else:
            w = wc[index]
    if sample_weight is not None:
        sw = sample_weight.to(cdtype)
        w = sw if w is None else w * sw
    return MulticlassInput(z, index, soft, mask, w, num_classes, z_raw.dtype)


def _check_values(
    loss: str,
    rules: dict[str, object],
    logits: Tensor,
    target: Tensor,
    index: Tensor,
    soft: Tensor | None,
    mask: Tensor | None,
    ignore_index: int | None,
) -> None:
    neg_inf_ok = bool(rules["neg_inf_ok"])
    all_finite = check_finite(
        loss, "logits", logits, neg_inf="to mask a class" if neg_inf_ok else None
    )
    num_classes = logits.shape[1]
    if soft is None:
        if not all_finite:
            at_target = torch.isneginf(logits.gather(1, index.unsqueeze(1)).squeeze(1))
            if mask is not None:
                at_target = at_target & mask
            if bool(at_target.any()):
                fail(loss, "logits", "a finite logit at the target class", "-inf at the target")
        raw = target.long()
        out = (raw < 0) | (raw >= num_classes)
        if ignore_index is not None:
            out &= raw != ignore_index
        if bool(out.any()):
            bad = int(raw[out][0])
            extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
            raise ValueError(
                f"{loss}: target contains class {bad}{extra} but logits have {num_classes} classes "
                f"(expected class indices in [0, {num_classes - 1}])"
            )
        return
    if not bool((soft >= 0).all()) or not bool(torch.isfinite(soft).all()):
        fail(loss, "target", "probabilities (finite, >= 0)", "negative or non-finite values")
    sums = soft.sum(dim=1)
    tol = 1e-3 if soft.dtype == torch.float32 else 1e-6
    dev = (sums - 1).abs()
    if bool((dev > tol).any()):
        worst = float(sums.flatten()[dev.flatten().argmax()])
        fail(
            loss,
            "target",
            "probabilities that sum to 1 over the class axis (dim 1)",
            f"a row summing to {worst:.6g}",
        )


MULTICLASS = define_kind(
    Kind(
        name="multiclass",
        description="logits `(N, C, *)` with int64 class indices `(N, *)` or probabilities "
        "of the logits' shape",
        inputs=(
            Param("logits", "Tensor", "`(N, C)` or `(N, C, d1, ...)` logits, class axis 1."),
            Param(
                "target",
                "Tensor",
                "int64 class indices `(N, ...)`, or float probabilities of the logits' "
                "shape (soft labels) where the loss accepts them.",
            ),
        ),
        options=(
            Param("weight", "Tensor | None", "per-class weights `(C,)`.", None),
            Param("sample_weight", "Tensor | None", "per-element weights `(N, ...)`.", None),
            ignore_index_param("index targets equal to it are masked out."),
            REDUCTION_PARAM,
            validate_param("class range, non-finite logits, negative weights"),
        ),
        per_call=("sample_weight",),
        rules={"soft_targets": True, "neg_inf_ok": True, "min_classes": 1},
        prepare=prepare,
        returns="The loss: a scalar, or per-element values `(N, ...)` for "
        '`reduction="none"`; float32 for half-precision logits.',
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])\n"
            ">>> loss_fn(logits, torch.tensor([0, 2]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["MULTICLASS", "MulticlassInput", "check_logits", "prepare"]
