r"""Embedding-quality metrics of Wang and Isola, "Understanding Contrastive Representation
Learning through Alignment and Uniformity on the Hypersphere", ICML 2020,
arXiv:2005.10242 (official code `SsnL/align_uniform`).

Both are differentiable, so they also serve as losses; both L2-normalise first (set
``normalize=False`` for features already on the sphere). Lower is better for both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab._validate import Real, check_float_tensor, describe, fail

__all__ = ["alignment", "uniformity"]


def _features(where: str, name: str, x: object) -> Tensor:
    t = check_float_tensor(where, name, x, "features (N, D)")
    if t.dim() != 2 or t.shape[1] < 1:
        fail(where, name, "shape (N, D)", describe(t))
    if not bool(torch.isfinite(t).all()):
        fail(where, name, "finite values", "NaN or infinite values")
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _unit(x: Tensor, normalize: bool) -> Tensor:
    return torch.nn.functional.normalize(x, dim=1, eps=1e-12) if normalize else x


def alignment(x: Tensor, y: Tensor, *, alpha: float = 2.0, normalize: bool = True) -> Tensor:
    r"""Alignment of positive pairs: $\mathbb{E}\,\lVert \hat x_i - \hat y_i\rVert^\alpha$.

    Args:
        x: features ``(N, D)``.
        y: the positives of ``x``, row by row ``(N, D)``.
        alpha: the exponent $\alpha > 0$ (2 in the paper).
        normalize: L2-normalise the rows first.

    Example:
        >>> import torch
        >>> from losslab.metrics import alignment
        >>> alignment(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
        tensor(2.0000)
    """
    Real(0.0, lo_open=True).check("alignment", "alpha", alpha)
    a = _features("alignment", "x", x)
    b = _features("alignment", "y", y)
    if a.shape != b.shape:
        fail("alignment", "y", f"the shape of x {tuple(a.shape)}", describe(b))
    if a.shape[0] == 0:
        fail("alignment", "x", "at least one pair", describe(a))
    d = (_unit(a, normalize) - _unit(b, normalize)).norm(dim=1)
    return d.pow(alpha).mean()


def uniformity(x: Tensor, *, t: float = 2.0, normalize: bool = True) -> Tensor:
    r"""Uniformity: $\log \mathbb{E}_{i<j}\, e^{-t\lVert \hat x_i - \hat x_j\rVert^2}$.

    Averaged over the distinct pairs $i < j$, through a log-sum-exp (no underflow). $-8$
    for two antipodal points; 0 when all points coincide.

    Args:
        x: features ``(N, D)``, $N \ge 2$.
        t: the scale $t > 0$ (2 in the paper).
        normalize: L2-normalise the rows first.

    Example:
        >>> import torch
        >>> from losslab.metrics import uniformity
        >>> uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        tensor(-8.)
    """
    Real(0.0, lo_open=True).check("uniformity", "t", t)
    a = _features("uniformity", "x", x)
    n = a.shape[0]
    if n < 2:
        fail("uniformity", "x", "at least two rows", describe(a))
    u = _unit(a, normalize)
    i, j = torch.triu_indices(n, n, offset=1, device=u.device)
    sq = (u[i] - u[j]).pow(2).sum(dim=1)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())
