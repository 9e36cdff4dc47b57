"""Input checks of the output heads, in the library's error format (:func:`losslab._validate.fail`).

Structural checks (types, shapes, option values) cost nothing and always run. Value checks
(target range, finite inputs) need a host sync: callers run them only when
:func:`losslab._validate.value_checks_enabled` says so (``validate=True``, not compiling).

The option constraints here complement those of :mod:`losslab._validate`: ``Int`` there needs
a lower bound and rejects ``None``, the heads also need "any integer", "integer or None" and
"a bool".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from losslab._validate import check_reduction, describe, fail

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class Check(Protocol):
    def check(self, loss: str, name: str, value: object) -> None: ...


@dataclass(frozen=True)
class Integer:
    """An integer (``numbers.Integral``, not bool), optionally bounded below or ``None``."""

    lo: int | None = None
    allow_none: bool = False

    def text(self) -> str:
        out = "an integer" if self.lo is None else f"an integer >= {self.lo}"
        return out + " or None" if self.allow_none else out

    def check(self, loss: str, name: str, value: object) -> None:
        if value is None and self.allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail(loss, name, self.text(), describe(value), TypeError)
        if self.lo is not None and value < self.lo:
            fail(loss, name, self.text(), repr(value))


@dataclass(frozen=True)
class Flag:
    """``True`` or ``False`` (a truthy tensor or string is a mistake, not a switch)."""

    def check(self, loss: str, name: str, value: object) -> None:
        if not isinstance(value, bool):
            fail(loss, name, "True or False", describe(value), TypeError)


@dataclass(frozen=True)
class Reduction:
    """One of the library's reductions, checked by :func:`losslab._validate.check_reduction`."""

    def check(self, loss: str, name: str, value: object) -> None:
        check_reduction(loss, value)


def check_float(loss: str, name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor) or t.dtype not in FLOAT_DTYPES:
        fail(
            loss,
            name,
            "a floating-point tensor (float16, bfloat16, float32 or float64)",
            describe(t),
            TypeError,
        )
    return t


def check_target(loss: str, target: object) -> Tensor:
    if not isinstance(target, Tensor) or target.dtype not in INDEX_DTYPES:
        fail(loss, "target", "a tensor of integer class indices", describe(target), TypeError)
    return target


def check_values(
    loss: str,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None,
    tensors: Mapping[str, Tensor | None],
    *,
    rows: str = "rows",
    combine: Callable[[Tensor], Tensor] | None = None,
) -> None:
    """Target classes in range and finite ``tensors``, with one host sync when all is well.

    A sum is finite iff every term is, barring overflow: one reduction per tensor (in float32,
    so that float16 inputs cannot overflow it; float64 stays float64) decides, and the
    element-wise diagnosis runs only when it fails (an overflow then passes). ``combine``
    reduces the flags over the ranks that hold shards of ``tensors``, so that every rank
    raises or none does.
    """
    given = {name: t.detach() for name, t in tensors.items() if t is not None}
    acc = torch.float64 if any(t.dtype == torch.float64 for t in given.values()) else torch.float32
    out = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        out &= target != ignore_index
    sums = [t.sum(dtype=acc) for t in given.values()]
    flags = torch.stack(
        [torch.stack(sums).sum() if sums else target.new_zeros((), dtype=acc), out.sum().to(acc)]
    )
    if combine is not None:
        combine(flags)
    total, n_out = flags.tolist()
    if n_out:
        bad = int(target[out][0]) if bool(out.any()) else None
        allowed = f"class indices in [0, {num_classes - 1}] ({num_classes} {rows})"
        if ignore_index is not None:
            allowed += f" or ignore_index={ignore_index}"
        fail(loss, "target", allowed, f"class {bad}")
    if math.isfinite(total):
        return
    counts = (
        torch.stack([torch.stack([t.isnan().sum(), t.isinf().sum()]) for t in given.values()])
        if given
        else torch.zeros((0, 2), dtype=torch.long)
    )
    if combine is not None:
        combine(counts)
    for name, (n_nan, n_inf) in zip(given, counts.tolist(), strict=True):
        if n_nan:
            fail(loss, name, "finite values", "NaN values")
        if n_inf:
            fail(loss, name, "finite values", "infinite values")
