"""The ``distillation`` kind: student logits, teacher logits or probabilities, an
optional hard target.

``student`` and ``teacher`` are ``(N, C, *)`` with the class axis on dim 1; the teacher is
given as logits (``teacher_format="logits"``) or probabilities (``"probs"``, rows summing
to 1), and reaches the kernel as log-probabilities-or-logits (``log p`` is a valid set of
logits: ``softmax(log p / T) = p^(1/T) / sum``). ``target`` holds int64 class indices
``(N, *)`` for losses with a hard-label term; ``ignore_index`` masks elements by it.
Elements are the ``(N, *)`` positions; the reduction is the library's one rule.

Per-loss rule: ``needs_target`` (whether the loss uses ``target``; may depend on the
hyperparameters, e.g. a cross-entropy weight above 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losslab._validate import (
    Choice,
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
from losslab.kinds.multiclass import INDEX_DTYPES

TEACHER_FORMATS = ("logits", "probs")


@dataclass
class DistillationInput:
    """Validated inputs of a distillation loss.

    Attributes:
        student: float32/float64 student logits ``(N, C, *)``.
        teacher: teacher logits, or the log of its probabilities, same shape and dtype.
        index: int64 hard targets ``(N, *)`` (ignored entries clamped to 0), or ``None``.
        mask: bool valid elements ``(N, *)``, or ``None``.
        weight: float per-element weights ``(N, *)``, or ``None``.
        num_classes: the size of the class axis.
    """

    student: Tensor
    teacher: Tensor
    index: Tensor | None
    mask: Tensor | None
    weight: Tensor | None
    num_classes: int

    @property
    def element_shape(self) -> torch.Size:
        return self.student.shape[:1] + self.student.shape[2:]


def prepare(
    loss: str,
    rules: dict[str, object],
    student: object,
    teacher: object,
    target: object = None,
    *,
    teacher_format: str = "logits",
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> DistillationInput:
    """The validation stage of the distillation kind."""
    check_reduction(loss, reduction)
    Choice(TEACHER_FORMATS).check(loss, "teacher_format", teacher_format)
    s = check_float_tensor(loss, "student", student, "student logits")
    if s.dim() < 2:
        fail(loss, "student", "shape (N, C) or (N, C, d1, ...)", describe(s))
    t = check_float_tensor(loss, "teacher", teacher, f"teacher {teacher_format}")
    if t.shape != s.shape:
        fail(loss, "teacher", f"the student's shape {tuple(s.shape)}", describe(t))
    check_same_device(loss, "teacher", t, s, "student")
    element_shape = s.shape[:1] + s.shape[2:]
    num_classes = s.shape[1]
    if num_classes < 1:
        fail(loss, "student", "at least 1 class on dim 1", describe(s))
    index: Tensor | None = None
    if target is None:
        if rules["needs_target"]:
            fail(
                loss,
                "target",
                "class indices (int64) for this configuration's hard-label term",
                None,
                TypeError,
            )
    else:
        if not isinstance(target, Tensor) or target.dtype not in INDEX_DTYPES:
            fail(loss, "target", "int64 class indices or None", describe(target), TypeError)
        check_same_device(loss, "target", target, s, "student")
        if target.shape != element_shape:
            fail(loss, "target", f"class indices of shape {tuple(element_shape)}", describe(target))
        index = target.long()
    check_ignore_index(loss, ignore_index)
    mask: Tensor | None = None
    if ignore_index is not None and index is not None:
        mask = index != ignore_index
        index = torch.where(mask, index, 0)
    if sample_weight is not None:
        check_per_sample(loss, "sample_weight", sample_weight, element_shape)

    if value_checks_enabled(validate):
        check_finite(loss, "student", s)
        if teacher_format == "logits":
            check_finite(loss, "teacher", t)
        else:
            if not bool(((t >= 0) & (t <= 1)).all()):
                fail(loss, "teacher", "probabilities in [0, 1]", "values outside [0, 1] or NaN")
            dev = (t.sum(dim=1) - 1).abs()
            tol = 1e-3 if t.dtype != torch.float64 else 1e-6
            if bool((dev > tol).any()):
                fail(
                    loss,
                    "teacher",
                    "probabilities that sum to 1 over the class axis (dim 1)",
                    f"a row summing to {float(t.sum(dim=1).flatten()[dev.flatten().argmax()]):.6g}",
                )
        if index is not None:
            raw = target.long()  # type: ignore[union-attr]
            out = (raw < 0) | (raw >= num_classes)
            if ignore_index is not None:
                out &= raw != ignore_index
            if bool(out.any()):
                fail(
                    loss,
                    "target",
                    f"class indices in [0, {num_classes - 1}]",
                    f"class {int(raw[out][0])}",
                )
        if sample_weight is not None:
            check_weights(loss, "sample_weight", sample_weight)

    cdtype = compute_dtype(s.dtype)
    tt = t.to(cdtype)
    if teacher_format == "probs":
        tt = tt.log()
    w = None if sample_weight is None else sample_weight.to(cdtype)
    return DistillationInput(s.to(cdtype), tt, index, mask, w, num_classes)


DISTILLATION = define_kind(
    Kind(
        name="distillation",
        description="student logits `(N, C, *)`, teacher logits or probabilities of the "
        "same shape, optional int64 hard targets `(N, *)`",
        inputs=(
            Param("student", "Tensor", "student logits `(N, C)` or `(N, C, d1, ...)`."),
            Param(
                "teacher",
                "Tensor",
                "teacher logits (or probabilities, see `teacher_format`) of the student's "
                "shape; no gradient flows to it unless it requires one.",
            ),
            Param(
                "target",
                "Tensor | None",
                "int64 hard class indices `(N, ...)`, required when the loss has a "
                "hard-label term.",
                None,
            ),
        ),
        options=(
            Param(
                "teacher_format",
                "str",
                '`"logits"` or `"probs"` (rows summing to 1 over dim 1).',
                "logits",
            ),
            Param("sample_weight", "Tensor | None", "per-element weights `(N, ...)`.", None),
            ignore_index_param(),
            REDUCTION_PARAM,
            validate_param("non-finite logits, probability rows, class range, negative weights"),
        ),
        per_call=("sample_weight",),
        rules={"needs_target": False},
        prepare=prepare,
        returns="The loss: a scalar, or per-element values `(N, ...)` for "
        '`reduction="none"`; float32 for half-precision logits.',
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])\n"
            ">>> teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 0.0, 2.0]])\n"
            ">>> loss_fn(student, teacher, torch.tensor([0, 2]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["DISTILLATION", "TEACHER_FORMATS", "DistillationInput", "prepare"]
