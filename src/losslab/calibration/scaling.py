r"""Post-hoc scaling calibrators fitted by minimising the validation NLL: temperature,
vector, matrix and Dirichlet scaling.

| calibrator | calibrated logits | parameters |
|---|---|---|
| `TemperatureScaling` | $z / T$ | 1 |
| `VectorScaling` | $v \odot z + b$ | 2K |
| `MatrixScaling` | $W z + b$ | K(K + 1) |
| `DirichletScaling` | $W \log \mathrm{softmax}(z) + b$ | K(K + 1) |

Each objective is convex in its parameters (temperature scaling in $1/T$), the fit starts
at the identity map and uses full-batch L-BFGS with a strong-Wolfe line search, so the
fitted map never ends above the identity's objective (checked again after the fit: a map
that does not improve on the identity is replaced by it). Without a regulariser the
objective is the validation NLL, which therefore never increases; a regularised matrix or
Dirichlet map trades NLL for its penalty.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab._validate import Real, check_hparams, describe, fail
from losslab.calibration._base import F64, Calibrator, lbfgs, nll_of

__all__ = ["DirichletScaling", "MatrixScaling", "TemperatureScaling", "VectorScaling"]


def _check_max_iter(where: str, max_iter: object) -> int:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        fail(where, "max_iter", "a positive int", describe(max_iter))
    return max_iter


class TemperatureScaling(Calibrator):
    r"""Temperature scaling: one scalar $T > 0$ for all logits, fitted by minimising the
    validation NLL of $\mathrm{softmax}(z / T)$.

    $$ T^* = \arg\min_{T} -\frac1n \sum_i \log \mathrm{softmax}(z_i / T)_{y_i} $$

    The argmax, hence accuracy, is unchanged. L-BFGS runs on $\log T$ from the reference
    code's $T = 1.5$; the NLL is convex in $1/T$, so the line search reaches the minimum.
    $T$ is kept in `[min_temperature, max_temperature]`: on separable validation data the
    NLL keeps decreasing as $T \to 0$, and on uninformative logits as $T \to \infty$.

    Args:
        min_temperature: lower bound of $T$.
        max_temperature: upper bound of $T$.
        max_iter: L-BFGS iterations.

    Reference: Guo, Pleiss, Sun, Weinberger, On Calibration of Modern Neural Networks,
    ICML 2017, arXiv:1706.04599; code: gpleiss/temperature_scaling.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (400,), generator=g)
        >>> z = 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(400, 3, generator=g))
        >>> ts = TemperatureScaling().fit(z, y)
        >>> round(ts.temperature, 2)
        5.02
        >>> torch.equal(ts.transform(z).argmax(1), z.argmax(1))
        True
    """

    temperature_: Tensor

    def __init__(
        self,
        *,
        min_temperature: float = 1e-3,
        max_temperature: float = 1e3,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        check_hparams(
            self.where,
            {
                "min_temperature": Real(0.0, lo_open=True),
                "max_temperature": Real(0.0, lo_open=True),
            },
            {"min_temperature": min_temperature, "max_temperature": max_temperature},
        )
        if not min_temperature <= 1.0 <= max_temperature:
            fail(
                self.where,
                "max_temperature",
                f"bounds around 1 (min_temperature={min_temperature!r})",
                repr(max_temperature),
            )
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        self.max_iter = _check_max_iter(self.where, max_iter)
        self.register_buffer("temperature_", torch.ones((), dtype=F64))

    @property
    def temperature(self) -> float:
        """The fitted temperature (1.0 before `fit`)."""
        return float(self.temperature_)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.6g}"

    def _fit(self, z: Tensor, y: Tensor) -> None:
        log_t = torch.tensor(math.log(1.5), dtype=F64, device=z.device, requires_grad=True)
        lbfgs([log_t], lambda: nll_of(z * torch.exp(-log_t), y), self.max_iter)
        with torch.no_grad():
            t = float(log_t.exp().clamp(self.min_temperature, self.max_temperature))
            if nll_of(z / t, y) > nll_of(z, y):
                t = 1.0
        self.temperature_.fill_(t)

    def _calibrate(self, z: Tensor) -> Tensor:
        return z / self.temperature_


class VectorScaling(Calibrator):
    r"""Vector scaling: a per-class scale and offset of the logits, fitted by minimising
    the validation NLL.

    $$ \tilde z = v \odot z + b $$

    Args:
        max_iter: L-BFGS iterations.

    Reference: Guo, Pleiss, Sun, Weinberger, ICML 2017, arXiv:1706.04599 (section 4.2).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (400,), generator=g)
        >>> z = 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(400, 3, generator=g))
        >>> vs = VectorScaling().fit(z, y)
        >>> vs.scale.shape, vs.transform(z).shape
        (torch.Size([3]), torch.Size([400, 3]))
    """

    _lazy = ("scale", "bias")
    scale: Tensor
    bias: Tensor

    def __init__(self, *, max_iter: int = 200) -> None:
        super().__init__()
        self.max_iter = _check_max_iter(self.where, max_iter)

    def min_samples(self, num_classes: int) -> tuple[int, str]:
        return 2 * num_classes, f"one per parameter: 2 x {num_classes} classes"

    def _num_classes(self) -> int | None:
        return self.scale.numel()

    def _fit(self, z: Tensor, y: Tensor) -> None:
        k = z.shape[1]
        v = torch.ones(k, dtype=F64, device=z.device, requires_grad=True)
        b = torch.zeros(k, dtype=F64, device=z.device, requires_grad=True)
        lbfgs([v, b], lambda: nll_of(z * v + b, y), self.max_iter)
        with torch.no_grad():
            if nll_of(z * v + b, y) > nll_of(z, y):
                v.fill_(1.0)
                b.zero_()
        self.scale, self.bias = v.detach().clone(), b.detach().clone()

    def _calibrate(self, z: Tensor) -> Tensor:
        return z * self.scale + self.bias


class MatrixScaling(Calibrator):
    r"""Matrix scaling: a full affine map of the logits, fitted by minimising the
    validation NLL plus an optional regulariser.

    $$ \tilde z = W z + b $$

    The regulariser is Dirichlet calibration's (see `DirichletScaling` for `reg_lambda`,
    `reg_mu`, `reg_norm` and `ref_row`); without one the map has K(K + 1) free parameters
    and `fit` asks for at least that many samples.

    Reference: Guo, Pleiss, Sun, Weinberger, ICML 2017, arXiv:1706.04599 (section 4.2);
    regulariser: Kull et al., NeurIPS 2019, arXiv:1910.12656.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (400,), generator=g)
        >>> z = 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(400, 3, generator=g))
        >>> MatrixScaling(reg_lambda=1e-3, reg_mu=1e-3).fit(z, y).weight.shape
        torch.Size([3, 3])
    """

    _lazy = ("weight", "bias")
    weight: Tensor
    bias: Tensor

    def __init__(
        self,
        *,
        reg_lambda: float = 0.0,
        reg_mu: float | None = None,
        reg_norm: bool = False,
        ref_row: bool = True,
        max_iter: int = 500,
    ) -> None:
        super().__init__()
        check_hparams(
            self.where,
            {"reg_lambda": Real(0.0), "reg_mu": Real(0.0, allow_none=True)},
            {"reg_lambda": reg_lambda, "reg_mu": reg_mu},
        )
        for name, flag in (("reg_norm", reg_norm), ("ref_row", ref_row)):
            if not isinstance(flag, bool):
                fail(self.where, name, "a bool", describe(flag), TypeError)
        self.reg_lambda = float(reg_lambda)
        self.reg_mu = None if reg_mu is None else float(reg_mu)
        self.reg_norm = reg_norm
        self.ref_row = ref_row
        self.max_iter = _check_max_iter(self.where, max_iter)

    def extra_repr(self) -> str:
        return (
            f"reg_lambda={self.reg_lambda!r}, reg_mu={self.reg_mu!r}, "
            f"reg_norm={self.reg_norm!r}, ref_row={self.ref_row!r}"
        )

    @property
    def regularised(self) -> bool:
        return self.reg_lambda > 0 or bool(self.reg_mu)

    def min_samples(self, num_classes: int) -> tuple[int, str]:
        if self.regularised:
            return 2, "two"
        k = num_classes
        return k * (k + 1), f"one per parameter of the unregularised {k} x {k + 1} map"

    def _num_classes(self) -> int | None:
        return self.bias.numel()

    def _features(self, z: Tensor) -> Tensor:
        return z

    def _effective(self, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        # The softmax is unchanged by adding one row to every row; the reference code
        # fixes that freedom by subtracting the last row, and regularises the result.
        if self.ref_row:
            return w - w[-1:], b - b[-1:]
        return w, b

    def penalty(self, w: Tensor, b: Tensor) -> Tensor:
        """The regulariser of the effective (reference-row) parameters."""
        k = w.shape[0]
        if self.reg_mu is None:
            lam = self.reg_lambda / (k * (k + 1)) if self.reg_norm else self.reg_lambda
            return lam * ((w**2).sum() + (b**2).sum())
        lam = self.reg_lambda / (k * (k - 1)) if self.reg_norm else self.reg_lambda
        mu = self.reg_mu / k if self.reg_norm else self.reg_mu
        off = w - torch.diag_embed(torch.diagonal(w))
        return lam * (off**2).sum() + mu * (b**2).sum()

    def objective(self, z: Tensor, y: Tensor, w: Tensor, b: Tensor) -> Tensor:
        """Mean NLL of the map at (w, b) plus the regulariser (float64 rows)."""
        we, be = self._effective(w, b)
        return nll_of(self._features(z) @ we.T + be, y) + self.penalty(we, be)

    def _fit(self, z: Tensor, y: Tensor) -> None:
        k = z.shape[1]
        w = torch.eye(k, dtype=F64, device=z.device).requires_grad_(True)
        b = torch.zeros(k, dtype=F64, device=z.device, requires_grad=True)
        identity = self.objective(z, y, w, b).detach()
        lbfgs([w, b], lambda: self.objective(z, y, w, b), self.max_iter)
        with torch.no_grad():
            if self.objective(z, y, w, b) > identity:
                w.copy_(torch.eye(k, dtype=F64))
                b.zero_()
            we, be = self._effective(w, b)
        self.weight, self.bias = we.detach().clone(), be.detach().clone()

    def _calibrate(self, z: Tensor) -> Tensor:
        return self._features(z) @ self.weight.T + self.bias


class DirichletScaling(MatrixScaling):
    r"""Dirichlet calibration: an affine map of the log-probabilities, fitted by
    minimising the validation NLL plus the off-diagonal and intercept regulariser (ODIR).

    $$ \tilde z = W \log \mathrm{softmax}(z) + b, \qquad
    \mathcal L = \mathrm{NLL} + \lambda \sum_{i \ne j} w_{ij}^2 + \mu \sum_j b_j^2 $$

    As in the reference code: `reg_mu=None` replaces ODIR by an L2 penalty
    $\lambda \sum (w_{ij}^2 + b_j^2)$ on every parameter; `reg_norm=True` divides
    $\lambda$ by $K(K-1)$ and $\mu$ by $K$ (the paper's normalised ODIR; for L2, $\lambda$
    by $K(K+1)$); `ref_row=True` subtracts the last row of $(W, b)$ from every row before
    the penalty (the softmax does not change). The defaults are the code's:
    no regularisation. The paper selects $\lambda$ and $\mu$ by cross-validation.

    Args:
        reg_lambda: $\lambda \ge 0$, weight of the off-diagonal (or L2) penalty.
        reg_mu: $\mu \ge 0$ for ODIR, or `None` for the L2 penalty.
        reg_norm: divide the weights by the number of penalised entries.
        ref_row: regularise the parameters relative to the last row.
        max_iter: L-BFGS iterations.

    Reference: Kull, Perello-Nieto, Kangsepp, Silva Filho, Song, Flach, Beyond temperature
    scaling: Obtaining well-calibrated multiclass probabilities with Dirichlet
    calibration, NeurIPS 2019, arXiv:1910.12656; code: dirichletcal/dirichlet_python.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (400,), generator=g)
        >>> z = 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(400, 3, generator=g))
        >>> cal = DirichletScaling(reg_lambda=1e-2, reg_mu=1e-2, reg_norm=True).fit(z, y)
        >>> cal.predict_proba(z[:2]).sum(1)
        tensor([1.0000, 1.0000])
    """

    def _features(self, z: Tensor) -> Tensor:
        return torch.log_softmax(z, dim=1)
