r"""Neural-collapse diagnostics of penultimate features and the classifier, and the
simplex equiangular tight frame (ETF) they collapse to.

For features $h_i \in \mathbb R^d$ with labels $y_i \in \{0, \dots, K-1\}$: class means
$\mu_k$, global mean $\mu_G$ (over samples), $M = [\mu_1 - \mu_G, \dots, \mu_K - \mu_G]$
($d \times K$),

$$ \Sigma_W = \frac1N \sum_i (h_i - \mu_{y_i})(h_i - \mu_{y_i})^\top, \qquad
\Sigma_B = \frac1K \sum_k (\mu_k - \mu_G)(\mu_k - \mu_G)^\top , $$

and a linear classifier $W$ ($K \times d$, rows $w_k$) with bias $b$. At terminal
collapse (Papyan, Han & Donoho 2020): NC1, within-class variability vanishes relative
to between-class, $\mathrm{tr}(\Sigma_W \Sigma_B^\dagger)/K \to 0$; NC2, the centred means
(and the $w_k$) have equal norms and pairwise cosines $-1/(K-1)$, a simplex ETF; NC3, $W$
is proportional to $M^\top$; NC4, the classifier decides as the nearest class mean.
Everything is computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from losslab._validate import Int, check_finite, check_hparams, describe, fail
from losslab.metrics._inputs import as_tensor

__all__ = ["NeuralCollapse", "etf_distance", "neural_collapse", "simplex_etf"]

F64 = torch.float64


def simplex_etf(
    num_classes: int,
    dim: int | None = None,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = F64,
) -> Tensor:
    r"""A simplex ETF: $K$ unit vectors in $\mathbb R^d$ with pairwise cosines $-1/(K-1)$,
    as the columns of a $d \times K$ matrix.

    $$ M^* = \sqrt{\tfrac{K}{K-1}}\; U \Big(I_K - \tfrac1K \mathbf 1 \mathbf 1^\top\Big) $$

    with $U$ ($d \times K$, $d \ge K$) having orthonormal columns: the QR factor of a
    Gaussian matrix drawn from `generator` ($U = I$ when `dim` is `None`, i.e. $d = K$).
    The columns sum to 0 and the rank is $K - 1$.

    Reference: Papyan, Han, Donoho, Prevalence of neural collapse during the terminal phase
    of deep learning training, PNAS 2020, arXiv:2008.08186.

    Example:
        >>> m = simplex_etf(3)
        >>> (m.T @ m).round(decimals=4)
        tensor([[ 1.0000, -0.5000, -0.5000],
                [-0.5000,  1.0000, -0.5000],
                [-0.5000, -0.5000,  1.0000]], dtype=torch.float64)
    """
    check_hparams("simplex_etf", {"num_classes": Int(2)}, {"num_classes": num_classes})
    k = num_classes
    if dim is None:
        u = torch.eye(k, dtype=F64)
    else:
        check_hparams("simplex_etf", {"dim": Int(k)}, {"dim": dim})
        gauss = torch.randn(dim, k, generator=generator, dtype=F64)
        u = torch.linalg.qr(gauss).Q
    center = torch.eye(k, dtype=F64) - torch.full((k, k), 1.0 / k, dtype=F64)
    return (math.sqrt(k / (k - 1)) * u @ center).to(dtype)


def _etf_target(k: int, device: torch.device) -> Tensor:
    center = torch.eye(k, dtype=F64, device=device) - 1.0 / k
    return center / math.sqrt(k - 1)


def etf_distance(vectors: Any) -> float:
    r"""Distance of $K$ vectors (the rows of a $K \times d$ matrix) to a simplex ETF, on
    the normalised Gram matrix:

    $$ \Big\| \frac{A A^\top}{\|A A^\top\|_F} - \frac{I_K - \frac1K \mathbf 1
    \mathbf 1^\top}{\sqrt{K-1}} \Big\|_F $$

    0 exactly for a simplex ETF of any scale; at most 2.

    Reference: Zhu et al., A Geometric Analysis of Neural Collapse with Unconstrained
    Features, NeurIPS 2021, arXiv:2105.02375.

    Example:
        >>> round(etf_distance(simplex_etf(4).T * 7.0), 12)
        0.0
    """
    a = _matrix("etf_distance", "vectors", vectors)
    if a.shape[0] < 2:
        fail("etf_distance", "vectors", "at least 2 rows (one per class)", describe(a))
    gram = a @ a.T
    norm = torch.linalg.matrix_norm(gram)
    if float(norm) == 0:
        fail("etf_distance", "vectors", "vectors that are not all zero", "all zero")
    return float(torch.linalg.matrix_norm(gram / norm - _etf_target(a.shape[0], a.device)))


def _matrix(where: str, name: str, x: Any) -> Tensor:
    t = as_tensor(where, name, x)
    if not t.is_floating_point() or t.dim() != 2:
        fail(where, name, "a 2-D float array", describe(t))
    check_finite(where, name, t)
    return t.to(F64)


@dataclass(frozen=True)
class NeuralCollapse:
    """Neural-collapse measures; each is 0 at exact collapse onto a simplex ETF.

    Attributes:
        nc1: $\\mathrm{tr}(\\Sigma_W \\Sigma_B^\\dagger)/K$ (pseudo-inverse with numpy's
            default relative cut-off).
        nc2_norms_means: coefficient of variation (std / mean, unbiased std) of the
            norms $\\|\\mu_k - \\mu_G\\|$.
        nc2_angles_means: mean over $k \\ne k'$ of $|\\cos(\\mu_k - \\mu_G, \\mu_{k'} -
            \\mu_G) + 1/(K-1)|$.
        nc2_angles_std_means: standard deviation of those cosines.
        etf_distance_means: `etf_distance` of the centred means.
        nc2_norms_weights, nc2_angles_weights, nc2_angles_std_weights,
            etf_distance_weights: the same for the rows $w_k$ of the classifier.
        nc3: $\\| W / \\|W\\|_F - M^\\top / \\|M\\|_F \\|_F^2$ (self-duality).
        nc3_wm_etf: $\\| W M / \\|W M\\|_F - (I - \\frac1K 1 1^\\top)/\\sqrt{K-1} \\|_F$.
        nc4: fraction of samples whose classifier decision
            $\\arg\\max_k w_k^\\top h + b_k$ differs from the nearest class mean.
        accuracy: the classifier's accuracy on the labels.
        num_classes, num_samples, dim: K, N, d.

    The classifier's entries are `None` when no weight was given.
    """

    nc1: float
    nc2_norms_means: float
    nc2_angles_means: float
    nc2_angles_std_means: float
    etf_distance_means: float
    nc2_norms_weights: float | None
    nc2_angles_weights: float | None
    nc2_angles_std_weights: float | None
    etf_distance_weights: float | None
    nc3: float | None
    nc3_wm_etf: float | None
    nc4: float | None
    accuracy: float | None
    num_classes: int
    num_samples: int
    dim: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _norms_and_angles(vectors: Tensor) -> tuple[float, float, float]:
    """(CoV of the norms, mean |cos + 1/(K-1)|, std of the cosines) of the rows."""
    k = vectors.shape[0]
    norms = vectors.norm(dim=1)
    cov = float(norms.std() / norms.mean())
    unit = vectors / norms.unsqueeze(1)
    cos = (unit @ unit.T)[~torch.eye(k, dtype=torch.bool, device=vectors.device)]
    return cov, float((cos + 1.0 / (k - 1)).abs().mean()), float(cos.std())


def neural_collapse(
    features: Any,
    labels: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    num_classes: int | None = None,
) -> NeuralCollapse:
    r"""NC1-NC4 and the distances to a simplex ETF of penultimate `features` ``(N, d)``
    with int `labels` ``(N,)`` and, optionally, the classifier `weight` ``(K, d)`` and
    `bias` ``(K,)`` (see `NeuralCollapse` for the definitions).

    Every class $0, \dots, K-1$ must occur (K is `num_classes`, else the weight's rows,
    else the largest label + 1), and the class means must not all coincide
    ($\Sigma_B = 0$ leaves NC1 undefined).

    Reference: Papyan, Han, Donoho, PNAS 2020, arXiv:2008.08186 (NC1-NC4); Zhu et al.,
    NeurIPS 2021, arXiv:2105.02375 (ETF distances); code: tding1/Neural-Collapse
    (`validate_NC.py`).

    Example:
        >>> import torch
        >>> means = simplex_etf(4, 6, generator=torch.Generator().manual_seed(0)).T
        >>> labels = torch.arange(4).repeat(5)
        >>> nc = neural_collapse(means[labels], labels, weight=2 * means)
        >>> round(nc.nc1, 12), round(nc.nc3, 12), nc.nc4
        (0.0, 0.0, 0.0)
    """
    where = "neural_collapse"
    h = _matrix(where, "features", features)
    y = as_tensor(where, "labels", labels)
    if y.is_floating_point() or y.dtype == torch.bool or y.shape != h.shape[:1]:
        fail(where, "labels", f"integer class indices of shape ({h.shape[0]},)", describe(y))
    y = y.long().to(h.device)
    w = None if weight is None else _matrix(where, "weight", weight).to(h.device)
    if w is not None and w.shape[1] != h.shape[1]:
        fail(where, "weight", f"shape (K, {h.shape[1]}), one row per class", describe(w))
    if num_classes is not None:
        check_hparams(where, {"num_classes": Int(2)}, {"num_classes": num_classes})
    k = num_classes or (w.shape[0] if w is not None else int(y.max()) + 1 if y.numel() else 0)
    if k < 2:
        fail(where, "labels", "at least 2 classes", f"{k} class(es)")
    if w is not None and w.shape[0] != k:
        fail(where, "weight", f"{k} rows, one per class", describe(w))
    b = None
    if bias is not None:
        if w is None:
            fail(where, "bias", "a classifier weight to go with it", "bias without weight")
        b = as_tensor(where, "bias", bias)
        if not b.is_floating_point() or b.shape != (k,):
            fail(where, "bias", f"a float array of shape ({k},)", describe(b))
        b = b.to(F64).to(h.device)
    if bool(((y < 0) | (y >= k)).any()):
        fail(
            where,
            "labels",
            f"class indices in [0, {k - 1}]",
            f"values in [{int(y.min())}, {int(y.max())}]",
        )
    counts = torch.bincount(y, minlength=k).to(F64)
    if bool((counts == 0).any()):
        missing = int((counts == 0).nonzero()[0])
        fail(where, "labels", f"every class 0..{k - 1} to occur", f"no sample of class {missing}")

    n, d = h.shape
    means = torch.zeros(k, d, dtype=F64, device=h.device).index_add_(0, y, h) / counts[:, None]
    mu_g = h.mean(dim=0)
    centred = means - mu_g  # rows: mu_k - mu_G, i.e. M^T
    within = h - means[y]
    sigma_w = within.T @ within / n
    sigma_b = centred.T @ centred / k
    if float(torch.linalg.matrix_norm(sigma_b)) == 0:
        fail(where, "features", "class means that differ", "identical class means")
    nc1 = float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / k)
    norms_m, angles_m, std_m = _norms_and_angles(centred)
    out: dict[str, Any] = {
        "nc1": nc1,
        "nc2_norms_means": norms_m,
        "nc2_angles_means": angles_m,
        "nc2_angles_std_means": std_m,
        "etf_distance_means": etf_distance(centred),
        "num_classes": k,
        "num_samples": n,
        "dim": d,
    }
    if w is None:
        classifier = (
            "nc2_norms_weights",
            "nc2_angles_weights",
            "nc2_angles_std_weights",
            "etf_distance_weights",
            "nc3",
            "nc3_wm_etf",
            "nc4",
            "accuracy",
        )
        out.update(dict.fromkeys(classifier))
        return NeuralCollapse(**out)
    norms_w, angles_w, std_w = _norms_and_angles(w)
    wm = w @ centred.T
    logits = h @ w.T + (b if b is not None else 0.0)
    pred = logits.argmax(dim=1)
    ncc = torch.cdist(h, means).argmin(dim=1)
    out.update(
        nc2_norms_weights=norms_w,
        nc2_angles_weights=angles_w,
        nc2_angles_std_weights=std_w,
        etf_distance_weights=etf_distance(w),
        nc3=float(
            torch.linalg.matrix_norm(
                w / torch.linalg.matrix_norm(w) - centred / torch.linalg.matrix_norm(centred)
            )
            ** 2
        ),
        nc3_wm_etf=float(
            torch.linalg.matrix_norm(wm / torch.linalg.matrix_norm(wm) - _etf_target(k, h.device))
        ),
        nc4=float((pred != ncc).to(F64).mean()),
        accuracy=float((pred == y).to(F64).mean()),
    )
    return NeuralCollapse(**out)
