"""Scalar regression as classification over bins: HL-Gauss and two-hot targets.

Farebrother et al. (ICML 2024) train value functions and regressors with cross-entropy on
a histogram of the target instead of squared error. The losses here are multiclass
losses over ``C`` bins in *bin coordinates* (bin ``k`` is centred at ``k``, edges at
``k +- 1/2``); :class:`RegressionBins` maps real values on ``[v_min, v_max]`` to and from
them::

    bins = RegressionBins(v_min=0.0, v_max=10.0, num_bins=64)
    loss = F.hl_gauss(logits, bins.encode(y))   # y: (N,) real targets
    prediction = bins.decode(logits)            # expected value under softmax(logits)

A target is read as a position on the bin axis: an index target ``k`` is the centre of bin
``k``; a probability target is the mean of its distribution, ``sum_k q_k k``, so that the
exact two-hot encoding of a value (``bins.encode``) carries that value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab._validate import Real, describe, fail
from losslab.functional._fused import as_rows, log_softmax_at
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


def _position(inp: MulticlassInput) -> Tensor:
    """The target's position on the bin axis, ``(N, *)``: the index, or the mean bin of a
    probability target."""
    if inp.soft is None:
        return inp.index.to(inp.logits.dtype)
    shape = (1, -1) + (1,) * (inp.soft.dim() - 2)
    k = torch.arange(inp.num_classes, dtype=inp.soft.dtype, device=inp.soft.device)
    return (inp.soft * k.view(shape)).sum(dim=1)


#: HL-Gauss' histogram is evaluated within this many sigmas (plus a bin) of the target:
#: the Gaussian mass beyond 10 sigma is below 2e-23, under float64's resolution of 1.
HL_GAUSS_REACH = 10.0


def gaussian_histogram(
    position: Tensor,
    edges: Tensor,
    sigma: float,
    dim: int = 1,
    support: tuple[float, float] | None = None,
) -> Tensor:
    r"""Mass of $\mathcal N(\text{position}, \sigma^2)$ in each bin between consecutive
    ``edges``, truncated to ``support`` (default: the edges' range) and renormalised; the
    bins go on ``dim``. ``edges`` is 1-D, or of ``position``'s shape with the edges on
    ``dim`` (per-element windows of bins)."""
    dim = dim % (position.dim() + 1)
    if edges.dim() == 1:
        shape = [1] * (position.dim() + 1)
        shape[dim] = -1
        edges = edges.view(shape)
    width = math.sqrt(2.0) * sigma
    cdf = torch.erf((edges - position.unsqueeze(dim)) / width)
    mass = cdf.narrow(dim, 1, cdf.shape[dim] - 1) - cdf.narrow(dim, 0, cdf.shape[dim] - 1)
    if support is None:
        return mass / (cdf.narrow(dim, cdf.shape[dim] - 1, 1) - cdf.narrow(dim, 0, 1))
    lo, hi = (torch.erf((b - position.unsqueeze(dim)) / width) for b in support)
    return mass / (hi - lo)


@register(
    "hl_gauss",
    family="regression_bins",
    module="HLGaussLoss",
    reference="Farebrother, Orbay, Vuong, Taiga, Chebotar, Xiao, Irpan, Levine, Castro, "
    "Faust, Kumar, Agarwal. Stop Regressing: Training Value Functions via Classification for "
    "Scalable Deep RL. ICML 2024, arXiv:2403.03950 (Appendix A code)",
    properties={"shift_invariant": {}, "convex": {}, "reduces_to_ce": {"sigma": 0.01}},
    constraints={"sigma": Real(0.0, lo_open=True)},
    neg_inf_ok=False,
    test_configs=({"sigma": 0.3}, {"sigma": 2.0}),
)
def hl_gauss(inp: MulticlassInput, *, sigma: float = 0.75) -> Tensor:
    r"""Cross-entropy to a Gaussian histogram of the target (HL-Gauss).

    $$
    \ell(z, u) = -\sum_{i=0}^{C-1} p_i(u) \log \mathrm{softmax}(z)_i,\qquad
    p_i(u) = \frac{\Phi\big(\frac{i + 1/2 - u}{\sigma}\big) -
    \Phi\big(\frac{i - 1/2 - u}{\sigma}\big)}{\Phi\big(\frac{C - 1/2 - u}{\sigma}\big) -
    \Phi\big(\frac{-1/2 - u}{\sigma}\big)}
    $$

    with $u$ the target's position on the bin axis (bin $k$ centred at $k$): an index
    target is $u = k$, a probability target its mean $\sum_k q_k k$, e.g. the two-hot
    encoding of a real value by `RegressionBins.encode`. $p(u)$ is the mass of
    $\mathcal N(u, \sigma^2)$ in each bin, truncated to the support; $\sigma$ is in bin
    widths. The paper's target for a value $y$ on bins of width $\varsigma$ is this with
    $u = (y - v_{\min})/\varsigma - 1/2$ and $\sigma/\varsigma$ = `sigma`. Every bin gets
    mass, so a `-inf` logit is an error. $\sigma \to 0$ gives cross-entropy on the bin of
    $u$. On a bin axis longer than about $20\sigma$ bins, the sum runs over the bins
    within $10\sigma$ (plus one) of $u$: the mass beyond is below $2 \cdot 10^{-23}$ of
    the total, under float64's resolution.

    Args:
        sigma: width $\sigma > 0$ of the Gaussian in bin widths; 0.75 as the paper
            recommends ($\sigma/\varsigma = 0.75$).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
        >>> F.hl_gauss(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.8941, 1.3471])
    """
    u = _position(inp)
    c = inp.num_classes
    reach = math.ceil(HL_GAUSS_REACH * sigma) + 1
    if 2 * reach + 2 < c:
        # Only the bins within `reach` of u hold mass the float can see: the CE takes
        # log p at those 2 reach + 2 bins (LogSoftmaxAt) instead of a full histogram.
        first = u.detach().floor().long() - reach
        bins = first.unsqueeze(-1) + torch.arange(2 * reach + 2, device=u.device)
        edges = first.unsqueeze(-1).to(u.dtype) - 0.5 + torch.arange(2 * reach + 3).to(u)
        target = gaussian_histogram(u, edges, sigma, dim=-1, support=(-0.5, c - 0.5))
        target = torch.where((bins >= 0) & (bins < c), target, 0.0)
        idx = bins.clamp(0, c - 1)
        rows = log_softmax_at(as_rows(inp.logits), idx.reshape(-1, idx.shape[-1]))
        return -(target * rows.reshape(idx.shape)).sum(dim=-1)
    edges = torch.arange(c + 1, dtype=u.dtype, device=u.device) - 0.5
    target = gaussian_histogram(u, edges, sigma)
    logp = torch.log_softmax(inp.logits, dim=1)
    return -(target * logp).sum(dim=1)


@register(
    "two_hot",
    family="regression_bins",
    module="TwoHotLoss",
    reference="Schrittwieser et al. Mastering Atari, Go, Chess and Shogi by Planning with a "
    "Learned Model (MuZero). Nature 2020, arXiv:1911.08265; as a regression loss: "
    "Farebrother et al. Stop Regressing. ICML 2024, arXiv:2403.03950",
    properties={
        "shift_invariant": {},
        "convex": {},
        "classification_calibrated": {},
        "reduces_to_ce": {},
    },
)
def two_hot(inp: MulticlassInput) -> Tensor:
    r"""Cross-entropy to the two-hot encoding of the target's position on the bin axis.

    $$
    \ell(z, u) = -(1 - f)\log \mathrm{softmax}(z)_j - f \log \mathrm{softmax}(z)_{j+1},
    \qquad j = \lfloor u \rfloor,\quad f = u - j
    $$

    with $u \in [0, C-1]$ the target's position (bin $k$ centred at $k$): an index target
    is $u = k$ (the loss is then cross-entropy), a probability target its mean
    $\sum_k q_k k$. The two-hot distribution is the only one on two neighbouring bins whose
    mean is $u$, so `two_hot(logits, bins.encode(y))` is cross-entropy to the two-hot
    target of $y$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> from losslab.functional import RegressionBins
        >>> bins = RegressionBins(0.0, 4.0, num_bins=4)  # centres 0.5, 1.5, 2.5, 3.5
        >>> logits = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
        >>> F.two_hot(logits, bins.encode(torch.tensor([1.0])))
        tensor(1.0923)
    """
    u = _position(inp).clamp(0, inp.num_classes - 1)
    j = u.floor().clamp(max=max(inp.num_classes - 2, 0))
    frac = u - j
    lo = j.long()
    hi = (lo + 1).clamp(max=inp.num_classes - 1)
    idx = torch.stack((lo, hi), dim=-1)
    at = log_softmax_at(as_rows(inp.logits), idx.reshape(-1, 2)).reshape(idx.shape)
    lp_lo, lp_hi = at[..., 0], at[..., 1]
    # where(): a bin with weight 0 may hold a masked (-inf) logit.
    return -(
        torch.where(frac < 1, (1 - frac) * lp_lo, 0.0) + torch.where(frac > 0, frac * lp_hi, 0.0)
    )


class RegressionBins:
    """Equal-width bins on ``[v_min, v_max]`` for regression as classification.

    ``num_bins`` bins of width ``(v_max - v_min) / num_bins`` (so ``num_bins + 1`` edges);
    bin ``k`` is centred at ``v_min + (k + 1/2) * width``. Targets and predictions use the
    bin axis (class axis 1, as logits).

    Args:
        v_min: lower edge of the support.
        v_max: upper edge of the support (``> v_min``).
        num_bins: number of bins (classes), ``>= 1``.

    Example:
        >>> import torch
        >>> from losslab.functional import RegressionBins
        >>> bins = RegressionBins(0.0, 4.0, num_bins=4)
        >>> bins.encode(torch.tensor([1.0, 2.5]))
        tensor([[0.5000, 0.5000, 0.0000, 0.0000],
                [0.0000, 0.0000, 1.0000, 0.0000]])
        >>> bins.hl_gauss(torch.tensor([2.0]))
        tensor([[0.0881, 0.4119, 0.4119, 0.0881]])
        >>> bins.decode(torch.log(bins.encode(torch.tensor([1.3]))))
        tensor([1.3000])
    """

    def __init__(self, v_min: float, v_max: float, num_bins: int) -> None:
        where = "RegressionBins"
        for name, value in (("v_min", v_min), ("v_max", v_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(where, name, "a finite real number", describe(value), TypeError)
            if not math.isfinite(value):
                fail(where, name, "a finite real number", repr(value))
        if v_max <= v_min:
            fail(where, "v_max", f"a value above v_min={v_min!r}", repr(v_max))
        if isinstance(num_bins, bool) or not isinstance(num_bins, int):
            fail(where, "num_bins", "an integer >= 1", describe(num_bins), TypeError)
        if num_bins < 1:
            fail(where, "num_bins", "an integer >= 1", repr(num_bins))
        self.v_min = float(v_min)
        self.v_max = float(v_max)
        self.num_bins = num_bins
        self.width = (self.v_max - self.v_min) / num_bins

    def __repr__(self) -> str:
        return (
            f"RegressionBins(v_min={self.v_min!r}, v_max={self.v_max!r}, num_bins={self.num_bins})"
        )

    def edges(
        self, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> Tensor:
        """The ``num_bins + 1`` bin edges."""
        return torch.linspace(self.v_min, self.v_max, self.num_bins + 1, dtype=dtype, device=device)

    def centers(
        self, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> Tensor:
        """The ``num_bins`` bin centres."""
        e = self.edges(dtype=dtype, device=device)
        return (e[:-1] + e[1:]) / 2

    def position(self, y: Tensor) -> Tensor:
        """Values as positions on the bin axis (bin ``k`` centred at ``k``), not clipped."""
        return (self._values(y, "y") - self.v_min) / self.width - 0.5

    def encode(self, y: Tensor) -> Tensor:
        """Two-hot probabilities ``(N, num_bins, *)`` of values ``y`` ``(N, *)``: the two
        neighbouring centres around ``y``, weighted so that the mean is ``y``. Values
        beyond the first or last centre are clipped to it."""
        u = self.position(y).clamp(0, self.num_bins - 1)
        j = u.floor().clamp(max=max(self.num_bins - 2, 0))
        frac = (u - j).unsqueeze(1)
        lo = j.long().unsqueeze(1)
        hi = (lo + 1).clamp(max=self.num_bins - 1)
        shape = list(u.shape)
        shape.insert(1, self.num_bins)
        out = torch.zeros(shape, dtype=u.dtype, device=u.device)
        out.scatter_add_(1, lo, 1 - frac)
        return out.scatter_add_(1, hi, frac)

    def two_hot(self, y: Tensor) -> Tensor:
        """The two-hot target distribution of ``y`` (the same as :meth:`encode`)."""
        return self.encode(y)

    def hl_gauss(self, y: Tensor, sigma: float = 0.75) -> Tensor:
        """HL-Gauss target probabilities ``(N, num_bins, *)``: the mass of
        ``N(y, (sigma * width)^2)`` in each bin, truncated to ``[v_min, v_max]`` and
        renormalised; ``y`` is clipped to ``[v_min, v_max]``."""
        Real(0.0, lo_open=True).check("RegressionBins", "sigma", sigma)
        v = self._values(y, "y").clamp(self.v_min, self.v_max)
        return gaussian_histogram(v, self.edges(v.dtype, v.device), sigma * self.width)

    def decode(self, logits: Tensor) -> Tensor:
        """Expected value ``sum_k softmax(logits)_k * centre_k`` ``(N, *)`` of logits
        ``(N, num_bins, *)``."""
        z = self._values(logits, "logits")
        if z.dim() < 2 or z.shape[1] != self.num_bins:
            fail(
                "RegressionBins.decode",
                "logits",
                f"shape (N, {self.num_bins}, ...) with the bins on dim 1",
                describe(z),
            )
        c = self.centers(z.dtype, z.device).view((1, -1) + (1,) * (z.dim() - 2))
        return (torch.softmax(z, dim=1) * c).sum(dim=1)

    @staticmethod
    def _values(y: object, name: str) -> Tensor:
        if not isinstance(y, Tensor) or not y.is_floating_point():
            fail("RegressionBins", name, "a floating-point tensor", describe(y), TypeError)
        return y
