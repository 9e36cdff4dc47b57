"""The validation primitives of losslab: the error format, hyperparameter constraints and
the tensor checks that every input kind's validation stage (:mod:`losslab.kinds`) is built
from, so shapes, dtypes, value rules and error messages are the same everywhere.

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
    shape = getattr(x, "shape", None)
    if isinstance(shape, tuple):
        # arrays (numpy, pandas, jax) print over many lines
        return f"{type(x).__module__.split('.')[0]}.{type(x).__name__} of shape {tuple(shape)}"
    text = repr(x)
    if "\n" in text or len(text) > 80:
        text = " ".join(text.split())
        text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({type(x).__name__})"


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


# --------------------------------------------------------------------------- tensors


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses compute in float32, or float64 when given float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_float_tensor(where: str, name: str, x: object, what: str) -> Tensor:
    """A floating-point tensor (``what`` names it in the error, e.g. "logits")."""
    if not isinstance(x, Tensor):
        fail(where, name, f"a torch.Tensor ({what})", describe(x), TypeError)
    if not x.is_floating_point():
        fail(where, name, f"a floating-point tensor ({what})", describe(x), TypeError)
    return x


def check_same_device(where: str, name: str, x: Tensor, ref: Tensor, ref_name: str) -> None:
    if x.device != ref.device:
        fail(where, name, f"a tensor on {ref.device} (the {ref_name}' device)", f"{x.device}")


def check_per_sample(
    loss: str, name: str, t: object, index_shape: torch.Size, note: str = ""
) -> Tensor:
    """A float tensor with one value per element, shape ``index_shape``."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        fail(loss, name, f"a float tensor of shape {tuple(index_shape)}", describe(t), TypeError)
    if t.shape != index_shape:
        fail(loss, name, f"shape {tuple(index_shape)}{note}", describe(t))
    return t


def check_sample_or_element_weight(
    where: str, t: object, samples: int, element_shape: torch.Size, per: str = "sample"
) -> Tensor:
    """``sample_weight`` as one float per sample ``(samples,)`` or per element."""
    shapes = f"({samples},) (per {per}) or {tuple(element_shape)} (per element)"
    if not isinstance(t, Tensor) or not t.is_floating_point():
        fail(where, "sample_weight", f"a float tensor of shape {shapes}", describe(t), TypeError)
    if t.shape not in (torch.Size((samples,)), element_shape):
        fail(where, "sample_weight", f"shape {shapes}", describe(t))
    return t


def check_ignore_index(where: str, ignore_index: object) -> None:
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        fail(where, "ignore_index", "an int or None", describe(ignore_index), TypeError)


