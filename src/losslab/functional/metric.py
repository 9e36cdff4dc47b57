"""Losses for the metric you report: AnyLoss (1 - a soft confusion-matrix metric such as
F1, G-mean or balanced accuracy) and the Mann-Whitney / AUC loss. All are set-level: the
loss of an element depends on the whole batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import softplus

from losslab._reduce import KernelResult
from losslab._validate import Real, describe, fail
from losslab.functional._fused import as_rows, block_sums, row_dot
from losslab.functional.dice import set_masses, soft_counts
from losslab.kinds.binary import BinaryInput
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import Claim, register

ANYLOSS = (
    "Han, Moniz, Chawla. AnyLoss: Transforming Classification Metrics into Loss "
    "Functions. arXiv:2405.14745, 2024; code: github.com/doheonhan/anyloss_extension"
)
METRICS = ("accuracy", "f1", "fbeta", "gmean", "gmean_sqrt", "balanced_accuracy")


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    # Where the denominator is 0 the metric is undefined and its element is not valid;
    # a finite stand-in keeps the backward pass free of 0/0.
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, 1.0), 0.0)


def _metric(
    name: str,
    metric: str | Callable[..., Tensor],
    beta: float,
    eps: float,
    counts: tuple[Tensor, Tensor, Tensor, Tensor],
    positives: Tensor,
    negatives: Tensor,
) -> tuple[Tensor, Tensor]:
    """The metric from soft counts ``(tn, fp, fn, tp)`` (tensors of one shape) and
    whether it is defined: F-scores need positives, G-mean and balanced accuracy both
    classes, accuracy and callables a non-empty set."""
    tn, fp, fn, tp = counts
    total = positives + negatives
    if callable(metric):
        return metric(tn, fp, fn, tp), total > 0
    if metric == "accuracy":
        return _safe_div(tp + tn, total), total > 0
    if metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta * beta
        # (1 + b^2) TP / ((1 + b^2) TP + FP + b^2 FN), with the code's stabiliser s.
        value = _safe_div((1 + b2) * tp, b2 * positives + tp + fp + eps)
        return value, positives > 0
    both = (positives > 0) & (negatives > 0)
    if metric == "gmean":
        return _safe_div(tp * tn, positives * negatives + eps), both
    if metric == "gmean_sqrt":
        ratio = _safe_div(tp * tn, positives * negatives)
        return ratio.clamp_min(torch.finfo(ratio.dtype).tiny).sqrt(), both
    if metric == "balanced_accuracy":
        value = _safe_div(negatives * tp + positives * tn, 2 * positives * negatives + eps)
        return value, both
    fail(
        name,
        "metric",
        f"one of {METRICS} or a callable of (tn, fp, fn, tp)",
        describe(metric),
    )


def _check_metric(name: str, metric: object) -> None:
    if not callable(metric) and metric not in METRICS:
        fail(
            name, "metric", f"one of {METRICS} or a callable of (tn, fp, fn, tp)", describe(metric)
        )


def _counts(inp: BinaryInput) -> dict[str, Tensor]:
    """Unweighted numbers of positive and negative valid elements (soft targets count
    fractionally)."""
    t = inp.target  # 0 where masked
    n = torch.ones_like(t) if inp.mask is None else inp.mask.to(t.dtype)
    return {"positives": t.sum(), "negatives": (n - t).sum()}


def _amplify(p: Tensor, amplifier: float) -> Tensor:
    """AnyLoss' approximated prediction ``A = sigmoid(L (p - 1/2))`` of probabilities ``p``
    (one op for ``L p - L/2``)."""
    return torch.add(p.new_full((), -amplifier / 2), p, alpha=amplifier).sigmoid_()


def _amplified(amplifier: float) -> Any:
    """``x -> (A, dA/dx)`` for :func:`~losslab.functional._fused.mass_sums`: ``A`` of ``p =
    sigmoid(x)`` (:func:`_amplify`), ``dA/dx = L A (1 - A) p (1 - p)`` (the factors ``A -
    A^2`` and ``p - p^2`` to absolute precision)."""

    def f(x: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        p = torch.sigmoid(x)
        a = _amplify(p, amplifier)
        if not grad:
            return a, None
        slope = torch.addcmul(a, a, a, value=-1.0).mul_(p.addcmul_(p, p, value=-1.0))
        return a, slope.mul_(amplifier)

    return f


@register(
    "anyloss",
    kind="binary",
    family="metric",
    module="AnyLoss",
    reference=ANYLOSS,
    constraints={
        "amplifier": Real(0.0, lo_open=True),
        "beta": Real(0.0, lo_open=True),
        "eps": Real(0.0),
    },
    components=("positives", "negatives"),
    test_configs=(
        {"metric": "accuracy"},
        {"metric": "gmean"},
        {"metric": "gmean_sqrt", "amplifier": 10.0},
        {"metric": "balanced_accuracy"},
        {"metric": "fbeta", "beta": 2.0},
    ),
)
def anyloss(
    inp: BinaryInput,
    *,
    metric: Any = "f1",
    amplifier: float = 73.0,
    beta: float = 1.0,
    eps: float = 1e-5,
) -> KernelResult:
    r"""AnyLoss (Han et al., 2024): one minus a classification metric computed from a soft
    confusion matrix of the batch.

    $$
    L = 1 - M(TN, FP, FN, TP),\quad TP = \sum_i t_i A_i,\ FN = \sum_i t_i (1 - A_i),\
    FP = \sum_i (1 - t_i) A_i,\ TN = \sum_i (1 - t_i)(1 - A_i),\quad
    A_i = \sigma\big(L_a (\sigma(x_i) - \tfrac12)\big)
    $$

    The amplifier $A$ pushes the predicted probability towards 0 or 1, so the soft
    counts approach the hard confusion matrix at threshold 1/2 (as $L_a \to \infty$ the
    loss is one minus the hard metric). Metrics, with $y_1 = \sum_i t_i$,
    $y_0 = \sum_i (1 - t_i)$ and $s$ = `eps` as in the official code: `"accuracy"`
    $(TP + TN)/(y_1 + y_0)$; `"f1"` / `"fbeta"` $(1 + \beta^2) TP / (\beta^2 y_1 + TP +
    FP + s)$; `"gmean"` $TP \cdot TN / (y_1 y_0 + s)$ (the code's squared G-mean);
    `"gmean_sqrt"` $\sqrt{TP \cdot TN / (y_1 y_0)}$ (the paper's G-mean);
    `"balanced_accuracy"` $(y_0 TP + y_1 TN) / (2 y_1 y_0 + s)$; or a callable of the
    soft counts `(tn, fp, fn, tp)` returning a tensor.

    Set-level: one value for the whole batch (every valid element of `(N,)` or
    `(N, L, ...)` counts once), carried by each element, so `"mean"` returns it. Element
    weights and `pos_weight` weigh the elements in the counts. A batch where the metric
    is undefined (no positives for F-scores; a missing class for G-mean and balanced
    accuracy) gives an attached 0; the components `positives` and `negatives` count
    $y_1$ and $y_0$ (unweighted). Use large batches: the metric is of the batch.

    Args:
        metric: `"f1"`, `"fbeta"`, `"accuracy"`, `"gmean"`, `"gmean_sqrt"`,
            `"balanced_accuracy"`, or a callable `metric(tn, fp, fn, tp) -> Tensor`
            (a callable cannot be serialised by `get_config`).
        amplifier: $L_a > 0$; 73 as in every original experiment (the extension's
            README suggests 2 to 70).
        beta: $\beta > 0$ of `"fbeta"`.
        eps: the stabiliser $s \ge 0$ of the code's denominators.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> p = torch.tensor([0.9, 0.2, 0.6, 0.4])
        >>> F.anyloss(torch.logit(p), torch.tensor([1, 0, 1, 0]), metric="accuracy")
        tensor(0.0003)
        >>> F.anyloss(torch.logit(p), torch.tensor([0, 0, 0, 0]), return_components=True)
        AnyLossComponents(loss=tensor(0.), positives=tensor(0.), negatives=tensor(4.))
    """
    _check_metric("anyloss", metric)
    tn, fp, fn, tp, positives, negatives = soft_counts(inp, _amplified(float(amplifier)))
    counts = (tn, fp, fn, tp)
    value, defined = _metric("anyloss", metric, beta, eps, counts, positives, negatives)
    shape = inp.logits.shape
    return KernelResult((1.0 - value).expand(shape), defined.expand(shape), _counts(inp))


def _macro_sums(amplifier: float) -> tuple[Any, Any]:
    r"""AnyLoss' per-class sums over rows of ``(R, K)`` logits, for :func:`block_sums`:
    ``tp_k = sum_r pos_rk A_rk`` and ``covered_k = sum_r w_r A_rk``, ``A =
    sigmoid(L (p - 1/2))``, ``p = softmax(z)``, with the row weights ``w`` ``(R, 1)`` and
    the positive masses ``pos = w e_y`` (``index`` ``(R,)``) or given ``(R, K)``. The
    gradient: ``dL/dA_rk = g_tp,k pos_rk + g_cov,k w_r``, times ``L A (1 - A)``, then the
    softmax Jacobian ``p (u - <p, u>)``."""

    def amplified(z: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.softmax(z, dim=1)
        return p, _amplify(p, amplifier)

    def sums(z: Tensor, index: Tensor | None, pos: Tensor | None, w: Tensor) -> Tensor:
        _, a = amplified(z)
        if index is None:
            assert pos is not None
            tp = torch.mul(pos, a).sum(dim=0)
        else:
            hit = a.gather(1, index.unsqueeze(1)).mul_(w).squeeze(1)
            tp = a.new_zeros(a.shape[1]).index_add_(0, index, hit)
        return torch.stack((tp, torch.mv(a.t(), w.squeeze(1))))

    def grad(
        z: Tensor, index: Tensor | None, pos: Tensor | None, w: Tensor, g: Tensor, out: Tensor
    ) -> None:
        # The per-class coefficients span many decades (a class whose metric is flat
        # gets ~1e-20); scaled to a largest magnitude of 1 until the last product, they
        # keep the products with small probabilities out of the subnormal range, which
        # this CPU computes about 100 times slower. L of dA/dp is folded in here.
        top = g.abs().amax().clamp_min(torch.finfo(g.dtype).tiny)
        g_tp, g_cov = (g / top * amplifier).unbind(0)
        torch.mul(w, g_cov, out=out)
        if index is None:
            assert pos is not None
            out.add_(pos * g_tp)
        else:
            out.scatter_add_(1, index.unsqueeze(1), g_tp[index].unsqueeze(1) * w)
        p, a = amplified(z)
        out.mul_(a.addcmul_(a, a, value=-1.0))
        out.sub_(row_dot(p, out)).mul_(p).mul_(top)

    return sums, grad


@register(
    "anyloss_macro",
    family="metric",
    module="AnyLossMacro",
    reference=ANYLOSS + "; the one-vs-rest macro average is losslab's extension (the paper "
    "is binary)",
    properties={"shift_invariant": {}, "bounded": Claim(bound=1.0)},
    constraints={
        "amplifier": Real(0.0, lo_open=True),
        "beta": Real(0.0, lo_open=True),
        "eps": Real(0.0),
    },
    components=("classes",),
    test_configs=(
        {"metric": "balanced_accuracy"},
        {"metric": "accuracy", "amplifier": 10.0},
        {"metric": "gmean_sqrt"},
    ),
)
def anyloss_macro(
    inp: MulticlassInput,
    *,
    metric: Any = "f1",
    amplifier: float = 73.0,
    beta: float = 1.0,
    eps: float = 1e-5,
) -> KernelResult:
    r"""AnyLoss for multi-class outputs: one-vs-rest soft confusion matrices of the batch,
    one minus the macro average of the per-class metric.

    $$
    L = 1 - \frac{1}{|K|} \sum_{c \in K} M\big(TN_c, FP_c, FN_c, TP_c\big),\quad
    TP_c = \sum_i y_{ic} A_{ic},\ \dots,\quad A_{ic} = \sigma\big(L_a (p_{ic} -
    \tfrac12)\big),\ p_i = \mathrm{softmax}(z_i)
    $$

    Each class $c$ is a binary problem ($y_{ic}$ the one-hot or soft target) scored as in
    `anyloss`; $K$ holds the classes whose metric is defined in the batch (F-scores:
    classes with positives; G-mean and balanced accuracy: classes with positives and
    negatives; accuracy and callables: all). The component `classes` is $|K|$; a batch
    with $K$ empty gives an attached 0. `metric="f1"` is a soft macro-F1. A callable
    metric receives `(C,)` tensors. The threshold is $p = 1/2$ per class, so a class
    counts as predicted only above probability 1/2.

    Set-level like `anyloss`: one value for the batch, carried by each element (`(N, *)`
    positions all count). Element weights (class weight of the target times the sample
    weight) weigh the elements in the counts.

    Args:
        metric: as in `anyloss`.
        amplifier: $L_a > 0$ (the paper's 73).
        beta: $\beta > 0$ of `"fbeta"`.
        eps: the stabiliser $s \ge 0$ of the code's denominators.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 1.3], [0.0, 3.0, 0.0]])
        >>> F.anyloss_macro(logits, torch.tensor([0, 2, 1]))
        tensor(5.1975e-05)
    """
    _check_metric("anyloss_macro", metric)
    z = as_rows(inp.logits)
    w = torch.ones_like(z[:, 0]) if inp.weight is None else inp.weight.reshape(-1)
    if inp.mask is not None:
        w = torch.where(inp.mask.reshape(-1), w, 0.0)
    amp = float(amplifier)
    if inp.soft is None:
        y = inp.index.reshape(-1)
        tp, covered = block_sums(z, *_macro_sums(amp), y, None, w.unsqueeze(1)).unbind(0)
        positives = z.new_zeros(z.shape[1]).index_add_(0, y, w)
    else:
        pos = as_rows(inp.soft) * w[:, None]
        tp, covered = block_sums(z, *_macro_sums(amp), None, pos, w.unsqueeze(1)).unbind(0)
        positives = pos.sum(0)
    negatives = w.sum() - positives
    # the counts are linear in A: fn and tn are the masses A leaves out
    counts = (negatives - (covered - tp), covered - tp, positives - tp, tp)
    value, defined = _metric("anyloss_macro", metric, beta, eps, counts, positives, negatives)
    k = defined.sum()
    mean = torch.where(defined, value, 0.0).sum() / k.clamp_min(1)
    shape = inp.element_shape
    return KernelResult((1.0 - mean).expand(shape), (k > 0).expand(shape), {"classes": k})


@register(
    "mw",
    kind="binary",
    family="metric",
    module="MWLoss",
    reference="Sheikholeslami et al. A Mann-Whitney loss for dense retrieval "
    "(AUC-optimising). arXiv:2510.00137, 2025 (no public code); the pairwise "
    "logistic AUC surrogate of Yan, Dodier, Mozer, Wolniewicz, ICML 2003",
    constraints={"temperature": Real(0.0, lo_open=True)},
    components=("positives", "negatives"),
    test_configs=({"temperature": 0.05},),
)
def mw(inp: BinaryInput, *, temperature: float = 1.0) -> KernelResult:
    r"""Mann-Whitney (AUC) loss: the logistic loss of every positive-minus-negative score
    difference in the batch.

    $$
    \ell_k = \frac{t_k}{|S^-|} \sum_{j \in S^-} \log\big(1 + e^{-(x_k - x_j)/\tau}\big)
    + \frac{1 - t_k}{|S^+|} \sum_{i \in S^+} \log\big(1 + e^{-(x_i - x_k)/\tau}\big)
    $$

    with $S^+$, $S^-$ the batch's positives and negatives and $t_k$ the target. Per
    anchor: each element's value is its mean pair loss against the other class, and
    the `"mean"` over elements is exactly the mean over all positive-negative pairs, an
    upper bound of $\log 2 \cdot (1 - \mathrm{AUC})$ on the batch. Every valid element of
    `(N,)` or `(N, L, ...)` joins one set (call per label for per-label AUCs). Element
    weights weigh pairs ($w_i w_j$, normalised by the weighted class totals); probability
    targets split an element into a positive part $t$ and a negative part $1 - t$.
    Unlike InfoNCE, positives are compared with every negative, so the loss is not
    invariant to shifting one query's scores. A batch without positives or without
    negatives has no pair: an attached 0, with the counts in the components. Memory is
    quadratic in the number of elements.

    Args:
        temperature: $\tau > 0$. 1 suits logits; the paper uses 0.01 on cosine
            similarities in $[-1, 1]$.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> scores = torch.tensor([2.0, -1.0, 0.5, 0.0])
        >>> F.mw(scores, torch.tensor([1, 0, 1, 0]), reduction="none")
        tensor([0.0878, 0.1250, 0.3377, 0.3005])
        >>> F.mw(scores, torch.tensor([1, 1, 1, 1]), return_components=True)
        MWLossComponents(loss=tensor(0.), positives=tensor(4.), negatives=tensor(0.))
    """
    if inp.pos_weight is not None:
        fail(
            "mw",
            "pos_weight",
            "None (pairs are weighed by the element weights)",
            describe(inp.pos_weight),
        )
    shape = inp.logits.shape
    x = inp.logits.reshape(-1)
    t = inp.target.reshape(-1)
    valid = None if inp.mask is None else inp.mask.reshape(-1)
    if valid is not None:
        # Masked scores may be anything with validate=False; they have no mass below.
        x = torch.where(valid, x, 0.0)
    pos, mass = set_masses(inp)
    neg = 1.0 - pos if mass is None else mass - pos
    pos, neg = pos.reshape(-1), neg.reshape(-1)
    total_pos, total_neg = pos.sum(), neg.sum()
    # pair[i, j] = loss of ranking i above j
    pair = softplus(-(x[:, None] - x[None, :]) / temperature)
    as_positive = (pair * neg[None, :]).sum(1) / total_neg.clamp_min(torch.finfo(x.dtype).tiny)
    as_negative = (pair * pos[:, None]).sum(0) / total_pos.clamp_min(torch.finfo(x.dtype).tiny)
    values = t * as_positive + (1.0 - t) * as_negative
    has_pairs = (total_pos > 0) & (total_neg > 0)
    return KernelResult(values.reshape(shape), has_pairs.expand(shape), _counts(inp))
