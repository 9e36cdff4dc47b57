"""The Fourier head: a continuous density over ``[-1, 1]`` behind a categorical output.

Gillman, Ramesh, Cherian, Xiao, Heinrich, Sun. Fourier Head: Helping Large Language Models
Learn Complex Probability Distributions. ICLR 2025, arXiv:2410.22269; code:
github.com/nate-gillman/fourier-head (``fourier_head.py``).

A linear layer maps a hidden vector to ``m + 1`` complex coefficients ``a_0 .. a_m``; their
autocorrelation ``c_k = sum_l a_{l+k} conj(a_l)`` defines the density

    f(x) = 1/2 + Re sum_{k=1}^{m} (c_k / c_0) exp(i pi k x) = |sum_l a_l exp(i pi l x)|^2 / (2 c_0)

on ``[-1, 1]``: non-negative and integrating to 1 by construction, and smooth, so
neighbouring bins get similar probabilities. ``f`` is evaluated at the centres of ``n``
equal bins and normalised to a probability vector ``p``; the head returns
``log(p + eps)``, logits whose softmax is (almost exactly) ``p``, to be trained with
cross-entropy over the bins (any multiclass loss of ``losslab.functional``). The
frequency regulariser ``gamma * 2 * mean_batch sum_k 2 pi^2 k^2 |c_k|^2`` penalises high
frequencies (rough densities).
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor, nn

from losslab._validate import Int, Real, describe, fail
from losslab.functional.regression_bins import RegressionBins

_WHERE = "FourierHead"


class FourierHead(nn.Module):
    """Hidden vector -> Fourier density on ``[-1, 1]`` -> logits over ``num_bins`` bins.

    Args:
        in_features: size of the hidden vector.
        num_bins: number of output bins (classes) on ``[-1, 1]``; their centres are
            ``self.bins.centers()``.
        num_frequencies: ``m >= 0``, the highest frequency of the density (task-specific:
            12 in the paper's toy experiments, 42 in its README example); ``m = 0`` gives
            the uniform distribution.
        regularization: ``gamma >= 0``, weight of the frequency regulariser returned by
            ``forward(..., return_regularization=True)``; 0 as the official class default,
            1e-6 in the paper's experiments.
        eps: ``> 0``, added to the probabilities before the logarithm; 1e-5 as the code.
        device: of the linear layer.
        dtype: of the linear layer.

    The linear layer's default initialisation is divided by 100 (weight and bias), as in
    the official code, so that the head starts near the uniform distribution.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> from losslab.heads import FourierHead
        >>> _ = torch.manual_seed(0)
        >>> head = FourierHead(16, num_bins=32, num_frequencies=8, regularization=1e-6)
        >>> h = torch.randn(4, 16)
        >>> logits, reg = head(h, return_regularization=True)
        >>> logits.shape, reg.shape
        (torch.Size([4, 32]), torch.Size([]))
        >>> loss = F.ce(logits, torch.tensor([3, 10, 20, 31])) + reg
        >>> torch.allclose(torch.softmax(logits, -1).sum(-1), torch.ones(4))
        True
    """

    def __init__(
        self,
        in_features: int,
        num_bins: int,
        num_frequencies: int,
        *,
        regularization: float = 0.0,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        Int(1).check(_WHERE, "in_features", in_features)
        Int(1).check(_WHERE, "num_bins", num_bins)
        Int(0).check(_WHERE, "num_frequencies", num_frequencies)
        Real(0.0).check(_WHERE, "regularization", regularization)
        Real(0.0, lo_open=True).check(_WHERE, "eps", eps)
        self.in_features = in_features
        self.num_bins = num_bins
        self.num_frequencies = num_frequencies
        self.regularization = float(regularization)
        self.eps = float(eps)
        self.bins = RegressionBins(-1.0, 1.0, num_bins)
        m = num_frequencies
        self.linear = nn.Linear(in_features, 2 * (m + 1), device=device, dtype=dtype)
        with torch.no_grad():
            self.linear.weight.div_(100.0)
            self.linear.bias.div_(100.0)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_bins={self.num_bins}, "
            f"num_frequencies={self.num_frequencies}, regularization={self.regularization}, "
            f"eps={self.eps}"
        )

    def autocorrelation(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Real and imaginary parts of ``c_0 .. c_m``, each ``(..., m + 1)``."""
        if not isinstance(hidden, Tensor) or not hidden.is_floating_point():
            fail(_WHERE, "hidden", "a floating-point tensor", describe(hidden), TypeError)
        if hidden.dim() < 1 or hidden.shape[-1] != self.in_features:
            fail(_WHERE, "hidden", f"shape (..., {self.in_features})", describe(hidden))
        a = self.linear(hidden)
        if a.dtype not in (torch.float32, torch.float64):
            a = a.float()
        m1 = self.num_frequencies + 1
        re, im = a[..., :m1], a[..., m1:]
        c_re, c_im = [], []
        for k in range(m1):
            # c_k = sum_l a_{l+k} conj(a_l)
            hr, hi, lr, li = re[..., k:], im[..., k:], re[..., : m1 - k], im[..., : m1 - k]
            c_re.append((hr * lr + hi * li).sum(dim=-1))
            c_im.append((hi * lr - hr * li).sum(dim=-1))
        return torch.stack(c_re, dim=-1), torch.stack(c_im, dim=-1)

    def density(self, hidden: Tensor) -> Tensor:
        """The density ``f`` at the bin centres, ``(..., num_bins)``."""
        return self._density(*self.autocorrelation(hidden))

    def _density(self, c_re: Tensor, c_im: Tensor) -> Tensor:
        dtype = c_re.dtype
        # cos / sin (pi k x_j) at the bin centres, built in the compute dtype (m x n values:
        # negligible next to the linear layer, and exact in float64)
        k = torch.arange(1, self.num_frequencies + 1, dtype=dtype, device=c_re.device)
        x = self.bins.centers(dtype, c_re.device)
        angle = math.pi * k[:, None] * x[None, :]
        # c_0 = sum |a_l|^2 is 0 only when every coefficient is 0: the density is then 1/2.
        c0 = c_re[..., :1].clamp_min(torch.finfo(dtype).tiny)
        wave = c_re[..., 1:] @ torch.cos(angle) - c_im[..., 1:] @ torch.sin(angle)
        # f >= 0 exactly; the clamp removes rounding below 0 before the logarithm.
        return (0.5 + wave / c0).clamp_min(0.0)

    def pmf(self, hidden: Tensor) -> Tensor:
        """Bin probabilities ``(..., num_bins)``: the density normalised over the centres."""
        f = self.density(hidden)
        return f / f.sum(dim=-1, keepdim=True)

    @overload
    def forward(self, hidden: Tensor, return_regularization: Literal[False] = ...) -> Tensor: ...
    @overload
    def forward(
        self, hidden: Tensor, return_regularization: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...

    def forward(
        self, hidden: Tensor, return_regularization: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``log(pmf + eps)`` ``(..., num_bins)`` of hidden vectors ``(..., in_features)``;
        with ``return_regularization=True`` also the regulariser, a scalar
        ``gamma * 2 * mean_batch sum_k 2 pi^2 k^2 |c_k|^2`` (on the unnormalised ``c_k``)."""
        c_re, c_im = self.autocorrelation(hidden)
        f = self._density(c_re, c_im)
        logits = torch.log(f / f.sum(dim=-1, keepdim=True) + self.eps)
        if not return_regularization:
            return logits
        k = torch.arange(self.num_frequencies + 1, dtype=c_re.dtype, device=c_re.device)
        power = (c_re**2 + c_im**2) * (2 * math.pi**2 * k**2)
        per_row = power.sum(dim=-1)
        reg = self.regularization * 2 * (per_row.mean() if per_row.numel() else per_row.sum())
        return logits, reg


__all__ = ["FourierHead"]
