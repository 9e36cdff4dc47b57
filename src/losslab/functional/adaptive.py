"""Losses whose per-example weights or derivatives come from the batch itself: EnsLoss
(random calibrated loss derivatives), the Bias loss (feature-variance weights) and
Tri-BCE (branch weights of a two-branch CTR model)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab._reduce import KernelResult
from losslab._validate import (
    Choice,
    IntOrNone,
    Real,
    check_finite,
    check_float_tensor,
    check_like,
    check_same_device,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.functional._fused import TargetLogProb
from losslab.functional.binary import bce_elements
from losslab.kinds import Param
from losslab.kinds.binary import BinaryInput
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register

# --------------------------------------------------------------------------- EnsLoss

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2**32`` for ``x`` in ``[0, 2**32)``, in int64 without overflow: the
    16-bit halves keep every product below ``2**48``."""
    return ((x & 0xFFFF) * c + (((x >> 16) * c) & 0xFFFF) * 65536) & _M32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, constants of Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_uniforms(key: Tensor, n: int, device: torch.device) -> Tensor:
    """``n`` float64 uniforms in ``(0, 1)``: the hash of a Weyl sequence started at the
    mixed ``key``. A counter-based stream, so the ``k``-th value depends only on
    ``(key, k)``: the same on every device, under ``torch.compile``, and for any ``n``."""
    k = torch.arange(n, dtype=torch.int64, device=device)
    h = _mix32((_mul32(k, 0x9E3779B9) + _mix32(key.to(device) & _M32)) & _M32)
    return (h.to(torch.float64) + 0.5) / 2.0**32


def _stream_key(seed: int | None, generator: Any, device: torch.device) -> Tensor:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            fail(
                "ensloss", "generator", "a torch.Generator or None", describe(generator), TypeError
            )
        key = torch.randint(0, 2**32, (), generator=generator, device=generator.device)
        return key.to(device)
    if seed is None:
        return torch.randint(0, 2**32, (), device=device)
    return torch.tensor(seed & _M32, dtype=torch.int64, device=device)


def _inverse_box_cox(g: Tensor, lam: float) -> Tensor:
    if lam == 0:
        return torch.exp(g)
    # A zero base with lam < 0 gives inf, i.e. a derivative clipped to -1 below.
    return (1.0 + lam * g).clamp_min(0.0) ** (1.0 / lam)


#: The derivative floor, the margin where the tail starts and the strictness offset of
#: the official code.
_CLIP, _TAIL, _EPS = -1.0, 1.0, 1e-6


