"""Input handling shared by the calibration metrics: numpy or torch, logits or
probabilities, ``(N, C)`` or ``(N, C, *)``; everything is computed in float64 on the
input's device, and every error uses the library's one format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab._validate import check_finite, describe, fail

INPUTS = ("logits", "probs")
F64 = torch.float64


def as_tensor(where: str, name: str, x: Any) -> Tensor:
    """``x`` as a detached tensor (numpy arrays and sequences become CPU tensors)."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            fail(
                where, name, "a numeric array or tensor", f"an array of dtype {x.dtype}", TypeError
            )
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        try:
            return torch.from_numpy(np.asarray(x))
        except (TypeError, ValueError):
            pass
    fail(where, name, "a numpy array or torch tensor", describe(x), TypeError)


def check_input_format(where: str, input: object) -> str:
    if input not in INPUTS:
        fail(where, "input", "'logits' or 'probs'", describe(input))
    return input  # type: ignore[return-value]


def check_n_bins(where: str, n_bins: object) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        fail(where, "n_bins", "a positive int", describe(n_bins))
    return n_bins


@dataclass(frozen=True)
class Predictions:
    """Validated predictions, flattened to rows ``(M, C)`` in float64.

    Attributes:
        probs: class probabilities ``(M, C)``.
        log_probs: their logarithms (``-inf`` where a given probability is 0).
        target: int64 classes ``(M,)``.
        pred: int64 predicted class (first maximum of the scores) ``(M,)``.
    """

    probs: Tensor
    log_probs: Tensor
    target: Tensor
    pred: Tensor

    @property
    def confidence(self) -> Tensor:
        """Top-label confidence ``max_k p_k``."""
        return self.probs.gather(1, self.pred.unsqueeze(1)).squeeze(1)

    @property
    def correct(self) -> Tensor:
        """1.0 where the prediction is right, else 0.0."""
        return (self.pred == self.target).to(F64)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    def __len__(self) -> int:
        return self.target.shape[0]


def predictions(
    where: str,
    scores: Any,
    target: Any,
    *,
    input: str = "logits",
    num_classes: int | None = None,
) -> Predictions:
    """Validate ``scores`` ``(N, C, *)`` (logits or probabilities) and int ``target``
    ``(N, *)``; return them as rows."""
    check_input_format(where, input)
    s = as_tensor(where, "scores", scores)
    t = as_tensor(where, "target", target)
    if not s.is_floating_point():
        fail(where, "scores", f"a floating-point array ({input})", describe(s), TypeError)
    if s.dim() < 2:
        fail(where, "scores", "shape (N, C) or (N, C, d1, ...)", describe(s))
    c = s.shape[1]
    if c < 1:
        fail(where, "scores", "at least one class on dim 1", describe(s))
    if num_classes is not None and c != num_classes:
        fail(where, "scores", f"{num_classes} classes on dim 1", describe(s))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        fail(where, "target", "integer class indices", describe(t), TypeError)
    want = s.shape[:1] + s.shape[2:]
    if t.shape != want:
        fail(where, "target", f"class indices of shape {tuple(want)}", describe(t))
    if t.device != s.device:
        fail(where, "target", f"a tensor on {s.device} (the scores' device)", str(t.device))
    rows = s.movedim(1, -1).reshape(-1, c).to(F64)
    t = t.reshape(-1).long()
    if t.numel() and bool(((t < 0) | (t >= c)).any()):
        fail(
            where,
            "target",
            f"class indices in [0, {c - 1}]",
            f"values in [{int(t.min())}, {int(t.max())}]",
        )
    if input == "logits":
        check_finite(where, "scores", rows, neg_inf="to mask a class")
        if rows.numel() and bool(torch.isneginf(rows.amax(dim=1)).any()):
            fail(where, "scores", "at least one finite logit per row", "a row of -inf")
        log_probs = torch.log_softmax(rows, dim=1)
        return Predictions(log_probs.exp(), log_probs, t, rows.argmax(dim=1))
    if rows.numel():
        if not bool(torch.isfinite(rows).all()) or bool(((rows < 0) | (rows > 1)).any()):
            fail(where, "scores", "probabilities in [0, 1]", "values outside [0, 1] or NaN")
        tol = 1e-6 if s.dtype == F64 else 1e-3
        dev = (rows.sum(dim=1) - 1).abs()
        if bool((dev > tol).any()):
            worst = float(rows.sum(dim=1)[dev.argmax()])
            fail(
                where,
                "scores",
                "probabilities that sum to 1 over the class axis (dim 1)",
                f"a row summing to {worst:.6g}",
            )
    return Predictions(rows, torch.log(rows), t, rows.argmax(dim=1))
