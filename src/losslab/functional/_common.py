"""Building blocks shared by the functional losses (numerics, not validation)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from losslab._validate import ClassificationInput, prepare_classification
from losslab.registry import spec_of


def prepare(
    fn: Callable[..., Tensor],
    logits: Tensor,
    target: Tensor,
    hparams: Mapping[str, Any],
    *,
    weight: Tensor | None,
    sample_weight: Tensor | None,
    ignore_index: int | None,
    reduction: str,
    validate: bool,
    neg_inf_ok: bool | None = None,
) -> ClassificationInput:
    """The preamble of every registered loss, driven by its spec.

    Checks ``hparams`` against the declared constraints and validates the inputs with
    the spec's target rules (soft targets, ``-inf`` masking, fewest classes), so each
    rule is declared once, in ``register``. ``neg_inf_ok`` overrides the spec where it
    depends on a hyperparameter.
    """
    spec = spec_of(fn)
    spec.check_config(hparams)
    return prepare_classification(
        spec.name,
        logits,
        target,
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=validate,
        soft_ok=spec.soft_targets,
        neg_inf_ok=spec.neg_inf_ok if neg_inf_ok is None else neg_inf_ok,
        min_classes=spec.min_classes,
    )


def target_value(
    inp: ClassificationInput, per_class: Callable[[Tensor], Tensor], source: Tensor
) -> Tensor:
    """``phi(source)`` at the target class, for an elementwise ``phi``.

    Index targets gather ``source`` first and apply ``phi`` to ``N`` values only; soft
    targets apply ``phi`` to all classes and take the expectation under the target
    distribution, so index targets and their one-hot encodings agree exactly.
    """
    if inp.soft is None:
        return per_class(source.gather(1, inp.index.unsqueeze(1)).squeeze(1))
    return inp.gather(per_class(source))


def one_minus_exp(logp: Tensor) -> Tensor:
    """``1 - exp(logp)`` without cancellation, clamped to the smallest normal float.

    The clamp keeps ``(1 - p) ** gamma`` differentiable at ``p == 1`` for ``gamma < 1``.
    """
    return (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)


def expm1_linear_tail(x: Tensor) -> Tensor:
    """``expm1(x)``, continued linearly (value and slope) above ``log(finfo.max) / 2``.

    Exponential losses such as sum-exp grow like ``1/p_y`` and overflow for logit gaps
    above ~88 in float32; past the threshold (where the loss already exceeds ~1e19 in
    float32) the tail is linear, so values and gradients stay finite and non-zero for
    logit gaps far beyond 1e4 and a mean over a batch cannot overflow either.
    """
    thresh = math.log(torch.finfo(x.dtype).max) / 2
    head = torch.expm1(x.clamp_max(thresh))
    slope = torch.exp(torch.tensor(thresh, dtype=x.dtype, device=x.device))
    return torch.where(x > thresh, head + slope * (x - thresh), head)
