"""Cross-entropy for long-tailed classes: balanced softmax and logit adjustment, the
post-hoc logit correction, and class-balanced weights from effective numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from losslab._validate import (
    ClassVector,
    Real,
    check_class_vector,
    check_float_tensor,
    describe,
    fail,
)
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register

COUNTS = ClassVector(Real(0.0, lo_open=True))
PRIORS = ClassVector(Real(0.0, 1.0, lo_open=True), total=1.0)


def _adjusted_ce(inp: MulticlassInput, offset: Tensor | None) -> Tensor:
    """Cross-entropy of ``logits + offset`` (``offset`` per class, broadcast over ``*``)."""
    z = inp.logits
    if offset is not None:
        z = z + offset.view((1, -1) + (1,) * (z.dim() - 2))
    logp = torch.log_softmax(z, dim=1)
    return -inp.target_value(lambda v: v, logp)


@register(
    "balanced_softmax",
    family="imbalance",
    module="BalancedSoftmaxLoss",
    reference="Ren, Yu, Sheng, Ma, Zhao, Yi, Li. Balanced Meta-Softmax for Long-Tailed "
    "Visual Recognition. NeurIPS 2020, arXiv:2007.10740; code: "
    "github.com/jiawei-ren/BalancedMetaSoftmax-Classification",
    properties={
        "shift_invariant": {},
        "convex": {},
        "classification_calibrated": {"class_counts": None},
        "reduces_to_ce": {"class_counts": None},
    },
    constraints={"class_counts": COUNTS},
)
def balanced_softmax(inp: MulticlassInput, *, class_counts: Tensor | None = None) -> Tensor:
    r"""Balanced softmax cross-entropy: the softmax reweighted by the training class counts.

    $$
    \ell(z, y) = -\log \frac{n_y\, e^{z_y}}{\sum_j n_j\, e^{z_j}}
    = \mathrm{CE}(z + \log n,\ y)
    $$

    with $n_j$ the number of training examples of class $j$. Training with it fits
    $z$ to the *balanced* (class-uniform) posterior; predict with the raw logits $z$
    (no correction at test time). Only the ratios of the counts matter, so priors work
    as well. Equals `logit_adjusted` at $\tau = 1$ with $\pi = n / \sum n$.

    Args:
        class_counts: positive per-class training counts `(C,)` (or any positive vector
            proportional to them); `None` gives plain cross-entropy.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> counts = torch.tensor([900.0, 90.0, 10.0])
        >>> F.balanced_softmax(logits, torch.tensor([0, 2]), class_counts=counts, reduction="none")
        tensor([0.0226, 4.4168])
    """
    offset = None
    if class_counts is not None:
        counts = check_class_vector(
            "balanced_softmax", "class_counts", class_counts, COUNTS, inp.num_classes, inp.logits
        )
        offset = torch.log(counts)
    return _adjusted_ce(inp, offset)


@register(
    "logit_adjusted",
    family="imbalance",
    module="LogitAdjustedLoss",
    reference="Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit "
    "adjustment. ICLR 2021, arXiv:2007.07314; code: github.com/google-research/"
    "google-research/tree/master/logit_adjustment",
    properties={
        "shift_invariant": {},
        "convex": {},
        "classification_calibrated": {"priors": None},
        "reduces_to_ce": {"priors": None},
    },
    constraints={"priors": PRIORS, "tau": Real(0.0)},
    test_configs=({"tau": 0.5},),
)
def logit_adjusted(
    inp: MulticlassInput, *, priors: Tensor | None = None, tau: float = 1.0
) -> Tensor:
    r"""Logit-adjusted cross-entropy of Menon et al. (2021).

    $$
    \ell(z, y) = -\log \frac{e^{z_y + \tau \log \pi_y}}{\sum_j e^{z_j + \tau \log \pi_j}}
    = \mathrm{CE}(z + \tau \log \pi,\ y)
    $$

    with $\pi$ the training class priors. At $\tau = 1$ the minimiser of the expected
    loss ranks classes by $p(y \mid x) / \pi_y$, the Bayes rule for the *balanced* error
    (the mean of the per-class errors), which the test-suite checks numerically; for the
    standard error it is calibrated only with uniform priors. Predict with the raw
    logits $z$. Equals `balanced_softmax` at $\tau = 1$ with counts proportional to
    $\pi$; `post_hoc_logit_adjust` is the same correction applied after training with
    plain cross-entropy.

    Args:
        priors: training class priors `(C,)`, each in $(0, 1]$, summing to 1; `None`
            gives plain cross-entropy.
        tau: scaling $\tau \ge 0$ of the adjustment (the paper's 1).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> priors = torch.tensor([0.9, 0.09, 0.01])
        >>> F.logit_adjusted(logits, torch.tensor([0, 2]), priors=priors, reduction="none")
        tensor([0.0226, 4.4168])
    """
    offset = None
    if priors is not None and tau != 0:
        pi = check_class_vector(
            "logit_adjusted", "priors", priors, PRIORS, inp.num_classes, inp.logits
        )
        offset = tau * torch.log(pi)
    return _adjusted_ce(inp, offset)


@register(
    "class_balanced_ce",
    family="imbalance",
    module="ClassBalancedCELoss",
    reference="Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number "
    "of Samples. CVPR 2019, arXiv:1901.05555; code: github.com/richardaecn/class-balanced-loss",
    properties={
        "shift_invariant": {},
        "convex": {},
        "reduces_to_ce": {"class_counts": None},
    },
    constraints={"class_counts": COUNTS, "beta": Real(0.0, 1.0, hi_open=True)},
)
def class_balanced_ce(
    inp: MulticlassInput, *, class_counts: Tensor | None = None, beta: float = 0.9999
) -> Tensor:
    r"""Class-balanced cross-entropy: cross-entropy weighted per class by the inverse
    effective number of training samples.

    $$
    \ell(z, y) = -w_y \log \mathrm{softmax}(z)_y,\qquad
    w_c = C\,\frac{(1 - \beta) / (1 - \beta^{n_c})}{\sum_j (1 - \beta) / (1 - \beta^{n_j})}
    $$

    with $n_c$ the training count of class $c$ (`class_balanced_weights`). The weight
    sits on each sample, so `"mean"` divides the weighted sum by the number of samples, as
    in the official code (not by the sum of the weights, as `weight=` would).
    $\beta = 0$ gives plain cross-entropy, $\beta \to 1$ inverse class frequencies.

    Args:
        class_counts: positive per-class training counts `(C,)`; `None` gives plain
            cross-entropy.
        beta: $\beta \in [0, 1)$; the paper's 0.9999 for long-tailed CIFAR.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> counts = torch.tensor([900.0, 90.0, 10.0])
        >>> F.class_balanced_ce(
        ...     logits, torch.tensor([0, 2]), class_counts=counts, beta=0.99, reduction="none"
        ... )
        tensor([0.0551, 2.3927])
    """
    logp = torch.log_softmax(inp.logits, dim=1)
    if class_counts is not None:
        counts = check_class_vector(
            "class_balanced_ce", "class_counts", class_counts, COUNTS, inp.num_classes, inp.logits
        )
        n = counts.to(logp.dtype)
        # as class_balanced_weights, without its host-side checks (counts are checked)
        w = torch.ones_like(n) if beta == 0.0 else (1.0 - beta) / -torch.expm1(n * math.log(beta))
        w = w / w.sum() * n.numel()
        logp = logp * w.view((1, -1) + (1,) * (logp.dim() - 2))
    return -inp.target_value(lambda v: v, logp)


def post_hoc_logit_adjust(
    logits: Tensor, priors: Tensor | Sequence[float], tau: float = 1.0
) -> Tensor:
    r"""Post-hoc logit adjustment (Menon et al., 2021): $z_j - \tau \log \pi_j$.

    Applied to the logits of a model trained with plain cross-entropy on long-tailed data,
    its argmax estimates the Bayes rule for the balanced error. Class axis 1, as in the
    losses.

    Args:
        logits: `(N, C)` or `(N, C, d1, ...)` logits.
        priors: training class priors `(C,)`, each in $(0, 1]$, summing to 1.
        tau: scaling $\tau \ge 0$ (the paper's 1).

    Returns:
        The adjusted logits, of the logits' shape and dtype.

    Example:
        >>> import torch
        >>> from losslab.functional import post_hoc_logit_adjust
        >>> z = torch.tensor([[2.0, 0.5, -1.0]])
        >>> post_hoc_logit_adjust(z, torch.tensor([0.9, 0.09, 0.01]))
        tensor([[2.1054, 2.9079, 3.6052]])
    """
    where = "post_hoc_logit_adjust"
    z = check_float_tensor(where, "logits", logits, "logits")
    if z.dim() < 2:
        fail(where, "logits", "shape (N, C) or (N, C, d1, ...)", describe(z))
    Real(0.0).check(where, "tau", tau)
    PRIORS.check(where, "priors", priors)
    pi = check_class_vector(where, "priors", priors, PRIORS, z.shape[1], z)
    return z - tau * torch.log(pi).view((1, -1) + (1,) * (z.dim() - 2))


def class_balanced_weights(
    counts: Tensor | Sequence[float],
    beta: float = 0.9999,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Class weights from the effective number of samples (Cui et al., CVPR 2019).

    $$
    w_c \propto \frac{1 - \beta}{1 - \beta^{n_c}},\qquad \sum_c w_c = C
    $$

    The effective number $(1 - \beta^{n})/(1 - \beta)$ grows like $n$ for small counts
    and saturates at $1/(1 - \beta)$; $\beta = 0$ gives equal weights and
    $\beta \to 1$ inverse class frequencies. The weights are normalised to sum to the
    number of classes, as in the official code (github.com/richardaecn/class-balanced-loss,
    `src/cifar_main.py`). Pass them as `weight=` to any loss. Reference: Cui, Jia, Lin,
    Song, Belongie. Class-Balanced Loss Based on Effective Number of Samples. CVPR 2019,
    arXiv:1901.05555.

    Args:
        counts: positive per-class training counts `(C,)`.
        beta: $\beta \in [0, 1)$; the paper's 0.9999 for long-tailed CIFAR.
        dtype: floating dtype of the returned weights.

    Returns:
        The weights `(C,)`, summing to `C`.

    Example:
        >>> import torch
        >>> from losslab.functional import class_balanced_weights
        >>> class_balanced_weights(torch.tensor([5000, 500, 50]), beta=0.999)
        tensor([0.1256, 0.3170, 2.5574])
    """
    where = "class_balanced_weights"
    Real(0.0, 1.0, hi_open=True).check(where, "beta", beta)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        fail(where, "dtype", "a floating-point torch.dtype", describe(dtype), TypeError)
    if isinstance(counts, Tensor):
        n = counts.detach().to(torch.float64)
    elif isinstance(counts, (list, tuple)):
        n = torch.tensor(counts, dtype=torch.float64)
    else:
        fail(
            where, "counts", "a 1-D tensor or sequence of class counts", describe(counts), TypeError
        )
    if n.dim() != 1 or n.numel() == 0:
        fail(where, "counts", "a non-empty 1-D tensor of class counts", describe(counts))
    bad = ~torch.isfinite(n) | (n <= 0)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        fail(where, "counts", "finite positive class counts", f"{float(n[k])!r} for class {k}")
    if beta == 0.0:
        w = torch.ones_like(n)
    else:
        # 1 - beta^n = -expm1(n log beta): exact when beta^n is close to 1.
        w = (1.0 - beta) / -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
    w = w / w.sum() * n.numel()
    return w.to(dtype=dtype, device=counts.device if isinstance(counts, Tensor) else None)
