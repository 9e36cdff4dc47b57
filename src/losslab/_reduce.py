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
