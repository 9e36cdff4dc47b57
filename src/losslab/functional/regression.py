"""Balanced MSE for imbalanced regression (Ren et al., CVPR 2022): the MSE of a Gaussian
likelihood corrected by the training label distribution, estimated from the batch (BMC),
from a histogram (BNI) or from a Gaussian mixture (GAI)."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._validate import (
    Choice,
    ClassVector,
    NonZeroScale,
    Real,
    check_same_device,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.kinds.regression import RegressionInput
from losslab.registry import register

CENTERS = ClassVector(Real(), what="per-component values")
WEIGHTS = ClassVector(Real(0.0), what="per-component weights")
VARIANCES = ClassVector(Real(0.0, lo_open=True), what="per-component variances")


def noise_variance(noise_sigma: float | Tensor, like: Tensor) -> Tensor:
    """``sigma ** 2`` (its sign is irrelevant, as in the official code), keeping the
    gradient of a learnable one-element tensor."""
    if isinstance(noise_sigma, Tensor):
        check_same_device("balanced_mse", "noise_sigma", noise_sigma, like, "pred")
        sigma = noise_sigma.reshape(()).to(like.dtype)
    else:
        sigma = torch.tensor(float(noise_sigma), dtype=like.dtype, device=like.device)
    return sigma * sigma


def _components(
    name: str, value: object, constraint: ClassVector, like: Tensor, size: int | None = None
) -> Tensor:
    if value is None:
        fail("balanced_mse", name, f"a 1-D tensor of {constraint.text()} for this method", None)
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if size is not None and t.shape != (size,):
        fail("balanced_mse", name, f"shape ({size},), one value per component", describe(t))
    return t


@register(
    "balanced_mse",
    kind="regression",
    family="regression",
    module="BalancedMSELoss",
    reference="Ren, Zhang, Yi, Liu, Lin. Balanced MSE for Imbalanced Visual Regression. "
    "CVPR 2022, arXiv:2203.16427; code: github.com/jiawei-ren/BalancedMSE "
    "(imdb-wiki-dir/balanaced_mse.py)",
    constraints={
        "method": Choice(("bmc", "bni", "gai")),
        "prior_centers": CENTERS,
        "prior_weights": WEIGHTS,
        "prior_variances": VARIANCES,
        "noise_sigma": NonZeroScale(),
    },
    test_configs=(
        {
            "method": "bni",
            "prior_centers": [-2.0, -1.0, 0.0, 1.0, 2.0],
            "prior_weights": [0.125, 0.25, 0.25, 0.25, 0.125],
        },
        {
            "method": "gai",
            "prior_centers": [-1.0, 1.0],
            "prior_weights": [0.5, 0.5],
            "prior_variances": [0.5, 2.0],
        },
    ),
)
def balanced_mse(
    inp: RegressionInput,
    *,
    method: str = "bmc",
    prior_centers: Tensor | None = None,
    prior_weights: Tensor | None = None,
    prior_variances: Tensor | None = None,
    noise_sigma: float | Tensor = 1.0,
) -> Tensor:
    r"""Balanced MSE (Ren et al., 2022): the negative log-likelihood of a Gaussian with the
    training label distribution divided out, so rare targets count as much as common ones.

    $$
    \ell_i = 2\bar\sigma^2 \Big(\frac{(\hat y_i - y_i)^2}{2\sigma^2}
    + \log \int \mathcal{N}(y; \hat y_i, \sigma^2)\, p_{\text{train}}(y)\, dy\Big)
    + \text{const}
    $$

    with $\bar\sigma^2$ the noise variance without gradient (the scale the official code
    multiplies by). The integral is estimated:

    * `"bmc"` (batch Monte-Carlo, the default): by the batch's own targets,
      $\ell_i = -2\bar\sigma^2 \log \mathrm{softmax}_j\big(-(\hat y_i - y_j)^2 /
      2\sigma^2\big)_i$, a cross-entropy over the batch; it needs no prior but a batch
      large enough to represent the label distribution (one element gives 0).
    * `"bni"` (bin-based numerical integration): by a histogram, bucket centres $c_b$
      (`prior_centers`) with frequencies $w_b$ (`prior_weights`):
      $\log \sum_b w_b\, e^{-(\hat y_i - c_b)^2 / 2\sigma^2}$.
    * `"gai"` (Gaussian-mixture analytic integration): by a mixture with means $\mu_k$,
      variances $v_k$ and weights $\pi_k$ (`prior_centers`, `prior_variances`,
      `prior_weights`): $\frac12 \log \sigma^2 + \log \sum_k \pi_k\,
      \mathcal{N}(\hat y_i; \mu_k, v_k + \sigma^2)$ up to a constant.

    Elements are the entries of `pred` (one set for BMC). $\sigma$ is learnable in the
    paper (a parameter of its own with a larger learning rate): pass a parameter as
    `noise_sigma`, or use the module `losslab.heads.BalancedMSE`, which holds it.

    Args:
        method: `"bmc"`, `"bni"` or `"gai"`.
        prior_centers: bucket centres (BNI) or mixture means (GAI), `(K,)`.
        prior_weights: bucket frequencies (BNI) or mixture weights (GAI), `(K,)`,
            non-negative; only their ratios change the gradient.
        prior_variances: mixture variances (GAI), `(K,)`, positive.
        noise_sigma: the noise scale $\sigma$ (non-zero; its sign is irrelevant), a
            number or a one-element tensor that may be a learnable parameter, as in
            `losslab.heads.BalancedMSE`; 1.0 is the official initial value.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> pred = torch.tensor([[0.5], [1.5], [2.0]])
        >>> target = torch.tensor([[0.0], [2.0], [2.5]])
        >>> F.balanced_mse(pred, target, reduction="none")
        tensor([[0.8390],
                [1.4407],
                [1.6540]])
    """
    pred, target = inp.pred, inp.target
    if inp.mask is not None:
        # Masked predictions may be anything with validate=False; their rows are dropped.
        pred = torch.where(inp.mask, pred, 0.0)
    var = noise_variance(noise_sigma, pred)
    scale = 2.0 * var.detach()
    if method == "bmc":
        shape = pred.shape
        p, y = pred.reshape(-1), target.reshape(-1)
        logits = -((p[:, None] - y[None, :]) ** 2) / (2.0 * var)
        if inp.mask is not None:
            # finfo.min, not -inf: a row of an empty batch stays finite (and masked).
            keep = inp.mask.reshape(-1)[None, :]
            logits = torch.where(keep, logits, torch.finfo(logits.dtype).min)
        nll = -torch.log_softmax(logits, dim=1).diagonal()
        return (nll * scale).reshape(shape)
    mse = (pred - target) ** 2 / (2.0 * var)
    centers = _components("prior_centers", prior_centers, CENTERS, pred)
    k = centers.shape[0]
    weights = _components("prior_weights", prior_weights, WEIGHTS, pred, k)
    if value_checks_enabled(True) and not bool((weights > 0).any()):
        fail("balanced_mse", "prior_weights", "at least one positive weight", weights.tolist())
    log_w = torch.log(weights)
    diff2 = (pred[..., None] - centers) ** 2
    if method == "bni":
        balance = torch.logsumexp(-diff2 / (2.0 * var) + log_w, dim=-1)
        return (mse + balance) * scale
    variances = _components("prior_variances", prior_variances, VARIANCES, pred, k)
    total = variances + var
    balance = torch.logsumexp(-0.5 * torch.log(total) - 0.5 * diff2 / total + log_w, dim=-1)
    return (mse + 0.5 * torch.log(var) + balance) * scale
