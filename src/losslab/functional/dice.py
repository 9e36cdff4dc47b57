"""Dice, self-adjusting Dice and Tversky losses: per token for multi-class outputs (as the
official code of Li et al. 2020), over the whole set for binary and multi-label outputs."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._fused import (
    complement_separable,
    dot,
    mass_sums,
    sigmoid_and_slope,
    softmax_complement,
    softmax_separable,
)
from losslab.kinds.binary import BinaryInput
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, register

LI_2020 = (
    "Li, Sun, Meng, Liang, Wu, Li. Dice Loss for Data-imbalanced NLP Tasks. ACL 2020, "
    "arXiv:1911.02855; code: github.com/ShannonAI/dice_loss_for_NLP (loss/dice_loss.py)"
)
TVERSKY = (
    "Salehi, Erdogmus, Gholipour. Tversky loss function for image segmentation using 3D "
    "fully convolutional deep networks. MLMI 2017, arXiv:1706.05721; self-adjusting and "
    "token-level conventions of " + LI_2020
)


def _bounded_by_classes(config: object, num_classes: int) -> float:
    # Every class term lies in [0, 1].
    return float(num_classes)


def _power(x: Tensor, alpha: float) -> Tensor:
    """``x^alpha`` for ``x > 0`` as ``exp(alpha log x)`` (pow is slower on CPU)."""
    return torch.log(x).mul_(alpha).exp_()


def _adjusted(p: Tensor, one_minus_p: Tensor, alpha: float) -> Tensor:
    """``(1 - p)^alpha * p``, with ``1 - p`` passed in exactly and floored at the smallest
    normal number, so that the power stays differentiable where ``p`` rounds to 1."""
    if alpha == 0:
        return p
    return _power(one_minus_p.clamp_min(torch.finfo(p.dtype).tiny), alpha) * p


# --------------------------------------------------------------------------- multi-class


def _class_probs(inp: MulticlassInput, alpha: float) -> tuple[Tensor, Tensor]:
    if alpha == 0:
        return torch.softmax(inp.logits, dim=1), inp.target_probs()
    p, q, _ = softmax_complement(inp.logits)
    return _adjusted(p, q, alpha), inp.target_probs()


def _index_dice(inp: MulticlassInput, smooth: float, square: bool, alpha: float = 0.0) -> Tensor:
    r"""`dice` for index targets and $\gamma > 0$ in closed form per class: off the
    target $p^2 / (p^2 + \gamma)$ ($p / (p + \gamma)$ unsquared), at the target
    $(1 - p)^2 / (p^2 + 1 + \gamma)$ ($(1 - p) / (p + 1 + \gamma)$), one softmax and
    an analytic backward (:class:`SoftmaxSeparableRows`) instead of a one-hot target."""
    g = float(smooth)
    if square:

        def phi(p: Tensor) -> Tensor:
            q = p * p
            return q / (q + g)

        def dphi(p: Tensor) -> Tensor:
            q = p * p + g
            return (2.0 * g) * p / (q * q)

        def hit(p: Tensor) -> Tensor:
            return (1.0 - p) ** 2 / (p * p + 1.0 + g)

        def dhit(p: Tensor) -> Tensor:
            den = p * p + 1.0 + g
            return (-2.0 * (1.0 - p) * den - 2.0 * p * (1.0 - p) ** 2) / (den * den)

    else:

        def phi(p: Tensor) -> Tensor:
            return p / (p + g)

        def dphi(p: Tensor) -> Tensor:
            return g / (p + g) ** 2

        def hit(p: Tensor) -> Tensor:
            return (1.0 - p) / (p + 1.0 + g)

        def dhit(p: Tensor) -> Tensor:
            return -(2.0 + g) / (p + 1.0 + g) ** 2

    def psi(p: Tensor) -> Tensor:  # the target's term replaces its off-target one
        return hit(p) - phi(p)

    def dpsi(p: Tensor) -> Tensor:
        return dhit(p) - dphi(p)

    if alpha == 0:
        return softmax_separable(inp.logits, inp.index, phi, dphi, psi, dpsi)
    return complement_separable(
        inp.logits,
        inp.index,
        _self_adjusted(_dice_term(g, square), alpha),
        _self_adjusted(lambda x, grad: (psi(x), dpsi(x) * x if grad else None), alpha),
    )


def _dice_term(g: float, square: bool) -> Any:
    """Row sums of the off-target Dice term ``1 - g r``, ``r = 1 / (h(x) + g)`` (``h(x) =
    x^2``, or ``x`` unsquared) and, with ``grad``, ``x`` times its derivative,
    ``k g r (1 - g r)`` (``k = 2`` squared, 1 not; ``h(x) r = 1 - g r``), sharing one
    reciprocal."""
    k = 2.0 if square else 1.0

    def f(x: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        shift = x.new_full((), g)
        r = (torch.addcmul(shift, x, x) if square else torch.add(x, shift)).reciprocal_()
        xd = None
        if grad:
            one = x.new_ones(())
            xd = torch.addcmul(x.new_zeros(()), r, torch.add(one, r, alpha=-g), value=k * g)
        return r.sum(dim=1, keepdim=True).mul_(-g).add_(x.shape[1]), xd

    return f


def _self_adjusted(f: Any, alpha: float) -> Any:
    """A term ``f`` of `_index_dice` (returning its row sums and, if asked, ``x f'(x)``)
    at ``x = (1 - p)^alpha p``, as a callable for :func:`complement_separable`, which
    writes ``p d f(x)/dp = x f'(x) (1 - alpha p / (1 - p))`` into ``out`` (``p dx/dp = x
    (1 - alpha p / (1 - p))``). As in `_adjusted`, ``1 - p`` is floored at the smallest
    normal number, where the floor is constant (``p dx/dp = x``)."""

    def g(p: Tensor, om: Tensor, floored: bool, out: Tensor | None) -> Tensor:
        x = _power(om, alpha).mul_(p)
        value, xd = f(x, out is not None)
        if out is None:
            return value
        ratio = torch.div(p, om)
        factor = torch.add(p.new_ones(()), ratio, alpha=-alpha, out=ratio)
        if floored:
            factor = torch.where(om > torch.finfo(om.dtype).tiny, factor, 1.0)
        torch.mul(xd, factor, out=out)
        return value

    return g


def _token_dice(inp: MulticlassInput, alpha: float, smooth: float, square: bool) -> Tensor:
    if inp.soft is None and smooth > 0:
        return _index_dice(inp, smooth, square, alpha)
    p, y = _class_probs(inp, alpha)
    den = p * p + y * y if square else p + y
    # A class with p = y = 0 and smooth = 0 scores 1 (nothing predicted, nothing missed).
    den = den + smooth
    ratio = torch.where(den > 0, (2 * p * y + smooth) / torch.where(den > 0, den, 1.0), 1.0)
    return (1.0 - ratio).sum(dim=1)


@register(
    "dice",
    family="dice",
    module="DiceLoss",
    reference=LI_2020 + "; squared denominator: Milletari, Navab, Ahmadi. V-Net. 3DV 2016, "
    "arXiv:1606.04797",
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=_bounded_by_classes),
    },
    constraints={"smooth": Real(0.0)},
    test_configs=({"square": False, "smooth": 1e-4},),
)
def dice(inp: MulticlassInput, *, smooth: float = 1.0, square: bool = True) -> Tensor:
    r"""Token-level multi-class Dice loss, summed over classes (Li et al., 2020).

    $$
    \ell(z, y) = \sum_{c=1}^{C} \Big(1 - \frac{2\,p_c\,y_c + \gamma}{p_c^2 + y_c^2 + \gamma}
    \Big),\qquad p = \mathrm{softmax}(z)
    $$

    with $y$ the one-hot target (or the target probabilities) and $\gamma$ the smoothing
    term. Each element (a token of `(N, C, T)` logits) gets its own loss, as in the
    official code's multi-class branch with `square_denominator=True`; `square=False`
    gives the paper's per-example form with denominator $p_c + y_c + \gamma$. A perfect
    prediction has loss 0. For a Dice loss over the whole set use `binary_dice` per
    class.

    Args:
        smooth: smoothing $\gamma \ge 0$ in numerator and denominator; 1 as in every
            released training script of the official code (its class default is 1e-4).
        square: square the denominator (the scripts' `--dice_square`) or not (the
            paper's DSC).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.dice(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0489, 0.3699])
    """
    return _token_dice(inp, 0.0, smooth, square)


@register(
    "self_adjusting_dice",
    family="dice",
    module="SelfAdjustingDiceLoss",
    reference=LI_2020,
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=_bounded_by_classes),
    },
    constraints={"alpha": Real(0.0), "smooth": Real(0.0)},
    test_configs=({"alpha": 1.0}, {"alpha": 0.5, "square": False}),
)
def self_adjusting_dice(
    inp: MulticlassInput, *, alpha: float = 0.01, smooth: float = 1.0, square: bool = True
) -> Tensor:
    r"""Self-adjusting Dice loss (Li et al., 2020): Dice on $(1 - p)^\alpha p$, which
    down-weights examples the model already gets right.

    $$
    \ell(z, y) = \sum_{c=1}^{C} \Big(1 - \frac{2\,\tilde p_c\,y_c + \gamma}
    {\tilde p_c^2 + y_c^2 + \gamma}\Big),\qquad \tilde p = (1 - p)^{\alpha}\, p,\quad
    p = \mathrm{softmax}(z)
    $$

    Token-level like `dice` (which is $\alpha = 0$). Near $p = 1$, $1 - p$ has the
    float's absolute resolution (6e-8 in float32); where it rounds to 0 it is floored at
    the smallest normal number, so the factor stays differentiable.

    Args:
        alpha: exponent $\alpha \ge 0$ of the self-adjusting factor; 0.01 as in every
            released training script (the paper's formula uses 1).
        smooth: smoothing $\gamma \ge 0$ (the scripts' 1).
        square: square the denominator (the scripts) or not (the paper).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.self_adjusting_dice(logits, torch.tensor([0, 2]), alpha=1.0, reduction="none")
        tensor([0.3628, 0.3761])
    """
    return _token_dice(inp, alpha, smooth, square)


def _index_tversky(inp: MulticlassInput, a: float, b: float, g: float) -> Tensor:
    r"""`tversky` for index targets and $\gamma > 0$: off the target $a p / (a p + \gamma)$,
    at the target $b (1 - p) / (p + b (1 - p) + \gamma)$, on one softmax with the analytic
    backward of :class:`SoftmaxSeparableRows`."""

    def phi(p: Tensor) -> Tensor:
        return a * p / (a * p + g)

    def dphi(p: Tensor) -> Tensor:
        return (a * g) / (a * p + g) ** 2

    def psi(p: Tensor) -> Tensor:
        return b * (1.0 - p) / (p + b * (1.0 - p) + g) - phi(p)

    def dpsi(p: Tensor) -> Tensor:
        # d/dp of b (1 - p) / den with den = p + b (1 - p) + g: -b (1 + g) / den^2
        return -b * (1.0 + g) / (p + b * (1.0 - p) + g) ** 2 - dphi(p)

    return softmax_separable(inp.logits, inp.index, phi, dphi, psi, dpsi)


@register(
    "tversky",
    family="dice",
    module="TverskyLoss",
    reference=TVERSKY,
    properties={
        "shift_invariant": {},
        "bounded": Claim(bound=_bounded_by_classes),
    },
    constraints={"alpha": Real(0.0), "beta": Real(0.0), "smooth": Real(0.0)},
    test_configs=({"alpha": 0.5, "beta": 0.5}, {"alpha": 0.9, "beta": 0.1, "smooth": 1e-4}),
)
def tversky(
    inp: MulticlassInput, *, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0
) -> Tensor:
    r"""Token-level multi-class Tversky loss, summed over classes.

    $$
    \ell(z, y) = \sum_{c=1}^{C} \Big(1 - \frac{p_c y_c + \gamma}{p_c y_c
    + \alpha\, p_c (1 - y_c) + \beta\, (1 - p_c)\, y_c + \gamma}\Big),
    \qquad p = \mathrm{softmax}(z)
    $$

    $\alpha$ weighs false positives and $\beta$ false negatives; $\alpha = \beta = 1/2$
    is the (unsquared) Dice loss with smoothing $2\gamma$, and $\beta > \alpha$ favours
    recall of rare classes. Token-level like `dice`.

    Args:
        alpha: weight $\alpha \ge 0$ of false positives (Salehi et al.'s 0.3).
        beta: weight $\beta \ge 0$ of false negatives (Salehi et al.'s 0.7).
        smooth: smoothing $\gamma \ge 0$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> F.tversky(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.1391, 0.4181])
    """
    if inp.soft is None and smooth > 0:
        return _index_tversky(inp, alpha, beta, smooth)
    p, y = _class_probs(inp, 0.0)
    tp = p * y
    den = tp + alpha * p * (1.0 - y) + beta * (1.0 - p) * y + smooth
    ratio = torch.where(den > 0, (tp + smooth) / torch.where(den > 0, den, 1.0), 1.0)
    return (1.0 - ratio).sum(dim=1)


# --------------------------------------------------------------------------- binary (set)


def set_masses(inp: BinaryInput) -> tuple[Tensor, Tensor | None]:
    """The positive mass ``w * pos_weight * t`` of every element and its whole mass
    ``w * (pos_weight * t + 1 - t)``, with ``w`` the element weight; 0 where masked; both
    of the logits' shape (broadcast views). Without weights, ``pos_weight`` and mask the
    whole mass is 1, returned as ``None``."""
    t, shape = inp.target, inp.logits.shape
    if inp.weight is None and inp.mask is None and inp.pos_weight is None:
        return t.expand(shape), None
    pos = t if inp.pos_weight is None else t * inp.pos_weight
    mass = pos + (1.0 - t)
    if inp.weight is not None:
        pos, mass = pos * inp.weight, mass * inp.weight
    if inp.mask is not None:
        pos, mass = torch.where(inp.mask, pos, 0.0), torch.where(inp.mask, mass, 0.0)
    return pos.expand(shape), mass.expand(shape)


def soft_counts(inp: BinaryInput, f: Any) -> tuple[Tensor, ...]:
    """Soft confusion counts ``(tn, fp, fn, tp)`` of the set's predictions ``f(x)`` (a
    callable for :func:`mass_sums`) against its masses (:func:`set_masses`), and the
    positive and negative mass. The counts are linear in ``f``: ``tp`` and the covered
    mass ``sum m f`` are the two sums, ``fn`` and ``tn`` the masses they leave out."""
    pos, mass = set_masses(inp)
    x = inp.logits
    tp, covered = mass_sums(x, f, pos, mass)
    positives = pos.sum()
    negatives = (x.new_tensor(float(x.numel())) if mass is None else mass.sum()) - positives
    fp = covered - tp
    return negatives - fp, fp, positives - tp, tp, positives, negatives


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    # An empty set with smooth = 0 scores 1: the set loss is 0, not 0/0.
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 1.0)


def _adjusted_sigmoid(alpha: float) -> Any:
    """``x -> (p~, dp~/dx)`` for :func:`mass_sums`: ``p~ = (1 - p)^alpha p``, ``p =
    sigmoid(x)``, ``1 - p = sigmoid(-x)`` (exact), ``dp~/dx = p~ ((1 - p) - alpha p)``."""

    def f(x: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        p, q = torch.sigmoid(x), torch.sigmoid(-x)
        pt = _power(q, alpha).mul_(p)
        return pt, (torch.mul(p, -alpha).add_(q).mul_(pt) if grad else None)

    return f


def _set_dice(inp: BinaryInput, alpha: float, smooth: float, square: bool) -> Tensor:
    pos, mass = set_masses(inp)
    x = inp.logits
    shape = x.shape
    # (1 - p)^alpha is floored at the smallest normal number (see _adjusted) where
    # sigmoid(-x) underflows, which the analytic derivative of mass_sums does not
    # follow: such inputs (and compiled graphs, which cannot look) take autograd's path.
    limit = -math.log(torch.finfo(x.dtype).tiny)
    compiling = torch.compiler.is_compiling()
    if alpha == 0 or (not compiling and (x.numel() == 0 or float(x.detach().amax()) < limit)):
        f = sigmoid_and_slope if alpha == 0 else _adjusted_sigmoid(alpha)
        tp, den = mass_sums(x, f, pos, mass, square)
    else:
        p = _adjusted(torch.sigmoid(x), torch.sigmoid(-x), alpha)
        tp = (pos * p).sum()
        h = p * p if square else p
        den = h.sum() if mass is None else (mass * h).sum()
    den = den + (dot(pos, inp.target.expand(shape)) if square else pos.sum())
    loss = 1.0 - _safe_ratio(2 * tp + smooth, den + smooth)
    return loss.expand(shape)


@register(
    "binary_dice",
    kind="binary",
    family="dice",
    module="BinaryDiceLoss",
    reference=LI_2020 + "; squared denominator: Milletari, Navab, Ahmadi. V-Net. 3DV 2016, "
    "arXiv:1606.04797",
    constraints={"smooth": Real(0.0)},
    test_configs=({"square": False, "smooth": 1e-4},),
)
def binary_dice(inp: BinaryInput, *, smooth: float = 1.0, square: bool = True) -> Tensor:
    r"""Dice loss over the whole set of binary (or multi-label) predictions.

    $$
    L = 1 - \frac{2 \sum_i p_i t_i + \gamma}{\sum_i p_i^2 + \sum_i t_i^2 + \gamma},
    \qquad p_i = \sigma(x_i)
    $$

    one value for the batch, as the official code's binary branch (which flattens the
    batch). `square=False` uses $\sum_i p_i + \sum_i t_i$; with it and $\gamma \to 0$,
    $1 - L$ is the soft F1 score of the set.

    Set-level: one value for the whole batch (every valid element scores together),
    carried by each element, so `"mean"` returns it and `"none"` gives it times each
    element weight; element weights and `pos_weight` weigh the elements in the sums.

    Args:
        smooth: smoothing $\gamma \ge 0$; 1 as in the official training scripts.
        square: square the denominator (the scripts) or not (the paper).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([3.0, -2.0, 0.5, -1.0])
        >>> F.binary_dice(logits, torch.tensor([1, 0, 1, 0]))
        tensor(0.0528)
    """
    return _set_dice(inp, 0.0, smooth, square)


@register(
    "binary_self_adjusting_dice",
    kind="binary",
    family="dice",
    module="BinarySelfAdjustingDiceLoss",
    reference=LI_2020,
    constraints={"alpha": Real(0.0), "smooth": Real(0.0)},
    test_configs=({"alpha": 1.0, "square": False},),
)
def binary_self_adjusting_dice(
    inp: BinaryInput, *, alpha: float = 0.01, smooth: float = 1.0, square: bool = True
) -> Tensor:
    r"""Self-adjusting Dice loss over the whole set of binary predictions (Li et al., 2020).

    $$
    L = 1 - \frac{2 \sum_i \tilde p_i t_i + \gamma}{\sum_i \tilde p_i^2 + \sum_i t_i^2
    + \gamma},\qquad \tilde p_i = (1 - p_i)^{\alpha}\, p_i,\quad p_i = \sigma(x_i)
    $$

    `binary_dice` is $\alpha = 0$. $1 - p$ is $\sigma(-x)$, exact for confident
    predictions.

    Set-level: one value for the whole batch (every valid element scores together),
    carried by each element, so `"mean"` returns it and `"none"` gives it times each
    element weight; element weights and `pos_weight` weigh the elements in the sums.

    Args:
        alpha: exponent $\alpha \ge 0$; 0.01 as in the official scripts (the paper's 1).
        smooth: smoothing $\gamma \ge 0$ (the scripts' 1).
        square: square the denominator (the scripts) or not (the paper).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([3.0, -2.0, 0.5, -1.0])
        >>> F.binary_self_adjusting_dice(logits, torch.tensor([1, 0, 1, 0]), alpha=1.0)
        tensor(0.4978)
    """
    return _set_dice(inp, alpha, smooth, square)


@register(
    "binary_tversky",
    kind="binary",
    family="dice",
    module="BinaryTverskyLoss",
    reference=TVERSKY,
    constraints={"alpha": Real(0.0), "beta": Real(0.0), "smooth": Real(0.0)},
    test_configs=({"alpha": 0.5, "beta": 0.5, "smooth": 0.0},),
)
def binary_tversky(
    inp: BinaryInput, *, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0
) -> Tensor:
    r"""Tversky loss over the whole set of binary (or multi-label) predictions.

    $$
    L = 1 - \frac{TP + \gamma}{TP + \alpha\, FP + \beta\, FN + \gamma},\quad
    TP = \sum_i p_i t_i,\ FP = \sum_i p_i (1 - t_i),\ FN = \sum_i (1 - p_i)\, t_i
    $$

    with $p_i = \sigma(x_i)$. $\alpha = \beta = 1/2$ is the unsquared Dice loss with
    smoothing $2\gamma$; $\beta > \alpha$ trades precision for recall.

    Set-level: one value for the whole batch (every valid element scores together),
    carried by each element, so `"mean"` returns it and `"none"` gives it times each
    element weight; element weights and `pos_weight` weigh the elements in the sums.

    Args:
        alpha: weight $\alpha \ge 0$ of false positives (Salehi et al.'s 0.3).
        beta: weight $\beta \ge 0$ of false negatives (Salehi et al.'s 0.7).
        smooth: smoothing $\gamma \ge 0$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([3.0, -2.0, 0.5, -1.0])
        >>> F.binary_tversky(logits, torch.tensor([1, 0, 1, 0]))
        tensor(0.1385)
    """
    _, fp, fn, tp, _, _ = soft_counts(inp, sigmoid_and_slope)
    loss = 1.0 - _safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)
    return loss.expand(inp.logits.shape)
