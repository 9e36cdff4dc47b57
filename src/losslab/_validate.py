"""The single input validator of losslab.

Every loss calls :func:`prepare_classification` (or the small checks below) before any
arithmetic, so shapes, dtypes, target formats and error messages are the same everywhere.

Two kinds of checks:

* **structural** checks (shapes, dtypes, option values) cost nothing and always run;
* **value** checks (class range, negative weights, non-finite logits) need a device->host
  sync. They run when ``validate=True`` and are skipped while ``torch.compile`` traces, so
  compiled hot loops stay free of graph breaks.

Every error names the loss, the argument, what was expected and what was received.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def fail(
    loss: str, arg: str, expected: str, got: object, exc: type[Exception] = ValueError
) -> NoReturn:
    """Raise ``exc`` with the library's one error format."""
    raise exc(f"{loss}: {arg} expected {expected}, got {got}")


def describe(x: object) -> str:
    """Short description of a received value for error messages."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{x!r} ({type(x).__name__})"


def value_checks_enabled(validate: bool) -> bool:
    """Whether host-syncing value checks should run now."""
    return validate and not torch.compiler.is_compiling()


def check_reduction(loss: str, reduction: object) -> str:
    if reduction not in REDUCTIONS:
        fail(loss, "reduction", "one of 'none', 'mean', 'sum'", describe(reduction))
    return reduction  # type: ignore[return-value]


# --------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class Real:
    """A real hyperparameter in an interval; ``None`` bounds are open-ended."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    allow_none: bool = False

    def text(self) -> str:
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"a real number in {left}{lo}, {hi}{right}"

    def check(self, loss: str, name: str, value: object) -> None:
        if value is None and self.allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(loss, name, self.text(), describe(value), TypeError)
        v = float(value)
        bad = not math.isfinite(v)
        if self.lo is not None:
            bad |= v <= self.lo if self.lo_open else v < self.lo
        if self.hi is not None:
            bad |= v >= self.hi if self.hi_open else v > self.hi
        if bad:
            fail(loss, name, self.text(), repr(value))


@dataclass(frozen=True)
class Choice:
    """A hyperparameter from a fixed set of values."""

    values: tuple[Any, ...]

    def check(self, loss: str, name: str, value: object) -> None:
        if value not in self.values:
            fail(loss, name, f"one of {self.values}", describe(value))


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter bounded from below."""

    lo: int = 0

    def check(self, loss: str, name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(loss, name, f"an integer >= {self.lo}", describe(value), TypeError)
        if value < self.lo:
            fail(loss, name, f"an integer >= {self.lo}", repr(value))


@dataclass(frozen=True)
class RealOrClassVector:
    """A scalar in an interval, a 1-D per-class tensor/sequence of such values, or None."""

    scalar: Real

    def check(self, loss: str, name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.scalar.check(loss, name, value)
            return
        if isinstance(value, (list, tuple)):
            value = torch.tensor(value, dtype=torch.float64)
        if not isinstance(value, Tensor) or value.dim() != 1 or not value.is_floating_point():
            fail(
                loss,
                name,
                "a float, a 1-D float tensor of per-class values, or None",
                describe(value),
                TypeError,
            )
        if value_checks_enabled(True):
            lo, hi = self.scalar.lo, self.scalar.hi
            if (
                not bool(torch.isfinite(value).all())
                or (lo is not None and bool((value < lo).any()))
                or (hi is not None and bool((value > hi).any()))
            ):
                fail(loss, name, f"per-class values, each {self.scalar.text()}", value.tolist())


Constraint = Real | Choice | Int | RealOrClassVector


def check_hparams(
    loss: str, constraints: Mapping[str, Constraint], values: Mapping[str, Any]
) -> None:
    """Check each hyperparameter in ``values`` against its declared constraint."""
    for name, value in values.items():
        c = constraints.get(name)
        if c is not None:
            c.check(loss, name, value)


# --------------------------------------------------------------------------- classification input


@dataclass
class ClassificationInput:
    """Validated, normalised inputs of a classification loss.

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
    """

    logits: Tensor
    index: Tensor
    soft: Tensor | None
    mask: Tensor | None
    weight: Tensor | None
    num_classes: int

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


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses compute in float32, or float64 when given float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_logits(loss: str, logits: object, *, min_dim: int = 2) -> Tensor:
    if not isinstance(logits, Tensor):
        fail(loss, "logits", "a torch.Tensor", describe(logits), TypeError)
    if not logits.is_floating_point():
        fail(
            loss,
            "logits",
            "a floating-point tensor (logits, not labels)",
            describe(logits),
            TypeError,
        )
    if logits.dim() < min_dim:
        fail(loss, "logits", "shape (N, C) or (N, C, d1, ...)", describe(logits))
    if logits.shape[1] < 1:
        fail(loss, "logits", "at least one class on dim 1", describe(logits))
    return logits


def check_per_sample(
    loss: str, name: str, t: object, index_shape: torch.Size, note: str = ""
) -> None:
    """A float tensor with one value per element of the target, shape ``(N, *)``."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        fail(loss, name, f"a float tensor of shape {tuple(index_shape)}", describe(t), TypeError)
    if t.shape != index_shape:
        fail(loss, name, f"shape {tuple(index_shape)}{note}", describe(t))


