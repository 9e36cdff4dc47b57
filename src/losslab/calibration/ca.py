r"""The correctness-aware (CA) loss and calibrator (Liu, Wang, Zou, Zou, Zheng 2024).

A per-sample temperature $T(x) = \mathrm{clamp}(w_2^\top \mathrm{ReLU}(W_1 u(x) + b_1) +
b_2,\ 0.1,\ 10)$ is fitted on held-out logits so that the calibrated top-label confidence
$\hat c = \max_k \mathrm{softmax}(z / T(x))_k$ approaches the correctness
$c = 1[\arg\max_k z_k = y]$ (which a positive temperature does not change), under the CA
loss below. $u(x)$ are features of the sample: in the reference code, the probabilities
that transformed copies of the input (rotations, grey-scale, colour jitter, ...) give
the original prediction's top-4 classes (`ca_features(logits, views=...)`); without
such views, the top-k probabilities of the logits themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from losslab._reduce import reduce_loss
from losslab._validate import (
    Int,
    Real,
    check_finite,
    check_hparams,
    check_per_sample,
    check_reduction,
    check_weights,
    compute_dtype,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.calibration._base import F64, Calibrator, check_logits, rows, unrows
from losslab.metrics._inputs import as_tensor

__all__ = ["CALossComponents", "CorrectnessAwareCalibrator", "ca_features", "ca_loss"]


class CALossComponents(NamedTuple):
    """`ca_loss(..., return_components=True)`: the loss and the (weighted) numbers of
    correct and wrong elements that count."""

    loss: Tensor
    n_correct: Tensor
    n_wrong: Tensor


def ca_loss(
    logits: Tensor,
    target: Tensor,
    *,
    correct: Tensor | None = None,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
    return_components: bool = False,
    validate: bool = True,
) -> Any:
    r"""Correctness-aware loss: the squared gap between the top-label confidence of the
    (calibrated) logits and the correctness of the prediction, balanced between correct
    and wrong elements.

    $$ \mathcal L_{CA} = \frac{\sum_i w_i (\hat c_i - c_i)^2}{\sum_i w_i}, \quad
    \hat c_i = \max_k \mathrm{softmax}(z_i)_k, \quad
    w_i = \begin{cases} 1 - a & c_i = 1 \\ a & c_i = 0 \end{cases}, \quad
    a = \frac{\sum_i c_i}{n} $$

    The balancing makes the mean $\tfrac12$ (mean over correct elements of
    $(1 - \hat c)^2$) + $\tfrac12$ (mean over wrong ones of $\hat c^2$): the accuracy
    $a$ of the batch weights the wrong elements, $1 - a$ the correct ones. A batch with no
    correct or no wrong element has all weights 0 and gives an attached 0 (the reference
    code divides 0 by 0); `return_components=True` shows the counts. With
    `sample_weight` $s$, $a = \sum s_i c_i / \sum s_i$ and $w_i$ is multiplied by $s_i$.
    The loss is 0 when correct elements have $\hat c = 1$ and wrong ones $\hat c = 0$.

    Args:
        logits: `(N, C)` or `(N, C, d1, ...)` calibrated logits, class axis 1.
        target: int64 class indices `(N, ...)`.
        correct: correctness `(N, ...)` (bool or 0/1) to use instead of
            `argmax(logits) == target`, e.g. that of the uncalibrated logits (the CA
            calibrator's temperatures are positive, so both agree there).
        sample_weight: non-negative per-element weights `(N, ...)`.
        reduction: `"none"` (per element $w_i (\hat c_i - c_i)^2$), `"sum"`, or `"mean"`
            (the balanced mean above).
        return_components: return `CALossComponents(loss, n_correct, n_wrong)`.
        validate: run the value checks (non-finite logits, class range, weights).

    Reference: Liu, Wang, Zou, Zou, Zheng, Optimizing Calibration by Gaining Aware of
    Prediction Correctness, 2024, arXiv:2404.13016; code:
    liuyvchi/Correctness-aware-calibration (`temperature_scaling_CA.py`).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [2.0, 1.9]])
        >>> ca_loss(logits, torch.tensor([0, 0, 0]))
        tensor(0.3242)
        >>> ca_loss(logits, torch.tensor([0, 0, 0]), return_components=True).n_wrong
        tensor(1.)
    """
    where = "ca_loss"
    check_reduction(where, reduction)
    z = logits
    if not isinstance(z, Tensor) or not z.is_floating_point() or z.dim() < 2:
        fail(where, "logits", "a float tensor (N, C) or (N, C, d1, ...)", describe(z), TypeError)
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        fail(where, "target", "an int64 tensor of class indices", describe(target), TypeError)
    shape = z.shape[:1] + z.shape[2:]
    if target.shape != shape:
        fail(where, "target", f"class indices of shape {tuple(shape)}", describe(target))
    for name, t in (("correct", correct), ("sample_weight", sample_weight)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != shape):
            fail(where, name, f"a tensor of shape {tuple(shape)}", describe(t))
    if sample_weight is not None:
        check_per_sample(where, "sample_weight", sample_weight, shape)
    if value_checks_enabled(validate):
        check_finite(where, "logits", z, neg_inf="to mask a class")
        y = target.long()
        if y.numel() and bool(((y < 0) | (y >= z.shape[1])).any()):
            fail(where, "target", f"class indices in [0, {z.shape[1] - 1}]", "values out of range")
        if correct is not None and bool(((correct != 0) & (correct != 1)).any()):
            fail(where, "correct", "0/1 or boolean values", "other values")
        if sample_weight is not None:
            check_weights(where, "sample_weight", sample_weight)
    dtype = compute_dtype(z.dtype)
    x = z.to(dtype)
    conf = torch.softmax(x, dim=1).amax(dim=1)
    c = (x.argmax(dim=1) == target).to(dtype) if correct is None else correct.to(dtype)
    s = torch.ones_like(c) if sample_weight is None else sample_weight.to(dtype)
    n_correct, n_wrong = (s * c).sum(), (s * (1 - c)).sum()
    acc = n_correct / (n_correct + n_wrong).clamp_min(torch.finfo(dtype).tiny)
    w = s * (c * (1 - acc) + (1 - c) * acc)
    loss = reduce_loss((conf - c) ** 2, reduction, weight=w)
    if return_components:
        return CALossComponents(loss, n_correct.detach(), n_wrong.detach())
    return loss


def ca_features(logits: Any, views: Sequence[Any] = (), *, k: int = 4) -> Tensor:
    r"""Features of the CA calibrator's temperature network, float64 ``(N, F)``.

    Without `views`: the top-k softmax probabilities of `logits`, largest first
    ($F = k$). With the logits of transformed copies of the inputs (`views`, each of the
    logits' shape): each view's softmax probabilities at the top-k classes of `logits`,
    concatenated ($F = k \cdot$ `len(views)`), the reference code's features (k = 4, three
    views).

    Example:
        >>> import torch
        >>> ca_features(torch.tensor([[2.0, 1.0, 0.0]]), k=2)
        tensor([[0.6652, 0.2447]], dtype=torch.float64)
    """
    where = "ca_features"
    check_hparams(where, {"k": Int(1)}, {"k": k})
    z = rows(check_logits(where, logits)).to(F64)
    kk = min(k, z.shape[1])
    top = z.topk(kk, dim=1)
    if not views:
        return torch.softmax(z, dim=1).gather(1, top.indices)
    out = []
    for i, view in enumerate(views):
        v = rows(check_logits(f"{where}: views[{i}]", view)).to(F64).to(z.device)
        if v.shape != z.shape:
            fail(where, f"views[{i}]", f"logits of shape {tuple(z.shape)}", describe(v))
        out.append(torch.softmax(v, dim=1).gather(1, top.indices))
    return torch.cat(out, dim=1)


class CorrectnessAwareCalibrator(Calibrator):
    r"""The CA calibrator: a per-sample temperature from a small network on features of
    each sample, fitted with `ca_loss` on held-out logits.

    $$ \tilde z = z / T(u), \qquad T(u) = \mathrm{clamp}\big(w_2^\top
    \mathrm{ReLU}(W_1 u + b_1) + b_2,\ T_{\min},\ T_{\max}\big) $$

    The network (`hidden` units, the reference's 5) starts as the identity map, $T = 1$
    ($w_2 = 0$, $b_2 = 1$), and is trained with Adam on shuffled mini-batches; the
    correctness of each sample is that of the uncalibrated logits. `fit` needs correct
    and wrong predictions in the held-out set (the loss is one-sided otherwise).

    Args:
        top_k: k of the default features, `ca_features(logits, k=top_k)`.
        hidden: hidden units of the temperature network.
        lr: Adam learning rate.
        epochs: passes over the held-out set.
        batch_size: mini-batch size (the reference's 1000).
        min_temperature: $T_{\min}$ (the reference's 0.1).
        max_temperature: $T_{\max}$ (the reference's 10).
        seed: seed of the initial weights and of the shuffling.

    Reference: Liu, Wang, Zou, Zou, Zheng, Optimizing Calibration by Gaining Aware of
    Prediction Correctness, 2024, arXiv:2404.13016; code:
    liuyvchi/Correctness-aware-calibration.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (600,), generator=g)
        >>> z = 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(600, 3, generator=g))
        >>> cal = CorrectnessAwareCalibrator().fit(z, y)
        >>> t = cal.temperatures(z)
        >>> bool((t >= 0.1).all() and (t <= 10).all()), cal.transform(z).shape
        (True, torch.Size([600, 3]))
    """

    _lazy = ("w1", "b1", "w2", "b2")
    num_classes_: Tensor
    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor

    def __init__(
        self,
        *,
        top_k: int = 4,
        hidden: int = 5,
        lr: float = 1e-2,
        epochs: int = 100,
        batch_size: int = 1000,
        min_temperature: float = 0.1,
        max_temperature: float = 10.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_hparams(
            self.where,
            {
                "top_k": Int(1),
                "hidden": Int(1),
                "lr": Real(0.0, lo_open=True),
                "epochs": Int(1),
                "batch_size": Int(1),
                "min_temperature": Real(0.0, lo_open=True),
                "max_temperature": Real(0.0, lo_open=True),
                "seed": Int(0),
            },
            {
                "top_k": top_k,
                "hidden": hidden,
                "lr": lr,
                "epochs": epochs,
                "batch_size": batch_size,
                "min_temperature": min_temperature,
                "max_temperature": max_temperature,
                "seed": seed,
            },
        )
        if not min_temperature <= 1.0 <= max_temperature:
            fail(
                self.where,
                "max_temperature",
                f"bounds around 1 (min_temperature={min_temperature!r})",
                repr(max_temperature),
            )
        self.top_k, self.hidden, self.lr, self.epochs = top_k, hidden, lr, epochs
        self.batch_size, self.seed = batch_size, seed
        self.min_temperature, self.max_temperature = float(min_temperature), float(max_temperature)
        self.register_buffer("num_classes_", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, hidden={self.hidden}, lr={self.lr}, epochs={self.epochs}"

    def _features(self, where: str, z: Tensor, features: Any) -> Tensor:
        if features is None:
            u = ca_features(z, k=self.top_k)
        else:
            u = as_tensor(where, "features", features)
            if not u.is_floating_point() or u.dim() != 2 or u.shape[0] != z.shape[0]:
                fail(where, "features", f"a float array of shape ({z.shape[0]}, F)", describe(u))
            check_finite(where, "features", u)
            u = u.to(F64).to(z.device)
        if self.is_fitted and u.shape[1] != self.w1.shape[1]:
            fail(
                where,
                "features",
                f"{self.w1.shape[1]} columns, as the features given to fit",
                f"{u.shape[1]} columns",
            )
        return u

    def _temperature(self, u: Tensor, params: Sequence[Tensor] | None = None) -> Tensor:
        w1, b1, w2, b2 = params if params is not None else (self.w1, self.b1, self.w2, self.b2)
        t = torch.relu(u @ w1.T + b1) @ w2.T + b2
        return t.squeeze(1).clamp(self.min_temperature, self.max_temperature)

    def fit(  # type: ignore[override]
        self, logits: Any, target: Any, features: Any = None
    ) -> CorrectnessAwareCalibrator:
        """Fit on held-out logits ``(N, C)``, int targets and optional features ``(N, F)``
        (default: `ca_features(logits, k=top_k)`)."""
        where = f"{self.where}.fit"
        z, y = self._check_fit_inputs(logits, target)
        correct = z.argmax(dim=1) == y
        if bool(correct.all()) or not bool(correct.any()):
            state = "correct" if bool(correct.all()) else "wrong"
            fail(where, "target", "both correct and wrong predictions", f"only {state} ones")
        device = self.fitted.device
        z, y, correct = z.to(device), y.to(device), correct.to(device)
        u = self._features(where, z, features)
        g = torch.Generator().manual_seed(self.seed)
        d, h = u.shape[1], self.hidden
        bound = 1.0 / d**0.5
        # PyTorch's default uniform init for the hidden layer; the output layer starts at
        # T = 1 so that the first step leaves the uncalibrated logits unchanged.
        w1 = (torch.rand(h, d, generator=g, dtype=F64) * 2 - 1) * bound
        b1 = (torch.rand(h, generator=g, dtype=F64) * 2 - 1) * bound
        params = [
            p.to(device).requires_grad_(True)
            for p in (w1, b1, torch.zeros(1, h, dtype=F64), torch.ones(1, dtype=F64))
        ]
        opt = torch.optim.Adam(params, lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.epochs):
                for idx in torch.randperm(len(y), generator=g).to(device).split(self.batch_size):
                    opt.zero_grad()
                    t = self._temperature(u[idx], params).unsqueeze(1)
                    ca_loss(z[idx] / t, y[idx], correct=correct[idx], validate=False).backward()
                    opt.step()
        self.w1, self.b1, self.w2, self.b2 = (p.detach().clone() for p in params)
        self.num_classes_.fill_(z.shape[1])
        self.fitted.fill_(True)
        return self

    def temperatures(self, logits: Any, features: Any = None) -> Tensor:
        """The per-sample temperatures ``(M,)`` (float64) of the logits' rows."""
        where = f"{self.where}.temperatures"
        if not self.is_fitted:
            fail(
                where,
                "self",
                "a fitted calibrator (call fit first)",
                "an unfitted one",
                RuntimeError,
            )
        z = rows(check_logits(where, logits, int(self.num_classes_))).to(F64).to(self.w1.device)
        return self._temperature(self._features(where, z, features))

    def transform(self, logits: Any, features: Any = None) -> Tensor:  # type: ignore[override]
        """Calibrated logits ``z / T(u)`` of the logits' shape and (float32 for half)
        dtype; `features` as given to `fit` (default: computed from the logits)."""
        where = f"{self.where}.transform"
        if not self.is_fitted:
            fail(
                where,
                "self",
                "a fitted calibrator (call fit first)",
                "an unfitted one",
                RuntimeError,
            )
        z = check_logits(where, logits, int(self.num_classes_))
        r = rows(z).to(F64).to(self.w1.device)
        t = self._temperature(self._features(where, r, features))
        return unrows(r / t.unsqueeze(1), z)

    def predict_proba(self, logits: Any, features: Any = None) -> Tensor:  # type: ignore[override]
        return torch.softmax(self.transform(logits, features), dim=1)