@register(
    "ensloss",
    kind="binary",
    family="adaptive",
    module="EnsLoss",
    reference="Dai. EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing "
    "Overfitting in Classification. ICML 2025, arXiv:2409.00908; code: "
    "github.com/statmlben/ensLoss (losses.py)",
    constraints={"lam": Real(), "seed": IntOrNone(0)},
    soft_targets=False,
    test_configs=({"lam": 0.5}, {"lam": -0.5, "seed": 7}),
)
def ensloss(
    inp: BinaryInput, *, lam: float = 0.0, seed: int | None = 0, generator: Any = None
) -> Tensor:
    r"""EnsLoss (Dai, 2025): a random convex, classification-calibrated margin loss per
    batch, drawn through its derivative.

    $$
    \ell_i = d_{(r_i)} \min(s_i, 1) + d_{(r_i)} \log \max(s_i, 1) - \epsilon s_i,\quad
    s_i = (2 t_i - 1)\, x_i,\quad
    d = \max\big(\mathrm{sort}(-\mathrm{BC}_\lambda^{-1}(g)), -1\big)
    $$

    with $r_i$ the rank of the margin $s_i$ in the batch. Per batch of $B$ valid
    elements: $B$ standard normals $g$ go through the inverse Box-Cox map ($e^g$ at
    $\lambda = 0$, a negative log-normal derivative), are negated, sorted ascending and
    clipped at $-1$; the element with the $r$-th smallest margin gets the $r$-th
    derivative $d_{(r)}$, so the derivative is non-decreasing in the margin (convexity)
    and negative at 0 (calibration, Bartlett et al. 2006). Above margin 1 it decays like
    $1/s$; $\epsilon = 10^{-6}$ keeps it strictly negative. These are the official
    code's steps, and the gradient is the official gradient; the value is that of the
    drawn loss (its integral from margin 0), $d\,s - \epsilon s$ below margin 1 and
    $d\,(1 + \log s) - \epsilon s$ above, so gradient checks and compiled graphs see a
    true function. Targets are 0/1 labels.

    What is random, and how it is seeded: only $g$. Its values come from a counter-based
    stream (a 32-bit hash of a key and the rank, mapped to normals), the same on every
    device and under `torch.compile`. The key comes from `generator=` when given (one
    draw per call, which advances it: fresh derivatives every batch, reproducible), else
    from torch's global RNG when `seed=None` (fresh every call, reproducible under
    `torch.manual_seed`), else from `seed`. With a fixed `seed` (the default, which
    makes the loss a deterministic function of its inputs) every call of the same batch
    size reuses the same derivatives: pass `generator=` or `seed=None` when training.

    Args:
        lam: Box-Cox $\lambda$; 0 (log-normal derivatives) as the official default, which
            redraws it from $U(-1, 1)$ every few epochs when asked to.
        seed: key of the draws when no generator is given (its low 32 bits), or `None`
            for torch's global RNG.
        generator: a `torch.Generator` that keys the draws, one draw from it per call;
            a module built with one advances it at every call. `None`: `seed` keys them.
            (A module holding a generator cannot be serialised by `get_config`.)

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([2.0, -1.0, 0.5, 0.3], requires_grad=True)
        >>> target = torch.tensor([1, 0, 0, 1])
        >>> g = torch.Generator().manual_seed(0)
        >>> F.ensloss(logits, target, generator=g).backward()
        >>> bool((logits.grad * (2 * target - 1) < 0).all())  # every margin is pushed up
        True
    """
    if inp.pos_weight is not None:
        fail(
            "ensloss",
            "pos_weight",
            "None (a margin loss has no positive term)",
            describe(inp.pos_weight),
        )
    shape = inp.logits.shape
    x, t = inp.logits.reshape(-1), inp.target.reshape(-1)
    margin = (2.0 * t - 1.0) * x
    n = margin.numel()
    valid = torch.ones_like(margin, dtype=torch.bool) if inp.mask is None else inp.mask.reshape(-1)
    n_valid = valid.sum()
    # Masked margins rank last, so the valid ones take the stream's first draws whether
    # the others are masked or dropped.
    order = torch.argsort(torch.where(valid, margin.detach(), math.inf), stable=True)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=order.device))
    # Only the first n_valid draws count: the same derivatives as for the dropped batch.
    g = torch.special.ndtri(stream_uniforms(_stream_key(seed, generator, x.device), n, x.device))
    slots = torch.arange(n, device=x.device)
    d = torch.where(slots < n_valid, -_inverse_box_cox(g, lam), math.inf)
    d = torch.sort(d).values.clamp_min(_CLIP)
    slope = torch.where(valid, d[rank], 0.0).to(x.dtype)
    # phi(s) = slope * s up to margin 1, slope * (1 + log s) beyond (derivative slope / s).
    beyond = margin > _TAIL
    log_s = torch.log(torch.where(beyond, margin, 1.0))
    values = torch.where(beyond, slope * (1.0 + log_s), slope * margin) - _EPS * margin
    return values.reshape(shape)


# --------------------------------------------------------------------------- Bias loss


