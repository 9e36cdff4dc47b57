"""The single reduction of losslab.

For per-element losses ``l``, validity mask ``m`` (not ignored) and weights ``w`` (class
weight of the target times the sample weight):

* ``"none"``: ``w * l * m`` with the input's element shape ``(N, *)``;
* ``"sum"``: ``sum(w * l * m)``;
* ``"mean"``: ``sum(w * l * m) / sum(w * m)``.

The class axis is never averaged. An all-ignored batch gives ``0`` that stays attached
to the graph (its gradient is zero), never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def reduce_loss(
    per_element: Tensor,
    reduction: str,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Apply the reduction contract to per-element losses ``(N, *)``."""
    if (
        weight is None
        and _broadcast_scalar(per_element)
        and (mask is None or _broadcast_scalar(mask))
    ):
        return _reduce_constant(per_element, reduction, mask)
    loss = per_element
    if mask is not None:
        # where(), not multiplication: a masked element may hold inf/NaN garbage.
        loss = torch.where(mask, loss, 0.0)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if weight is not None:
        denom = weight.sum() if mask is None else torch.where(mask, weight, 0.0).sum()
    elif mask is not None:
        denom = mask.sum().to(loss.dtype)
    else:
        return total / loss.numel() if loss.numel() else total
    # Clamping keeps 0/0 at 0: the numerator is exactly 0 whenever the denominator is.
    return total / denom.clamp_min(torch.finfo(loss.dtype).tiny)


def _broadcast_scalar(t: Tensor) -> bool:
    """Whether ``t`` holds one value seen at every position (an ``expand`` of a scalar, as
    the set-level losses return), so that it can be reduced without touching each one."""
    return t.numel() > 1 and all(
        st == 0 or n == 1 for st, n in zip(t.stride(), t.shape, strict=True)
    )


def _reduce_constant(loss: Tensor, reduction: str, mask: Tensor | None) -> Tensor:
    """:func:`reduce_loss` of a broadcast scalar (and a broadcast scalar mask), in O(1):
    the same sums, counted instead of added up."""
    first = (0,) * loss.dim()
    value = loss[first]
    if mask is not None:
        value = torch.where(mask[first], value, 0.0)
    if reduction == "none":
        return value.expand(loss.shape)
    if reduction == "sum":
        return value * loss.numel()
    # mean: n v / n over the valid elements, and an attached 0 when none is valid
    return value


@dataclass
class KernelResult:
    """What a kernel returns when plain per-element losses are not enough.

    Attributes:
        values: per-element losses, of the input's element shape.
        valid: bool, the elements that count (combined with the input's mask): e.g. the
            anchors of a pairwise loss that have a pair. ``None``: all of them.
        components: named parts for ``return_components=True``: per-element tensors
            (reduced like the loss) or scalars such as pair counts (returned as they are).
    """

    values: Tensor
    valid: Tensor | None = None
    components: Mapping[str, Tensor] = field(default_factory=dict)


def reduce_result(
    result: Tensor | KernelResult,
    reduction: str,
    *,
    mask: Tensor | None,
    weight: Tensor | None,
    components: type[tuple[Any, ...]] | None = None,
) -> Any:
    """Reduce a kernel's output; with a ``components`` NamedTuple type, return one."""
    if not isinstance(result, KernelResult):
        loss = reduce_loss(result, reduction, mask=mask, weight=weight)
        return loss if components is None else components(loss)
    if result.valid is not None:
        mask = result.valid if mask is None else mask & result.valid
    loss = reduce_loss(result.values, reduction, mask=mask, weight=weight)
    if components is None:
        return loss
    parts = {
        k: reduce_loss(v, reduction, mask=mask, weight=weight)
        if v.shape == result.values.shape and v.dim() > 0
        else v
        for k, v in result.components.items()
    }
    return components(loss, **parts)
