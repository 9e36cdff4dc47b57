r"""Calibration metrics: expected calibration error and its relatives, Brier score,
smooth ECE, and the per-bin statistics of a reliability diagram.

Confidence is the top-label probability $c_i = \max_k p_{ik}$ and correctness
$a_i = 1[\hat y_i = y_i]$ (the first maximum on ties, as `accuracy`). With `n_bins` = M
equal-width bins

$$ \mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,\bigl|\,\bar a_b - \bar c_b\,\bigr| ,\qquad
B_b = \{ i : \tfrac{b-1}{M} < c_i \le \tfrac{b}{M} \} $$

(Naeini et al., AAAI 2015; Guo et al., ICML 2017, who use M = 15, the default here).

**Bin edges.** Bin $b$ is right-closed, $(e_{b-1}, e_b]$ with $e_b$ the float64 nearest to
$b/M$; a confidence of exactly 0 joins the first bin and exactly 1 the last one (never an
extra bin); a confidence equal to an edge belongs to the bin that the edge closes.
Membership is decided in float64 by a search over the edges, not by `ceil(c * M)`, whose
rounding moves values that lie on an edge (0.28 * 25 = 7.000000000000001) into the
next bin.

Every function takes `scores` `(N, C)` or `(N, C, d1, ...)` as numpy arrays or torch
tensors, with `input="logits"` (default) or `input="probs"` (rows summing to 1; never
guessed from the range), and int `target` `(N, ...)`; they compute in float64 on the
input's device and return a Python float (NaN for an empty input). The stateful forms,
which keep fixed-size sufficient statistics and merge across batches and ranks, are in
`losslab.metrics.stateful`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab._validate import describe, fail
from losslab.metrics._inputs import (
    F64,
    Predictions,
    as_tensor,
    check_n_bins,
    predictions,
)
from losslab.metrics._smooth import smooth_ece_of
from losslab.metrics.classification import _check, log_softmax

__all__ = [
    "ReliabilityBins",
    "adaptive_ece",
    "bin_edges",
    "bin_index",
    "brier_score",
    "classwise_ece",
    "ece",
    "expected_calibration_error",
    "mce",
    "reliability",
    "reliability_bins",
    "smooth_ece",
    "top_label_confidence",
]


def bin_edges(n_bins: int) -> np.ndarray:
    """The M + 1 edges $b / M$ (each the float64 nearest to it) of equal-width bins."""
    return np.arange(n_bins + 1, dtype=np.float64) / n_bins


def bin_index(values: Tensor, n_bins: int) -> Tensor:
    """Right-closed equal-width bin of each value in [0, 1]: bin $b$ holds
    $(e_{b-1}, e_b]$, 0 joins the first bin, 1 stays in the last."""
    edges = torch.arange(n_bins + 1, dtype=F64, device=values.device) / n_bins
    # bucketize(right=False) returns i with edges[i-1] < v <= edges[i].
    return (torch.bucketize(values.to(F64), edges) - 1).clamp_(0, n_bins - 1)


def _binned(index: Tensor, size: int, *columns: Tensor) -> list[Tensor]:
    """Per-bin count and sums of ``columns`` (float64)."""
    ones = torch.ones_like(index, dtype=F64)
    return [
        torch.zeros(size, dtype=F64, device=index.device).index_add_(0, index, c.to(F64))
        for c in (ones, *columns)
    ]


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin sums of a reliability diagram over ``n_bins`` equal-width bins on [0, 1].

    Sums (not means) are stored so that bins of several evaluations can be added up
    before plotting; ``mean_confidence``/``accuracy`` divide them (NaN for empty bins).
    """

    edges: np.ndarray  # (M + 1,)
    count: np.ndarray  # (M,)
    sum_confidence: np.ndarray  # (M,)
    sum_correct: np.ndarray  # (M,)

    @property
    def n_bins(self) -> int:
        return len(self.count)

    @property
    def mean_confidence(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_confidence / self.count

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_correct / self.count

    @property
    def total(self) -> float:
        return float(self.count.sum())

    @property
    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return float("nan")
        return float(np.abs(self.sum_correct - self.sum_confidence).sum() / n)

    @property
    def mce(self) -> float:
        """Largest $|\\bar a_b - \\bar c_b|$ over the non-empty bins."""
        full = self.count > 0
        if not full.any():
            return float("nan")
        gap = np.abs(self.sum_correct[full] - self.sum_confidence[full]) / self.count[full]
        return float(gap.max())

    def __add__(self, other: ReliabilityBins) -> ReliabilityBins:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError(
                f"ReliabilityBins: other expected the same {self.n_bins} bins, "
                f"got {other.n_bins} bins"
            )
        return ReliabilityBins(
            self.edges,
            self.count + other.count,
            self.sum_confidence + other.sum_confidence,
            self.sum_correct + other.sum_correct,
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "count": self.count.tolist(),
            "sum_confidence": self.sum_confidence.tolist(),
            "sum_correct": self.sum_correct.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> ReliabilityBins:
        count = np.asarray(d["count"], dtype=np.float64)
        return cls(
            bin_edges(len(count)),
            count,
            np.asarray(d["sum_confidence"], dtype=np.float64),
            np.asarray(d["sum_correct"], dtype=np.float64),
        )

    @classmethod
    def from_tensors(cls, count: Tensor, sum_confidence: Tensor, sum_correct: Tensor) -> Any:
        return cls(
            bin_edges(count.numel()),
            count.cpu().numpy().astype(np.float64),
            sum_confidence.cpu().numpy().astype(np.float64),
            sum_correct.cpu().numpy().astype(np.float64),
        )


def _top_label_bins(p: Predictions, n_bins: int) -> ReliabilityBins:
    conf = p.confidence
    return ReliabilityBins.from_tensors(*_binned(bin_index(conf, n_bins), n_bins, conf, p.correct))


# ----------------------------------------------------------------------------- confidences


def top_label_confidence(scores: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence ``max_k softmax(z)_k`` and correctness ``argmax z == y`` from logits."""
    s, t = _check(scores, target)
    logp = log_softmax(s)
    return np.exp(logp.max(axis=1)), (s.argmax(axis=1) == t).astype(np.float64)


def _confidences(where: str, confidence: Any, correct: Any) -> tuple[Tensor, Tensor]:
    c = as_tensor(where, "confidence", confidence).to(F64).reshape(-1)
    a = as_tensor(where, "correct", correct).to(F64).reshape(-1)
    if c.shape != a.shape:
        fail(where, "correct", f"shape {tuple(c.shape)} like confidence", describe(a))
    if c.numel() and (bool(torch.isnan(c).any()) or bool(((c < 0) | (c > 1)).any())):
        fail(where, "confidence", "values in [0, 1]", "values outside [0, 1] or NaN")
    if a.numel() and bool(((a != 0) & (a != 1)).any()):
        fail(where, "correct", "0/1 or boolean values", "other values")
    return c, a


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 15) -> ReliabilityBins:
    """Bin confidences into ``n_bins`` equal-width right-closed bins (see the module
    docstring for the edge rule) with their correctness."""
    check_n_bins("reliability_bins", n_bins)
    c, a = _confidences("reliability_bins", confidence, correct)
    return ReliabilityBins.from_tensors(*_binned(bin_index(c, n_bins), n_bins, c, a))


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    r"""ECE with ``n_bins`` equal-width bins from confidences and correctness.

    >>> round(expected_calibration_error([.95, .95, .55, .55], [1, 0, 1, 1]), 6)
    0.45
    """
    return reliability_bins(confidence, correct, n_bins).ece


# ----------------------------------------------------------------------------- from scores


def reliability(
    scores: Any, target: Any, *, n_bins: int = 15, input: str = "logits"
) -> ReliabilityBins:
    """Top-label reliability bins of predictions (for diagrams and pooling).

    >>> import torch
    >>> bins = reliability(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    >>> bins.total, bins.n_bins, round(bins.ece, 4)
    (2.0, 15, 0.4251)
    """
    check_n_bins("reliability", n_bins)
    return _top_label_bins(predictions("reliability", scores, target, input=input), n_bins)


def ece(scores: Any, target: Any, *, n_bins: int = 15, input: str = "logits") -> float:
    r"""Expected calibration error of the top label with equal-width bins.

    $$ \mathrm{ECE} = \sum_{b=1}^{M} \frac{|B_b|}{n} \bigl| \bar a_b - \bar c_b \bigr| $$

    Args:
        scores: `(N, C)` or `(N, C, d1, ...)` logits or probabilities (numpy or torch).
        target: int class indices `(N, ...)`.
        n_bins: M, the number of equal-width bins on [0, 1] (Guo et al.'s 15).
        input: `"logits"` or `"probs"`.

    Reference: Naeini, Cooper, Hauskrecht, AAAI 2015; Guo, Pleiss, Sun, Weinberger, On
    Calibration of Modern Neural Networks, ICML 2017, arXiv:1706.04599.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.95, .05], [.95, .05], [.55, .45], [.45, .55]])
        >>> round(ece(probs, np.array([0, 1, 0, 1]), input="probs"), 6)
        0.45
    """
    check_n_bins("ece", n_bins)
    return _top_label_bins(predictions("ece", scores, target, input=input), n_bins).ece


def mce(scores: Any, target: Any, *, n_bins: int = 15, input: str = "logits") -> float:
    r"""Maximum calibration error: the largest gap over the non-empty equal-width bins.

    $$ \mathrm{MCE} = \max_{b:\,|B_b| > 0} \bigl| \bar a_b - \bar c_b \bigr| $$

    Reference: Naeini, Cooper, Hauskrecht, AAAI 2015.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.95, .05], [.95, .05], [.55, .45], [.45, .55]])
        >>> round(mce(probs, np.array([0, 1, 0, 0]), input="probs"), 6)
        0.45
    """
    check_n_bins("mce", n_bins)
    return _top_label_bins(predictions("mce", scores, target, input=input), n_bins).mce


def equal_mass_edges(confidence: Tensor, n_bins: int) -> Tensor:
    """Edges at the $b/M$ quantiles of the confidences (linear interpolation between
    order statistics, numpy's default), so that each bin holds about $n/M$ samples."""
    s = confidence.to(F64).sort().values
    n = s.numel()
    pos = torch.arange(n_bins + 1, dtype=F64, device=s.device) * (n - 1) / n_bins
    lo = pos.floor().long().clamp_(0, n - 1)
    hi = (lo + 1).clamp_(max=n - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def adaptive_ece(scores: Any, target: Any, *, n_bins: int = 15, input: str = "logits") -> float:
    r"""Adaptive (equal-mass) ECE: the ECE formula over bins that each hold about $n/M$
    samples.

    $$ \mathrm{AdaECE} = \sum_{b=1}^{M} \frac{|B_b|}{n} \bigl| \bar a_b - \bar c_b \bigr|,
    \qquad B_b = \{ i : q_{b-1} < c_i \le q_b \} $$

    with $q_b$ the $b/M$ quantile of the confidences and the first bin closed on the left.
    Bins are decided by value, so tied confidences share a bin and the result does not
    depend on the order of the samples (a tie may make bins unequal). Needs every
    confidence: the stateful form keeps the samples (see `AdaptiveECE`).

    Reference: Nixon, Dusenberry, Zhang, Jerfel, Tran, Measuring Calibration in Deep
    Learning, CVPR-W 2019, arXiv:1904.01685; Mukhoti et al., Calibrating Deep Neural
    Networks using Focal Loss, NeurIPS 2020, arXiv:2002.09437.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.95, .05], [.95, .05], [.55, .45], [.45, .55]])
        >>> round(adaptive_ece(probs, np.array([0, 1, 0, 1]), n_bins=2, input="probs"), 6)
        0.45
    """
    check_n_bins("adaptive_ece", n_bins)
    p = predictions("adaptive_ece", scores, target, input=input)
    return adaptive_ece_from(p.confidence, p.correct, n_bins)


def adaptive_ece_from(confidence: Tensor, correct: Tensor, n_bins: int) -> float:
    """Adaptive ECE of confidence / correctness vectors (float64)."""
    n = confidence.numel()
    if n == 0:
        return float("nan")
    edges = equal_mass_edges(confidence, n_bins)
    # Inner edges only: values <= q_1 (the minimum included) go to bin 0, > q_{M-1} to M-1.
    idx = torch.bucketize(confidence.to(F64), edges[1:-1].contiguous())
    _, s_conf, s_acc = _binned(idx, n_bins, confidence, correct)
    return float((s_acc - s_conf).abs().sum() / n)


def classwise_ece(scores: Any, target: Any, *, n_bins: int = 15, input: str = "logits") -> float:
    r"""Classwise (static) calibration error: for each class, the ECE of its predicted
    probability against the indicator of the class, averaged over classes.

    $$ \mathrm{cwECE} = \frac1K \sum_{k=1}^{K} \sum_{b=1}^{M} \frac{|B_{bk}|}{n}
    \bigl| \bar y_{bk} - \bar p_{bk} \bigr|, \qquad
    B_{bk} = \{ i : \tfrac{b-1}{M} < p_{ik} \le \tfrac{b}{M} \} $$

    Same bin-edge rule as `ece` (probability 0 in the first bin).

    Reference: Kull et al., Beyond temperature scaling, NeurIPS 2019, arXiv:1910.12656;
    Nixon et al., CVPR-W 2019 (SCE).

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.9, .1], [.2, .8]])
        >>> round(classwise_ece(probs, np.array([0, 1]), n_bins=10, input="probs"), 6)
        0.15
    """
    check_n_bins("classwise_ece", n_bins)
    p = predictions("classwise_ece", scores, target, input=input)
    if len(p) == 0:
        return float("nan")
    _, s_prob, s_hit = classwise_sums(p, n_bins)
    k = p.num_classes
    return float((s_hit - s_prob).abs().sum() / (len(p) * k))


def classwise_sums(p: Predictions, n_bins: int) -> list[Tensor]:
    """Per (class, bin) count, sum of probabilities and sum of hits, each ``(K * M,)``."""
    k = p.num_classes
    offsets = torch.arange(k, device=p.probs.device) * n_bins
    idx = (bin_index(p.probs, n_bins) + offsets).reshape(-1)
    hits = torch.nn.functional.one_hot(p.target, k).to(F64).reshape(-1)
    return _binned(idx, k * n_bins, p.probs.reshape(-1), hits)


def brier_score(
    scores: Any, target: Any, *, input: str = "logits", top_label: bool = False
) -> float:
    r"""Brier score: mean squared distance between the predicted distribution and the
    one-hot target, summed over classes.

    $$ \mathrm{BS} = \frac1n \sum_i \sum_k (p_{ik} - 1[y_i = k])^2 \in [0, 2] $$

    With `top_label=True`, the top-label form $\frac1n \sum_i (c_i - a_i)^2$ (what the CA
    repository reports as "BS").

    Reference: Brier, Verification of forecasts expressed in terms of probability,
    Monthly Weather Review 1950.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.9, .1], [.2, .8]])
        >>> round(brier_score(probs, np.array([0, 0]), input="probs"), 6)
        0.65
    """
    if not isinstance(top_label, bool):
        fail("brier_score", "top_label", "a bool", describe(top_label), TypeError)
    p = predictions("brier_score", scores, target, input=input)
    if len(p) == 0:
        return float("nan")
    if top_label:
        return float(((p.confidence - p.correct) ** 2).mean())
    return float(brier_sum(p) / len(p))


def brier_sum(p: Predictions) -> Tensor:
    """Sum over samples of $\\sum_k p_k^2 - 2 p_y + 1$."""
    p_y = p.probs.gather(1, p.target.unsqueeze(1)).squeeze(1)
    return ((p.probs**2).sum(dim=1) - 2 * p_y + 1).sum()


def smooth_ece(scores: Any, target: Any, *, input: str = "logits") -> float:
    r"""Smooth ECE of the top label: a binning-free estimator that smooths the residuals
    $c_i - a_i$ with a reflected Gaussian kernel whose width is its own value.

    $$ \mathrm{smECE} = \int_0^1 \Bigl| \frac1n \sum_i K_{\sigma^*}(t, c_i)(c_i - a_i)
    \Bigr|\, dt, \qquad \sigma^* = \mathrm{smECE} $$

    Computed as the authors' `relplot.smECE` (1.0.3): the same kernel, discretisation and
    bisection, and the same value when $\sigma^* \ge 0.01$; below, the grid is finer
    (nested grids make the statistics add up across batches; see
    `losslab.metrics._smooth`).

    Reference: Blasiok, Nakkiran, Smooth ECE: Principled Reliability Diagrams via Kernel
    Smoothing, ICLR 2024, arXiv:2309.12236; code: apple/ml-calibration (`relplot`).

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.95, .05], [.95, .05], [.55, .45], [.45, .55]])
        >>> round(smooth_ece(probs, np.array([0, 1, 0, 1]), input="probs"), 3)
        0.244
    """
    p = predictions("smooth_ece", scores, target, input=input)
    return smooth_ece_of(p.confidence, p.correct)[0]