def _scalar(name: str, arg: str, value: object, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            fail(name, arg, "a number or a one-element tensor", describe(value))
        check_same_device(name, arg, value, like, "logits")
        return value.reshape(()).to(like.dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, arg, "a number or a one-element tensor", describe(value), TypeError)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def feature_variance(inp: MulticlassInput, features: object) -> Tensor:
    """Unbiased variance of each element's (detached) feature map, shape ``(N, *)``."""
    shape = inp.element_shape
    f = check_float_tensor("bias_loss", "features", features, "a feature map")
    check_same_device("bias_loss", "features", f, inp.logits, "logits")
    per_element = math.prod(f.shape[len(shape) :])
    if f.shape[: len(shape)] != shape or per_element < 2:
        fail(
            "bias_loss",
            "features",
            f"shape {tuple(shape)} + (at least 2 feature values per element)",
            describe(f),
        )
    if value_checks_enabled(True):
        check_finite("bias_loss", "features", f)
    f = f.detach().to(inp.logits.dtype)
    if f.numel() == 0:
        return f.new_zeros(shape)
    return f.reshape(*shape, per_element).var(dim=-1)


@register(
    "bias_loss",
    family="adaptive",
    module="BiasLoss",
    reference="Abrahamyan, Ziatchin, Chen, Bagnall, Harrison. Bias Loss for Mobile Neural "
    "Networks. ICCV 2021, arXiv:2107.11170; code: github.com/lusinlu/bias-loss-skipblocknet "
    "(bias_loss/biasloss.py)",
    properties={"shift_invariant": {}, "reduces_to_ce": {"alpha": 0.0, "beta": 0.0}},
    constraints={
        "alpha": Real(0.0),
        "beta": Real(0.0, 1.0),
        "normalize": Choice(("global", "local")),
    },
    extra_inputs=(
        Param(
            "features",
            "Tensor | None",
            "the feature map the weights come from (detached), `(N, ...)` for `(N, C)` "
            "logits (one map per element: leading dims equal the element shape, at least "
            "2 values each), e.g. the last convolutional block's output before pooling; "
            "`None`: no feature map, every element has $v = 0$ (weight $1 - \\beta$).",
            None,
        ),
        Param(
            "variance_min",
            "Tensor | float | None",
            'for `normalize="global"`: the smallest feature variance of the earlier '
            "batches (feed back the `variance_min` component); `None`: none seen yet.",
            None,
        ),
    ),
    components=("variance_min",),
    min_classes=2,
    test_configs=({"normalize": "local"}, {"alpha": 1.0, "beta": 0.9}),
)
def bias_loss(
    inp: MulticlassInput,
    *,
    alpha: float = 0.3,
    beta: float = 0.3,
    normalize: str = "global",
    features: Tensor | None = None,
    variance_min: Tensor | float | None = None,
) -> KernelResult:
    r"""Bias loss (Abrahamyan et al., 2021): cross-entropy weighted by how much information
    the network's features carry, for compact networks.

    $$
    \ell_i = \big(e^{\alpha v_i} - \beta\big)\,\mathrm{CE}(z_i, y_i),\qquad
    v_i = \frac{\sigma^2_i - m}{\max_j \sigma^2_j - \min_j \sigma^2_j}
    $$

    with $\sigma^2_i$ the unbiased variance of element $i$'s feature map (detached: the
    weights carry no gradient) and the max and min over the batch's valid elements.
    `normalize="local"` uses $m = \min_j \sigma^2_j$, so $v \in [0, 1]$;
    `"global"` (the official default) uses the smallest variance seen so far in training,
    passed as `variance_min` and returned, updated with this batch, as the component
    `variance_min` (`+inf` for a batch without valid elements). Low-variance feature
    maps, which the paper links to uninformative examples, get less weight. A batch whose
    variances are all equal (e.g. one element) has $v = 0$. Soft targets take the
    expected cross-entropy.

    Set-level through the normalisation: an element's weight depends on the batch.

    Args:
        alpha: $\alpha \ge 0$ (the official 0.3).
        beta: $\beta \in [0, 1]$ (the official 0.3), so that weights stay positive.
        normalize: `"global"` (the official default) or `"local"`.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> feats = torch.tensor([[[1.0, 3.0], [0.0, 2.0]], [[1.0, 1.1], [0.9, 1.0]]])
        >>> F.bias_loss(logits, torch.tensor([0, 2]), features=feats, reduction="none")
        tensor([0.2533, 0.7014])
    """
    ce = -TargetLogProb(inp).value(lambda v: v)
    if features is None:
        # No feature map: every element has v = 0, and no variance is seen.
        m = ce.new_tensor(math.inf)
        if normalize == "global" and variance_min is not None:
            m = _scalar("bias_loss", "variance_min", variance_min, ce).detach()
        return KernelResult((1.0 - beta) * ce, None, {"variance_min": m})
    var = feature_variance(inp, features)
    valid = inp.mask
    lowest = var if valid is None else torch.where(valid, var, math.inf)
    highest = var if valid is None else torch.where(valid, var, -math.inf)
    if var.numel():
        lo, hi = lowest.amin(), highest.amax()
    else:
        lo, hi = var.new_tensor(math.inf), var.new_tensor(-math.inf)
    m = lo
    if normalize == "global" and variance_min is not None:
        m = torch.minimum(lo, _scalar("bias_loss", "variance_min", variance_min, var).detach())
    spread = hi - lo
    ok = torch.isfinite(spread) & (spread > 0)
    v = torch.where(ok, (var - m) / torch.where(ok, spread, 1.0), 0.0)
    # exp is capped where it would overflow: a finite weight, not inf * 0.
    cap = math.log(torch.finfo(v.dtype).max) / 2
    weight = torch.exp((alpha * v).clamp_max(cap)) - beta
    return KernelResult(weight * ce, None, {"variance_min": m})


# --------------------------------------------------------------------------- Tri-BCE


@register(
    "tri_bce",
    kind="binary",
    family="adaptive",
    module="TriBCELoss",
    reference="Li, Xiao, Chen, Ma, Wu, Hu, Wang, Xu. FCN: Fusing Exponential and Linear "
    "Cross Network for Click-Through Rate Prediction. arXiv:2407.13349, 2024; code: "
    "github.com/salmon1802/FCN (src/DCNv3.py, add_loss)",
    extra_inputs=(
        Param(
            "shallow_logits",
            "Tensor | None",
            "logits of the second branch (the LCN), of the logits' shape; `None`: the same "
            "as `logits` (a single branch, where Tri-BCE is BCE).",
            None,
        ),
    ),
    components=("fused", "deep", "shallow"),
    test_configs=({"detach_weights": True},),
)
def tri_bce(
    inp: BinaryInput, *, detach_weights: bool = False, shallow_logits: Tensor | None = None
) -> KernelResult:
    r"""Tri-BCE of FCN (Li et al., 2024) for two-branch CTR models: BCE of the fused
    prediction plus each branch's BCE, weighted by how much worse the branch is.

    $$
    L = L_F + w_D L_D + w_S L_S,\quad w_D = (L_D - L_F)_+,\ w_S = (L_S - L_F)_+
    $$

    with $L_F$, $L_D$, $L_S$ the batch-mean BCEs of the fused logit $(x_D + x_S)/2$
    (the average of the two branches' logits, not of their probabilities), of the deep
    branch $x_D$ (`logits`, the ECN) and of the shallow branch $x_S$ (`shallow_logits`,
    the LCN). Computed from logits, exact at any value. The official code lets gradients
    flow through the weights; `detach_weights=True` stops them (a reading of the paper,
    whose formula does not say). Per element, $\ell_i = \ell_{F,i} + w_D \ell_{D,i} +
    w_S \ell_{S,i}$ with the batch-level weights, so `"mean"` is $L$; element weights
    enter the batch means; `pos_weight` scales every positive term. The components are
    the three BCEs.

    Args:
        detach_weights: stop the gradient through $w_D$, $w_S$ (the official code does
            not).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> deep, shallow = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.5, -0.5])
        >>> target = torch.tensor([1, 0, 1])
        >>> F.tri_bce(deep, target, shallow_logits=shallow)
        tensor(0.6889)
    """
    xd = inp.logits
    if shallow_logits is None:
        xs = xd
    else:
        xs = check_like("tri_bce", "shallow_logits", shallow_logits, xd, "logits", "logits")
        if value_checks_enabled(True):
            check_finite("tri_bce", "shallow_logits", xs)
        xs = xs.to(xd.dtype)
    if inp.mask is not None:
        # Masked logits may be anything with validate=False; they carry no weight below.
        xd, xs = torch.where(inp.mask, xd, 0.0), torch.where(inp.mask, xs, 0.0)
    t, pw = inp.target, inp.pos_weight
    if shallow_logits is None:
        # One branch: the three BCEs are equal and both weights are relu(0) = 0 (with
        # relu's zero slope there), so Tri-BCE is BCE, value and gradient.
        bce = bce_elements(xd, t, pw)
        return KernelResult(bce, None, {"fused": bce, "deep": bce, "shallow": bce})
    fused, deep, shallow = (bce_elements(x, t, pw) for x in ((xd + xs) / 2, xd, xs))
    w = torch.ones_like(fused) if inp.weight is None else inp.weight
    if inp.mask is not None:
        w = torch.where(inp.mask, w, 0.0)
    total = w.sum().clamp_min(torch.finfo(w.dtype).tiny)
    mean_f, mean_d, mean_s = ((w * v).sum() / total for v in (fused, deep, shallow))
    w_d, w_s = torch.relu(mean_d - mean_f), torch.relu(mean_s - mean_f)
    if detach_weights:
        w_d, w_s = w_d.detach(), w_s.detach()
    values = fused + w_d * deep + w_s * shallow
    return KernelResult(values, None, {"fused": fused, "deep": deep, "shallow": shallow})
