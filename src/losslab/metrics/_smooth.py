r"""Smooth ECE (Blasiok & Nakkiran, ICLR 2024), computed from additive grid statistics.

For confidences $f_i$ and outcomes $y_i$, the residuals $r_i = f_i - y_i$ and the unit
masses are smoothed with a Gaussian kernel $K_\sigma$ reflected at 0 and 1,
$R(t) = \sum_i K_\sigma(t, f_i)\, r_i$ and $D(t) = \sum_i K_\sigma(t, f_i)$, and

$$ \mathrm{smECE}_\sigma = \frac{\int_0^1 |R(t)|\, dt}{\int_0^1 D(t)\, dt} , $$

(the ratio compensates the kernel mass that the grid truncates). smECE is
$\mathrm{smECE}_{\sigma^*}$ at the fixed point $\sigma^* = \mathrm{smECE}_{\sigma^*}$
($\mathrm{smECE}_\sigma$ decreases in $\sigma$), found by bisection.

The discretisation is the one of the authors' package (`relplot` 1.0.3, `smECE`): each
sample is split linearly between the two neighbouring points of a uniform grid, the kernel
is evaluated on the grid's own points around its centre and convolved with the reflected
grid values, the result is interpolated at ``max(round(10 / sigma), 200)`` points with
1e-4 added to the density, and 10 bisection steps keep the upper end of $[0, 1]$. relplot
deposits on a grid of ``max(2000, round(20 / sigma)) // 2`` intervals, 1000 for
$\sigma \ge 0.01$; here the grids are nested (1000, 4000 or 16000 intervals, the coarsest
with at least as many as relplot's): samples are deposited once on the finest grid and
restricted exactly (hat-function weights) to a coarser one. The two deposits are then
fixed-size vectors that add across batches and ranks, so the stateful metric equals the
functional one; the value equals relplot's when $\sigma^* \ge 0.01$ and uses a finer grid
below.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64

#: Interval counts of the nested grids; the finest covers every sigma whose value the
#: bisection computes (sigma >= EPS = 1e-3 needs 20 / 1e-3 / 2 = 10000 intervals).
LEVELS = (1000, 4000, 16000)
FINEST = LEVELS[-1]
EPS = 1e-3
REFINE = 10
DENSITY_EPS = 1e-4


def deposit(values: Tensor, weights: Tensor, intervals: int = FINEST) -> Tensor:
    """Linear (hat-function) deposit of ``weights`` at positions ``values`` in [0, 1] onto
    a grid of ``intervals + 1`` points."""
    grid = torch.zeros(intervals + 1, dtype=F64, device=values.device)
    if values.numel() == 0:
        return grid
    x = values.to(F64) * intervals
    left = x.floor().long().clamp_(0, intervals - 1)
    frac = x - left
    w = weights.to(F64)
    grid.index_add_(0, left, (1 - frac) * w)
    grid.index_add_(0, left + 1, frac * w)
    return grid


def restrict(fine: Tensor, intervals: int) -> Tensor:
    """Exact restriction of a finest-grid deposit to a grid of ``intervals`` intervals:
    a coarse hat function is linear between fine points, so depositing on the fine grid
    and restricting equals depositing on the coarse grid."""
    r = (fine.numel() - 1) // intervals
    if r == 1:
        return fine
    ramp = torch.arange(1, r + 1, dtype=F64, device=fine.device) / r
    hat = torch.cat([ramp, ramp[:-1].flip(0)])  # length 2r - 1, peak 1 at the centre
    padded = torch.nn.functional.pad(fine.view(1, 1, -1), (r - 1, r - 1))
    return torch.nn.functional.conv1d(padded, hat.view(1, 1, -1), stride=r).view(-1)


def reflected_smooth(values: Tensor, sigma: float) -> Tensor:
    """Convolve grid values with a Gaussian (evaluated on the grid's own points around
    its centre) after reflecting them at both ends; same length as ``values``."""
    g = values.numel()
    t = torch.linspace(0.0, 1.0, g, dtype=F64, device=values.device)
    kernel = torch.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    ext = torch.cat([values.flip(0)[:-1], values, values.flip(0)[1:]])
    n = ext.numel() + g - 1
    full = torch.fft.irfft(torch.fft.rfft(ext, n) * torch.fft.rfft(kernel, n), n)
    valid = full[g - 1 : ext.numel()]  # np.convolve(..., "valid"), length 2g - 1
    return valid[g // 2 : g // 2 + g]


def _interpolate(t: Tensor, grid: Tensor) -> Tensor:
    g = grid.numel()
    x = t * (g - 1)
    left = x.floor().long().clamp_(0, g - 2)
    frac = x - left
    return grid[left] * (1 - frac) + grid[left + 1] * frac


def smooth_ece_at(residual: Tensor, mass: Tensor, sigma: float) -> float:
    r"""$\mathrm{smECE}_\sigma$ from the finest-grid deposits of residuals and of ones."""
    need = max(1000, round(20 / sigma) // 2)
    intervals = next((n for n in LEVELS if n >= need), FINEST)
    r = reflected_smooth(restrict(residual, intervals), sigma)
    d = reflected_smooth(restrict(mass, intervals), sigma)
    t = torch.linspace(0.0, 1.0, max(round(10 / sigma), 200), dtype=F64, device=r.device)
    rt, dt = _interpolate(t, r), _interpolate(t, d) + DENSITY_EPS
    return float(rt.abs().sum() / dt.sum())


def smooth_ece_from_grid(residual: Tensor, mass: Tensor) -> tuple[float, float]:
    """(smECE, sigma*) from the finest-grid deposits; ``(nan, nan)`` without samples."""
    if float(mass.sum()) <= 0:
        return float("nan"), float("nan")

    def below_fixed_point(sigma: float) -> bool:
        return sigma < EPS or sigma < smooth_ece_at(residual, mass, sigma)

    sigma = 1.0
    if not below_fixed_point(sigma):
        hi, lo = 1.0, 0.0
        for _ in range(REFINE):
            mid = (hi + lo) / 2
            if below_fixed_point(mid):
                lo = mid
            else:
                hi = mid
        sigma = hi
    return smooth_ece_at(residual, mass, sigma), sigma


def smooth_ece_of(confidence: Tensor, correct: Tensor) -> tuple[float, float]:
    """(smECE, sigma*) of confidence / correctness vectors."""
    return smooth_ece_from_grid(
        deposit(confidence, confidence - correct), deposit(confidence, torch.ones_like(confidence))
    )
