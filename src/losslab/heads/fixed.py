r"""Fixed (not learned) classifiers: equiangular basis vectors and the simplex ETF.

* :func:`equiangular_basis` / :class:`EquiangularHead`: $C$ unit vectors in
  $\mathbb{R}^D$ whose pairwise $|\cos|$ is pushed below a threshold $\theta$ by gradient
  descent on $\sum_{i \ne j} \max(0, |\cos_{ij}| - \theta)$ (Shen et al., "Equiangular
  Basis Vectors", CVPR 2023, arXiv:2303.11637; official code
  `aassxun/Equiangular-Basis-Vectors`); classification is the cross-entropy of
  $\hat f^\top \hat B_c / \tau$, possible for $C \gg D$.
* :func:`simplex_etf` / :class:`SimplexETFHead`: the simplex equiangular tight frame,
  $C$ unit vectors with pairwise cosine $-1/(C-1)$ (the geometry of neural collapse,
  Papyan, Han and Donoho, PNAS 2020, arXiv:2008.08186), used as a fixed classifier
  (Zhu et al., NeurIPS 2021, arXiv:2105.02375; Yang et al., NeurIPS 2022,
  arXiv:2203.09081). Needs $D \ge C$.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from losslab._validate import Int, Real, check_float_tensor, describe, fail
from losslab.diagnostics import simplex_etf as etf_columns
from losslab.functional._pairs import normalize
from losslab.registry import loss_info

__all__ = ["EquiangularHead", "SimplexETFHead", "equiangular_basis", "simplex_etf"]


def equiangular_basis(
    num_classes: int,
    dim: int,
    *,
    theta: float = 0.002,
    lr: float = 1e-3,
    max_steps: int = 100_000,
    seed: int = 42,
) -> tuple[Tensor, float]:
    r"""Equiangular basis vectors: ``(num_classes, dim)`` unit rows and their largest
    off-diagonal $|\cos|$.

    From Gaussian rows (seeded), plain gradient descent on
    $\sum_{i \ne j} \max(0, |\hat b_i^\top \hat b_j| - \theta)$, stopping once the largest
    $|\cos| \le \theta + 10^{-4}$ (the official criterion and defaults: $\theta$ = 0.002,
    learning rate $10^{-3}$, at most $10^5$ steps). When $C > D$ the threshold may be out
    of reach; the best basis found is returned with its coherence.

    Example:
        >>> from losslab.heads import equiangular_basis
        >>> basis, coherence = equiangular_basis(6, 8, theta=0.05, lr=0.05)
        >>> basis.shape, coherence <= 0.05 + 1e-4
        (torch.Size([6, 8]), True)
    """
    Int(1).check("equiangular_basis", "num_classes", num_classes)
    Int(1).check("equiangular_basis", "dim", dim)
    Real(0.0, 1.0).check("equiangular_basis", "theta", theta)
    Real(0.0, lo_open=True).check("equiangular_basis", "lr", lr)
    Int(0).check("equiangular_basis", "max_steps", max_steps)
    g = torch.Generator().manual_seed(seed)
    b = normalize(torch.randn(num_classes, dim, generator=g, dtype=torch.float64))
    eye = torch.eye(num_classes, dtype=torch.bool)
    best, best_max = b.clone(), math.inf
    b.requires_grad_(True)
    for _ in range(max_steps + 1):
        u = normalize(b)
        cos = (u @ u.T).abs().masked_fill(eye, 0.0)
        worst = float(cos.detach().max()) if num_classes > 1 else 0.0
        if worst < best_max:
            best, best_max = u.detach().clone(), worst
        if worst <= theta + 1e-4:
            break
        loss = torch.relu(cos - theta).sum()
        (grad,) = torch.autograd.grad(loss, b)
        with torch.no_grad():
            b -= lr * grad
    return best.float(), best_max


def simplex_etf(num_classes: int, dim: int, *, seed: int = 0) -> Tensor:
    r"""The simplex ETF ``(num_classes, dim)``: unit rows, pairwise cosine $-1/(C-1)$,
    summing to 0, $M^* = \sqrt{C/(C-1)}\,U(I - \tfrac1C \mathbf{1}\mathbf{1}^\top)$ with
    orthonormal $U$ (QR of a seeded Gaussian); needs ``dim >= num_classes``.

    Example:
        >>> from losslab.heads import simplex_etf
        >>> m = simplex_etf(3, 4)
        >>> (m @ m.T).round(decimals=4)
        tensor([[ 1.0000, -0.5000, -0.5000],
                [-0.5000,  1.0000, -0.5000],
                [-0.5000, -0.5000,  1.0000]])
    """
    g = torch.Generator().manual_seed(seed)
    return etf_columns(num_classes, dim, generator=g, dtype=torch.float32).T.contiguous()


def _check_features(where: str, x: object, dim: int) -> Tensor:
    t = check_float_tensor(where, "embeddings", x, "features (N, D)")
    if t.dim() != 2 or t.shape[1] != dim:
        fail(where, "embeddings", f"shape (N, {dim})", describe(t))
    return t


class EquiangularHead(nn.Module):
    r"""A fixed EBV classifier: cross-entropy of $\hat f^\top \hat B_c / \tau$ against
    equiangular basis vectors $B$ (a buffer, generated at construction).

    Args:
        in_features: feature size $D$.
        num_classes: number of classes $C$ (may exceed $D$).
        temperature: $\tau > 0$ (official 0.07).
        label_smoothing: of the training cross-entropy (official 0.1).
        theta: coherence threshold of :func:`equiangular_basis`.
        lr: step size of :func:`equiangular_basis`.
        max_steps: step budget of :func:`equiangular_basis`.
        seed: seed of :func:`equiangular_basis`'s Gaussian start.

    Example:
        >>> import torch
        >>> from losslab.heads import EquiangularHead
        >>> head = EquiangularHead(8, 6, theta=0.05, lr=0.05)
        >>> head(torch.randn(4, 8), torch.tensor([0, 1, 2, 5])).shape
        torch.Size([])
    """

    basis: Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        temperature: float = 0.07,
        label_smoothing: float = 0.1,
        theta: float = 0.002,
        lr: float = 1e-3,
        max_steps: int = 100_000,
        seed: int = 42,
    ) -> None:
        super().__init__()
        Real(0.0, lo_open=True).check("EquiangularHead", "temperature", temperature)
        Real(0.0, 1.0).check("EquiangularHead", "label_smoothing", label_smoothing)
        basis, coherence = equiangular_basis(
            num_classes, in_features, theta=theta, lr=lr, max_steps=max_steps, seed=seed
        )
        self.register_buffer("basis", basis)
        #: The largest off-diagonal |cos| of the generated basis.
        self.coherence = coherence
        self.temperature = temperature
        self.label_smoothing = label_smoothing

    def logits(self, embeddings: Tensor) -> Tensor:
        x = _check_features("EquiangularHead", embeddings, self.basis.shape[1])
        return normalize(x) @ self.basis.to(x.dtype).T / self.temperature

    def forward(self, embeddings: Tensor, target: Tensor, **options: Any) -> Any:
        """Cross-entropy (``losslab.functional.ce`` with the head's label smoothing);
        ``options`` are its call options."""
        ce = loss_info("ce").function
        return ce(self.logits(embeddings), target, label_smoothing=self.label_smoothing, **options)


class SimplexETFHead(nn.Module):
    r"""A fixed simplex-ETF classifier: logits $s\,\hat f^\top M^*_c$ (or $s\, f^\top
    M^*_c$ without normalisation), cross-entropy on them.

    Args:
        in_features: feature size $D \ge C$.
        num_classes: number of classes $C \ge 2$.
        scale: the scale $s > 0$ of the logits.
        learn_scale: make $s$ a parameter (its logarithm is learned).
        normalize_features: L2-normalise the features first.
        seed: of :func:`simplex_etf`.

    Example:
        >>> import torch
        >>> from losslab.heads import SimplexETFHead
        >>> head = SimplexETFHead(8, 4, scale=10.0)
        >>> head(torch.randn(3, 8), torch.tensor([0, 3, 1])).shape
        torch.Size([])
    """

    etf: Tensor
    log_scale: Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        scale: float = 1.0,
        learn_scale: bool = False,
        normalize_features: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        Real(0.0, lo_open=True).check("SimplexETFHead", "scale", scale)
        self.register_buffer("etf", simplex_etf(num_classes, in_features, seed=seed))
        value = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)
        self.normalize_features = normalize_features

    def logits(self, embeddings: Tensor) -> Tensor:
        x = _check_features("SimplexETFHead", embeddings, self.etf.shape[1])
        if self.normalize_features:
            x = normalize(x)
        return self.log_scale.exp().to(x.dtype) * (x @ self.etf.to(x.dtype).T)

    def forward(self, embeddings: Tensor, target: Tensor, **options: Any) -> Any:
        """Cross-entropy of the logits (``losslab.functional.ce`` options)."""
        return loss_info("ce").function(self.logits(embeddings), target, **options)
