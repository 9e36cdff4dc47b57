"""The calibrator interface and what every calibrator shares: input checks, the
full-batch L-BFGS fit, serialisation of parameters whose shapes are known only after
`fit`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor

from losslab._validate import check_finite, compute_dtype, describe, fail
from losslab.metrics._inputs import as_tensor

F64 = torch.float64
C = TypeVar("C", bound="Calibrator")


def check_logits(where: str, logits: Any, num_classes: int | None = None) -> Tensor:
    """Finite float logits ``(N, C)`` or ``(N, C, *)`` with at least two classes."""
    # Tensors are not detached: `transform` is differentiable in the logits.
    z = logits if isinstance(logits, Tensor) else as_tensor(where, "logits", logits)
    if not z.is_floating_point():
        fail(where, "logits", "a floating-point array (logits)", describe(z), TypeError)
    if z.dim() < 2 or z.shape[1] < 2:
        fail(where, "logits", "shape (N, C) or (N, C, d1, ...) with C >= 2 classes", describe(z))
    if num_classes is not None and z.shape[1] != num_classes:
        fail(where, "logits", f"{num_classes} classes on dim 1 (as fitted)", describe(z))
    check_finite(where, "logits", z.detach())
    return z


def check_target(where: str, target: Any, logits: Tensor) -> Tensor:
    """Int class indices of the logits' element shape, in range."""
    t = as_tensor(where, "target", target)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        fail(where, "target", "integer class indices", describe(t), TypeError)
    want = logits.shape[:1] + logits.shape[2:]
    if t.shape != want:
        fail(where, "target", f"class indices of shape {tuple(want)}", describe(t))
    c = logits.shape[1]
    if t.numel() and bool(((t < 0) | (t >= c)).any()):
        fail(
            where,
            "target",
            f"class indices in [0, {c - 1}]",
            f"values in [{int(t.min())}, {int(t.max())}]",
        )
    return t.to(logits.device).long()


def rows(z: Tensor) -> Tensor:
    """``(N, C, *)`` as rows ``(M, C)``."""
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def unrows(out: Tensor, like: Tensor) -> Tensor:
    """Rows ``(M, C)`` back to the shape of ``like`` ``(N, C, *)``, on its device and in its
    compute dtype."""
    shape = (like.shape[0], *like.shape[2:], like.shape[1])
    return out.reshape(shape).movedim(-1, 1).to(device=like.device, dtype=compute_dtype(like.dtype))


def lbfgs(params: list[Tensor], objective: Callable[[], Tensor], max_iter: int) -> None:
    """Minimise ``objective`` over ``params`` (float64 leaves) with full-batch L-BFGS and a
    strong-Wolfe line search, which never accepts a step that increases the objective."""
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        max_eval=max_iter * 2,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)


class Calibrator(torch.nn.Module):
    """A post-hoc calibrator: `fit(logits, target)` on held-out data, then
    `transform(logits)` returns calibrated logits (`predict_proba` their softmax).

    Fitted values are float64 buffers, so `state_dict()` / `load_state_dict()` round-trip
    (into a calibrator built with the same arguments, fitted or not) and `.to()` moves
    them. `transform` is differentiable in the logits and keeps their dtype (half
    precision comes back as float32).
    """

    fitted: Tensor
    #: buffers whose shape is set by `fit` (resized by `load_state_dict`).
    _lazy: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        for name in self._lazy:
            self.register_buffer(name, torch.zeros(0, dtype=F64))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @property
    def where(self) -> str:
        return type(self).__name__

    def min_samples(self, num_classes: int) -> tuple[int, str]:
        """The fewest samples `fit` accepts, and why."""
        return 2, "two"

    def _check_fit_inputs(self, logits: Any, target: Any) -> tuple[Tensor, Tensor]:
        where = f"{self.where}.fit"
        z = check_logits(where, logits)
        y = check_target(where, target, z)
        z, y = rows(z.detach()).to(F64), y.reshape(-1)
        need, why = self.min_samples(z.shape[1])
        if len(y) < need:
            fail(where, "logits", f"at least {need} samples ({why})", f"{len(y)} samples")
        if int(y.unique().numel()) < 2:
            fail(
                where,
                "target",
                "at least two different classes",
                f"only class {int(y[0])}",
            )
        return z, y

    def fit(self: C, logits: Any, target: Any) -> C:
        """Fit on held-out logits ``(N, C)`` (or ``(N, C, *)``) and int targets."""
        z, y = self._check_fit_inputs(logits, target)
        with torch.enable_grad():
            self._fit(z.to(self.fitted.device), y.to(self.fitted.device))
        self.fitted.fill_(True)
        return self

    def _fit(self, z: Tensor, y: Tensor) -> None:
        raise NotImplementedError

    def _calibrate(self, z: Tensor) -> Tensor:
        """Calibrated float64 logit rows ``(M, C)``."""
        raise NotImplementedError

    def _num_classes(self) -> int | None:
        return None

    def transform(self, logits: Any) -> Tensor:
        """Calibrated logits of the shape and (float32 for half) dtype of ``logits``."""
        where = f"{self.where}.transform"
        if not self.is_fitted:
            fail(
                where,
                "self",
                "a fitted calibrator (call fit first)",
                "an unfitted one",
                RuntimeError,
            )
        z = check_logits(where, logits, self._num_classes())
        return unrows(self._calibrate(rows(z).to(F64).to(self.fitted.device)), z)

    def forward(self, logits: Any) -> Tensor:
        return self.transform(logits)

    def predict_proba(self, logits: Any) -> Tensor:
        """Calibrated probabilities, the softmax of `transform` over dim 1."""
        return torch.softmax(self.transform(logits), dim=1)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        for name in self._lazy:
            value = state_dict.get(name)
            if isinstance(value, Tensor) and value.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(value, dtype=F64))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def nll_of(z: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood of softmax rows."""
    return torch.nn.functional.cross_entropy(z, y)