def prepare_classification(
    loss: str,
    logits: object,
    target: object,
    *,
    weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
    soft_ok: bool = True,
    neg_inf_ok: bool = True,
    min_classes: int = 1,
) -> ClassificationInput:
    """Validate the inputs of a classification loss and normalise them.

    Target dispatch uses shape *and* dtype: an integer tensor of shape ``(N, *)`` holds
    class indices; a float tensor with the logits' exact shape holds probabilities.
    Anything else raises. ``ignore_index`` applies to index targets only (as in
    ``torch.nn.functional.cross_entropy``).
    """
    check_reduction(loss, reduction)
    logits = check_logits(loss, logits)
    num_classes = logits.shape[1]
    if num_classes < min_classes:
        fail(loss, "logits", f"at least {min_classes} classes on dim 1", describe(logits))
    if not isinstance(target, Tensor):
        fail(loss, "target", "a torch.Tensor", describe(target), TypeError)
    if target.device != logits.device:
        fail(
            loss,
            "target",
            f"a tensor on {logits.device} (the logits' device)",
            f"a tensor on {target.device}",
        )
    index_shape = logits.shape[:1] + logits.shape[2:]
    cdtype = compute_dtype(logits.dtype)
    z = logits.to(cdtype)

    soft: Tensor | None = None
    if target.is_floating_point():
        if target.shape != logits.shape:
            fail(
                loss,
                "target",
                f"probabilities of the logits' shape {tuple(logits.shape)} (float) or class "
                f"indices of shape {tuple(index_shape)} (int64)",
                describe(target),
            )
        if not soft_ok:
            fail(
                loss,
                "target",
                "class indices (int64); this loss does not accept soft (probability) targets",
                describe(target),
            )
        soft = target.to(cdtype)
        index = soft.argmax(dim=1)
    elif target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if target.shape != index_shape:
            fail(
                loss,
                "target",
                f"class indices of shape {tuple(index_shape)} for logits of "
                f"shape {tuple(logits.shape)}",
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

    mask: Tensor | None = None
    if soft is None and ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            fail(loss, "ignore_index", "an int or None", describe(ignore_index), TypeError)
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
        _check_values(
            loss,
            logits,
            target,
            index,
            soft,
            mask,
            weight,
            sample_weight,
            num_classes,
            ignore_index,
            neg_inf_ok,
        )

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
    return ClassificationInput(z, index, soft, mask, w, num_classes)


def _check_values(
    loss: str,
    logits: Tensor,
    target: Tensor,
    index: Tensor,
    soft: Tensor | None,
    mask: Tensor | None,
    weight: Tensor | None,
    sample_weight: Tensor | None,
    num_classes: int,
    ignore_index: int | None,
    neg_inf_ok: bool,
) -> None:
    # A sum is finite iff every term is (barring overflow, which the slow path clears):
    # one cheap reduction in the common case, the full diagnosis only when needed.
    if not bool(torch.isfinite(logits.detach().sum())):
        finite = torch.isfinite(logits)
        if bool(torch.isnan(logits).any()):
            fail(loss, "logits", "finite values (or -inf to mask a class)", "NaN values")
        if bool(torch.isposinf(logits).any()):
            fail(loss, "logits", "finite values (or -inf to mask a class)", "+inf values")
        if not neg_inf_ok:
            fail(
                loss,
                "logits",
                "finite values (this loss is undefined when a class is masked with -inf)",
                "-inf values",
            )
        if soft is None:
            at_target = ~finite.gather(1, index.unsqueeze(1)).squeeze(1)
            if mask is not None:
                at_target = at_target & mask
            if bool(at_target.any()):
                fail(loss, "logits", "a finite logit at the target class", "-inf at the target")
    if soft is None:
        raw = target.long()
        valid = (
            raw != ignore_index
            if ignore_index is not None
            else torch.ones_like(raw, dtype=torch.bool)
        )
        out = valid & ((raw < 0) | (raw >= num_classes))
        if bool(out.any()):
            bad = int(raw[out][0])
            extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
            raise ValueError(
                f"{loss}: target contains class {bad}{extra} but logits have {num_classes} classes "
                f"(expected class indices in [0, {num_classes - 1}])"
            )
    else:
        if not bool((soft >= 0).all()) or not bool(torch.isfinite(soft).all()):
            fail(loss, "target", "probabilities (finite, >= 0)", "negative or non-finite values")
        sums = soft.sum(dim=1)
        tol = 1e-3 if soft.dtype == torch.float32 else 1e-6
        if bool(((sums - 1).abs() > tol).any()):
            worst = float(
                sums[(sums - 1).abs().argmax()]
                if sums.dim() == 1
                else sums.flatten()[(sums.flatten() - 1).abs().argmax()]
            )
            fail(
                loss,
                "target",
                "probabilities that sum to 1 over the class axis (dim 1)",
                f"a row summing to {worst:.6g}",
            )
    for name, t in (("weight", weight), ("sample_weight", sample_weight)):
        if t is not None and (not bool(torch.isfinite(t).all()) or bool((t < 0).any())):
            fail(loss, name, "finite non-negative weights", "negative or non-finite values")
