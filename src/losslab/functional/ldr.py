r"""Label-distributionally-robust losses: LDR-KL and adaptive ALDR-KL (Zhu, Ying, Yang 2023).

LDR-KL is the closed form of a distributionally robust maximum over the label
distribution with a KL regulariser towards uniform:

.. math::
    \psi_\lambda(z, y) = \max_{p \in \Delta_C} \sum_k p_k a_k
                         - \lambda\,\mathrm{KL}(p \,\|\, u)
                      = \lambda \log \frac{1}{C} \sum_k e^{a_k / \lambda},
    \qquad a_k = c\,\mathbb{1}[k \ne y] + \tilde z_k - \tilde z_y ,

with ``z~`` the normalised logits. ALDR-KL keeps one ``lambda_i`` per training example
and ascends it in closed form on every visit.

Paper: Zhu, Ying, Yang. Label Distributionally Robust Losses for Multi-class
Classification: Consistency, Robustness and Adaptivity. ICML 2023, arXiv:2112.14869.
Official code: github.com/Optimization-AI/ICML2023_LDR (``loss.py``: ``LDRLoss_V1``,
``ALDRLoss_V1``).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from losslab._validate import Choice, Real
from losslab.functional._fused import (
    LDRKLRows,
    LDRPass,
    LDRPassBuilder,
    as_rows,
    block_rows,
    block_scratch,
    ldr_block,
)
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, PerSampleState, register

_REF = (
    "Zhu, Ying, Yang. Label Distributionally Robust Losses for Multi-class "
    "Classification: Consistency, Robustness and Adaptivity. ICML 2023, arXiv:2112.14869; "
    "code: github.com/Optimization-AI/ICML2023_LDR"
)
NORMALIZATIONS = ("none", "softplus_mean", "abs_mean")
#: Smoothing of ALDR's probability estimate before its log (official code: 1e-5).
ALDR_PROB_SMOOTHING = 1e-5
#: Default floor of the ``abs_mean`` normaliser, in logit units (see :func:`ldr_kl`).
NORM_FLOOR = 1e-2


def normalize_logits(z: Tensor, normalize: str, eps: float = NORM_FLOOR) -> Tensor:
    r"""Score normalisation of the LDR code, over the class axis (dim 1).

    * ``"none"``: ``z``;
    * ``"softplus_mean"``: ``softplus(z) / mean_k softplus(z_k)`` (positive, sums to ``C``);
    * ``"abs_mean"``: ``z / max(mean_k |z_k|, eps)`` (scale-invariant above the floor).

    ``softplus_mean``'s denominator is clamped at ``finfo.eps`` only, so an all very
    negative row stays finite (its gradient is bounded without a floor).
    """
    if normalize == "none":
        return z
    if normalize == "softplus_mean":
        s = torch.nn.functional.softplus(z)
        return s / s.mean(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).eps)
    return z / z.abs().mean(dim=1, keepdim=True).clamp_min(eps)


def ldr_value(
    logits: Tensor,
    index: Tensor,
    margin: float,
    temperature: Tensor | float,
    normalize: str,
    eps: float = NORM_FLOOR,
    done: LDRPass | None = None,
) -> Tensor:
    r"""``lambda * log mean_k exp(a_k / lambda)``, ``a_k = c 1[k != y] + f_k - f_y``, ``f``
    the normalised logits, for ``(N, C, *)`` logits and ``(N, *)`` targets.

    Since ``a_k / lambda = u_k - u_y`` with ``u = (f + c (1 - e_y)) / lambda``, this is
    ``-lambda log softmax(u)_y - lambda log C``: a temperature-scaled cross-entropy of
    margin-shifted scores, computed by :class:`LDRKLRows` with its analytic gradient.
    """
    t = temperature.reshape(-1) if isinstance(temperature, Tensor) else temperature
    per = LDRKLRows.apply(as_rows(logits), index.reshape(-1), margin, t, normalize, eps, done)
    return per.reshape(index.shape)


@register(
    "ldr_kl",
    family="ldr",
    module="LDRKLLoss",
    reference=_REF,
    properties={
        "classification_calibrated": {},
        "shift_invariant": {"normalize": "none"},
        "scale_invariant": {"normalize": "abs_mean"},
        "convex": {"normalize": "none"},
        "reduces_to_ce": Claim(
            params={"margin": 0.0, "temperature": 1.0, "normalize": "none"},
            offset=lambda c: -math.log(c),
        ),
    },
    constraints={
        "temperature": Real(0.0, lo_open=True),
        "margin": Real(0.0),
        "normalize": Choice(NORMALIZATIONS),
        "eps": Real(0.0, lo_open=True),
    },
    soft_targets=False,
    neg_inf_ok=lambda cfg: cfg["normalize"] != "abs_mean",
    test_configs=(
        {"normalize": "none"},
        {"normalize": "abs_mean"},
        {"temperature": 0.1, "margin": 1.0},
        {"temperature": 1.0, "margin": 0.0, "normalize": "none"},
    ),
)
def ldr_kl(
    inp: MulticlassInput,
    *,
    temperature: float = 10.0,
    margin: float = 0.1,
    normalize: str = "softplus_mean",
    eps: float = NORM_FLOOR,
) -> Tensor:
    r"""LDR-KL loss of Zhu, Ying & Yang (ICML 2023).

    $$
    \ell(z, y) = \lambda \log \frac{1}{C} \sum_k
        \exp\Big(\frac{c\,\mathbb{1}[k \ne y] + \tilde z_k - \tilde z_y}{\lambda}\Big),
    \qquad \tilde z = \mathrm{normalize}(z)
    $$

    the closed form of $\max_{p \in \Delta} \sum_k p_k a_k - \lambda\,
    \mathrm{KL}(p \| u)$ with $a_k = c\,\mathbb{1}[k \ne y] + \tilde z_k - \tilde z_y$.
    Limits: $\lambda \to 0$ gives the Crammer-Singer hinge, $\lambda \to \infty$ the
    mean gap; $c = 0$ without normalisation gives $\lambda\,\mathrm{CE}(z / \lambda) -
    \lambda \log C$ (CE $- \log C$ at $\lambda = 1$). Normalisations:
    `"softplus_mean"` $\tilde z = \mathrm{softplus}(z) / \mathrm{mean}_k
    \mathrm{softplus}(z_k)$, `"abs_mean"` $\tilde z = z / \max(\mathrm{mean}_k |z_k|,
    \epsilon)$, `"none"` $\tilde z = z$.

    Args:
        temperature: $\lambda > 0$; 10 in the official experiments.
        margin: $c \ge 0$; the official `--margin` 0.1.
        normalize: `"softplus_mean"` (the official `LDRLoss_V1`), `"abs_mean"` or
            `"none"`.
        eps: floor $\epsilon > 0$ of the `abs_mean` normaliser, in logit units: rows with
            $\mathrm{mean}_k |z_k| < \epsilon$ are divided by $\epsilon$, which bounds the
            gradient on all-zero rows.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.ldr_kl(logits, torch.tensor([0, 2]), reduction="none")
        tensor([-0.7832, -0.0026])
    """
    return ldr_value(inp.logits, inp.index, margin, float(temperature), normalize, float(eps))


def aldr_kl_temperature(
    logits: Tensor,
    *,
    temperature0: float = 10.0,
    alpha: float = 2.0,
    normalize: str = "abs_mean",
    eps: float = NORM_FLOOR,
    sample_temperature: Tensor | None = None,
) -> Tensor:
    r"""One closed-form ascent step of ALDR-KL's per-sample temperatures (no gradient).

    With $p = \mathrm{softmax}(\tilde z / \lambda_{\text{old}})$ (smoothed by 1e-5 and
    renormalised, as in the official code),

    $$
    \lambda_{\text{new}} = \lambda_0 \Big(1 - \frac{\mathrm{KL}(p \,\|\, u)}
    {\alpha \log C}\Big) \in [\lambda_0 (1 - 1/\alpha),\ \lambda_0],
    $$

    the maximiser over $\lambda$ of $-\lambda\,\mathrm{KL}(p\|u) - \frac{\alpha \log
    C}{2 \lambda_0}(\lambda - \lambda_0)^2$. $p$ ignores the margin, as in the official
    code.

    Args:
        logits: `(N, C, *)`.
        temperature0, alpha, normalize, eps: as in `aldr_kl`.
        sample_temperature: the previous per-sample temperatures `(N, *)` (`None`:
            $\lambda_0$).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> F.aldr_kl_temperature(torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]))
        tensor([9.9750, 9.9962])
    """
    with torch.no_grad():
        z = logits.detach().to(torch.promote_types(logits.dtype, torch.float32))
        lam = _ascend(as_rows(z), temperature0, alpha, normalize, eps, sample_temperature)
        return lam.reshape(z.shape[:1] + z.shape[2:])


def _ascend(
    z: Tensor,
    temperature0: float,
    alpha: float,
    normalize: str,
    eps: float,
    sample_temperature: Tensor | None,
    loss_pass: LDRPassBuilder | None = None,
    idx: Tensor | None = None,
) -> Tensor:
    """The temperature step on ``(R, C)`` rows, block by block. With ``loss_pass`` (and
    the targets ``idx`` ``(R, 1)``), each block also gets the loss's forward work at its
    new temperatures while it is in cache."""
    rows, c = z.shape
    lam = (
        torch.full((rows, 1), temperature0, dtype=z.dtype, device=z.device)
        if sample_temperature is None
        else sample_temperature.reshape(-1, 1).to(z.dtype)
    )
    base_buf, p_buf, log_buf = block_scratch(z), block_scratch(z), block_scratch(z)
    # With e = exp(f / lambda - max), S = sum e and the official smoothing
    # q = (e / S + delta) / K, K = 1 + C delta:
    #   sum q log q = (sum (e + delta S) log(e + delta S) / S - K log S) / K - log K,
    # so neither the normalisation nor the smoothing's division costs a pass.
    k = 1.0 + c * ALDR_PROB_SMOOTHING
    log_c = math.log(c)
    news: list[Tensor] = []
    step = block_rows(z)
    targets = idx.split(step) if idx is not None else itertools.repeat(None)
    # targets may be endless (no targets: no loss pass)
    for zs, lam_s, ids in zip(z.split(step), lam.split(step), targets, strict=False):
        n = zs.shape[0]
        base, m, top = ldr_block(zs, normalize, eps, base_buf[:n])
        e = torch.sub(base, top, out=p_buf[:n]).mul_((m * lam_s).reciprocal_()).exp_()
        mass = e.sum(dim=1, keepdim=True)
        e.add_(ALDR_PROB_SMOOTHING * mass)
        ent = torch.mul(torch.log(e, out=log_buf[:n]), e, out=log_buf[:n]).sum(dim=1, keepdim=True)
        kl = (ent / mass - k * mass.log()) / k - math.log(k) + log_c
        new = temperature0 * (1.0 - kl / (alpha * log_c))
        news.append(new)
        if loss_pass is not None:
            assert ids is not None
            loss_pass.add(base, m, top, ids, new, p_buf[:n])
    return torch.cat(news).reshape(-1) if news else z.new_empty(0)


def _aldr_update(
    inp: MulticlassInput,
    previous: Tensor,
    *,
    temperature0: float,
    alpha: float,
    margin: float,
    normalize: str,
    eps: float,
) -> Tensor:
    z = as_rows(inp.logits.detach())
    idx = inp.index.reshape(-1, 1)
    loss_pass = LDRPassBuilder(z, margin, normalize)
    new = _ascend(z, temperature0, alpha, normalize, eps, previous, loss_pass, idx)
    # the kernel, evaluated at these temperatures, reuses the forward pass made here
    inp.memo["ldr_pass"] = loss_pass.result()
    return new.reshape(previous.shape)


@register(
    "aldr_kl",
    family="ldr",
    module="ALDRKLLoss",
    reference=_REF,
    properties={
        "classification_calibrated": {},
        "scale_invariant": {"normalize": "abs_mean"},
        "shift_invariant": {"normalize": "none"},
        "reduces_to_ce": Claim(
            params={"margin": 0.0, "temperature0": 1.0, "normalize": "none"},
            offset=lambda c: -math.log(c),
        ),
    },
    constraints={
        "temperature0": Real(0.0, lo_open=True),
        "alpha": Real(1.0, lo_open=True),
        "margin": Real(0.0),
        "normalize": Choice(NORMALIZATIONS),
        "eps": Real(0.0, lo_open=True),
    },
    state=PerSampleState(
        "sample_temperature",
        init=lambda cfg: float(cfg["temperature0"]),
        constraint=Real(0.0, lo_open=True),
        doc=r"per-element temperatures $\lambda_i$ `(N, ...)`, positive and finite; "
        r"`None` uses $\lambda_0$ for every element.",
        update=_aldr_update,
    ),
    soft_targets=False,
    neg_inf_ok=False,
    min_classes=2,
    test_configs=({"normalize": "softplus_mean"}, {"normalize": "none", "alpha": 4.0}),
)
def aldr_kl(
    inp: MulticlassInput,
    *,
    temperature0: float = 10.0,
    alpha: float = 2.0,
    margin: float = 0.1,
    normalize: str = "abs_mean",
    eps: float = NORM_FLOOR,
    sample_temperature: Tensor | None = None,
) -> Tensor:
    r"""Adaptive LDR-KL (ALDR-KL) at given per-sample temperatures.

    $$
    \ell_i = \lambda_i \log \frac{1}{C} \sum_k e^{a_{ik} / \lambda_i}
             - \frac{\alpha \log C}{2 \lambda_0} (\lambda_i - \lambda_0)^2,
    \qquad a_{ik} = c\,\mathbb{1}[k \ne y_i] + \tilde z_{ik} - \tilde z_{iy_i}
    $$

    At $\lambda_i = \lambda_0$ (the default) the regulariser vanishes and the loss equals
    LDR-KL at $\lambda_0$. Training follows the official algorithm through the module
    `losslab.ALDRKLLoss`, which keeps $\lambda_i$ per example (indexed by `index=`),
    ascends it with `aldr_kl_temperature` on every visit in training mode, and evaluates
    this function at the new value; $\lambda_i$ carries no gradient.

    Args:
        temperature0: $\lambda_0 > 0$; 10 in the official experiments.
        alpha: $\alpha > 1$ keeps $\lambda_i \in [\lambda_0 (1 - 1/\alpha), \lambda_0]$;
            the official `--alpha` 2.
        margin: $c \ge 0$; the official `--margin` 0.1.
        normalize: `"abs_mean"` (the official runs on every data set except CIFAR-100,
            which uses `"softplus_mean"`), `"softplus_mean"` or `"none"`.
        eps: floor $\epsilon > 0$ of the `abs_mean` normaliser, in logit units: rows with
            $\mathrm{mean}_k |z_k| < \epsilon$ are divided by $\epsilon$, which bounds the
            gradient on all-zero rows.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.aldr_kl(logits, torch.tensor([0, 2]), reduction="none")
        tensor([-1.1683, -0.4266])
    """
    if sample_temperature is None:
        return ldr_value(inp.logits, inp.index, margin, float(temperature0), normalize, float(eps))
    lam = sample_temperature.detach().to(inp.logits.dtype)
    reg = alpha * math.log(inp.num_classes) / (2.0 * temperature0) * (lam - temperature0) ** 2
    done = inp.memo.get("ldr_pass")
    return ldr_value(inp.logits, inp.index, margin, lam, normalize, float(eps), done) - reg