def check_finite(where: str, name: str, x: Tensor, *, neg_inf: str | None = None) -> bool:
    """Reject NaN and +inf; reject -inf too unless ``neg_inf`` says what it means here.
    Returns whether the fast path proved every value finite.

    One float32-accumulated reduction in the common case (``isfinite(x).all()`` costs more
    than a softmax on CPU): the sum is finite iff every term is, unless it overflows, so
    the element-wise diagnosis runs only when the sum is not finite and names the real
    offender; a sum that merely overflowed passes.
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(x.detach().sum(dtype=acc))):
        return True
    if bool(torch.isnan(x).any()):
        fail(where, name, _finite_text(neg_inf), "NaN values")
    if bool(torch.isposinf(x).any()):
        fail(where, name, _finite_text(neg_inf), "+inf values")
    if neg_inf is None and bool(torch.isneginf(x).any()):
        fail(where, name, "finite values", "-inf values")
    return False


def _finite_text(neg_inf: str | None) -> str:
    return "finite values" if neg_inf is None else f"finite values (or -inf {neg_inf})"


def check_weights(where: str, name: str, w: Tensor) -> None:
    """Finite, non-negative weights (a value check: needs a host sync)."""
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        fail(where, name, "finite non-negative weights", "negative or non-finite values")


def check_values_in(where: str, name: str, t: Tensor, constraint: Real, what: str) -> None:
    """Every element of ``t`` satisfies the scalar ``constraint`` (a value check)."""
    ok = torch.isfinite(t)
    if constraint.lo is not None:
        ok &= t > constraint.lo if constraint.lo_open else t >= constraint.lo
    if constraint.hi is not None:
        ok &= t < constraint.hi if constraint.hi_open else t <= constraint.hi
    if not bool(ok.all()):
        bad = t[~ok].flatten()[0].item()
        fail(where, name, f"{what}, each {constraint.text()}", f"a value {bad!r}")


def check_index(where: str, index: object, shape: torch.Size, size: int, validate: bool) -> Tensor:
    """Dataset indices of a batch for per-example state: int64 of ``shape`` in ``[0, size)``."""
    if not isinstance(index, Tensor) or index.dtype != torch.int64:
        fail(where, "index", "an int64 tensor of dataset indices", describe(index), TypeError)
    if index.shape != shape:
        fail(where, "index", f"shape {tuple(shape)}, one index per element", describe(index))
    if (
        value_checks_enabled(validate)
        and index.numel()
        and bool(((index < 0) | (index >= size)).any())
    ):
        fail(
            where,
            "index",
            f"dataset indices in [0, {size - 1}]",
            f"values from {int(index.min())} to {int(index.max())}",
        )
    return index


# --------------------------------------------------------------------------- class vectors


@dataclass(frozen=True)
class ClassVector(RealOrClassVector):
    """A 1-D tensor (or sequence) of per-class (or per-bucket, ``what``) values that each
    satisfy ``scalar``, or None; with ``total``, they must also sum to it (within 1e-3
    relative). Unlike :class:`RealOrClassVector`, scalars are rejected and open bounds
    are honoured element-wise."""

    total: float | None = None
    what: str = "per-class values"

    def text(self) -> str:
        each = f"{self.what}, each {self.scalar.text()}"
        return each if self.total is None else f"{each}, summing to {self.total:g}"

    def check(self, loss: str, name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            value = torch.tensor(value, dtype=torch.float64)
        if not isinstance(value, Tensor) or value.dim() != 1 or not value.is_floating_point():
            fail(loss, name, f"a 1-D float tensor of {self.text()}", describe(value), TypeError)
        if value.numel() == 0:
            fail(loss, name, f"a non-empty 1-D tensor of {self.text()}", describe(value))
        if value_checks_enabled(True):
            # Element-wise, honouring open bounds: a zero prior or count is an error.
            lo, hi, sc = self.scalar.lo, self.scalar.hi, self.scalar
            ok = torch.isfinite(value)
            if lo is not None:
                ok &= value > lo if sc.lo_open else value >= lo
            if hi is not None:
                ok &= value < hi if sc.hi_open else value <= hi
            if not bool(ok.all()):
                k = int((~ok).nonzero()[0, 0])
                fail(loss, name, self.text(), f"{float(value[k])!r} at index {k}")
            if self.total is not None:
                total = float(value.sum())
                if abs(total - self.total) > 1e-3 * abs(self.total):
                    fail(loss, name, self.text(), f"values summing to {total:.6g}")


def check_class_vector(
    where: str, name: str, value: object, constraint: ClassVector, num_classes: int, like: Tensor
) -> Tensor:
    """A per-class vector hyperparameter (already checked by its constraint) as a tensor of
    ``like``'s dtype and device, with one entry per class."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.shape != (num_classes,):
        fail(where, name, f"shape ({num_classes},), {constraint.text()}", describe(t))
    return t


@dataclass(frozen=True)
class IntOrNone(Int):
    """An integer bounded from below, or None."""

    def check(self, loss: str, name: str, value: object) -> None:
        if value is not None:
            super().check(loss, name, value)


def check_like(where: str, name: str, x: object, ref: Tensor, ref_name: str, what: str) -> Tensor:
    """A floating-point tensor of ``ref``'s shape and device (an extra input)."""
    t = check_float_tensor(where, name, x, what)
    if t.shape != ref.shape:
        fail(where, name, f"the {ref_name}' shape {tuple(ref.shape)} ({what})", describe(t))
    check_same_device(where, name, t, ref, ref_name)
    return t


@dataclass(frozen=True)
class NonZeroScale(Real):
    """A finite non-zero number, or a one-element float tensor holding one (a scale that
    may be a learnable parameter; its sign does not matter where it is squared)."""

    def text(self) -> str:
        return "a finite non-zero number or a one-element float tensor"

    def check(self, loss: str, name: str, value: object) -> None:
        if isinstance(value, Tensor):
            if value.numel() != 1 or not value.is_floating_point():
                fail(loss, name, self.text(), describe(value), TypeError)
            if not value_checks_enabled(True):
                return
            v = float(value.detach())
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(loss, name, self.text(), describe(value), TypeError)
        else:
            v = float(value)
        if not math.isfinite(v) or v == 0.0:
            fail(loss, name, self.text(), repr(v))
