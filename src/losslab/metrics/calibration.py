r"""Calibration metrics: expected calibration error with equal-width bins and the
per-bin statistics of a reliability diagram.

Confidence is the top-label probability :math:`c_i = \max_k p_{ik}` and correctness
:math:`a_i = 1[\hat y_i = y_i]`. With ``n_bins`` = M equal-width bins
:math:`B_b = (\tfrac{b-1}{M}, \tfrac{b}{M}]` (the first bin also holds :math:`c = 0`,
and :math:`c = 1` belongs to the last bin, never to an extra one),

.. math:: \mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,\bigl|\,\bar a_b - \bar c_b\,\bigr| .

Guo et al. (2017) use M = 15, the default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from losslab.metrics.classification import _as_numpy, _check, log_softmax

__all__ = [
    "ReliabilityBins",
    "expected_calibration_error",
    "reliability_bins",
    "top_label_confidence",
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
    def mean_confidence(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_confidence / self.count

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_correct / self.count

    @property
    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return float("nan")
        return float(np.abs(self.sum_correct - self.sum_confidence).sum() / n)

    def __add__(self, other: ReliabilityBins) -> ReliabilityBins:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError(
                "ReliabilityBins: other expected bins with the same edges, got other edges"
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
            np.linspace(0.0, 1.0, len(count) + 1),
            count,
            np.asarray(d["sum_confidence"], dtype=np.float64),
            np.asarray(d["sum_correct"], dtype=np.float64),
        )


def top_label_confidence(scores: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence ``max_k softmax(z)_k`` and correctness ``argmax z == y`` from logits."""
    s, t = _check(scores, target)
    logp = log_softmax(s)
    return np.exp(logp.max(axis=1)), (s.argmax(axis=1) == t).astype(np.float64)


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 15) -> ReliabilityBins:
    """Bin confidences into ``n_bins`` equal-width bins, right-closed ``(lo, hi]``."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"reliability_bins: n_bins expected a positive int, got {n_bins!r}")
    c = _as_numpy(confidence, "confidence").astype(np.float64).ravel()
    a = _as_numpy(correct, "correct").astype(np.float64).ravel()
    if c.shape != a.shape:
        raise ValueError(
            f"reliability_bins: correct expected shape {c.shape} like confidence, got {a.shape}"
        )
    if c.size and (np.nanmin(c) < 0 or np.nanmax(c) > 1 or np.isnan(c).any()):
        raise ValueError(
            "reliability_bins: confidence expected values in [0, 1], got values outside or NaN"
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # (lo, hi] membership: ceil(c * M) - 1, clipped so that c = 0 joins the first bin.
    idx = np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return ReliabilityBins(
        edges,
        np.bincount(idx, minlength=n_bins).astype(np.float64),
        np.bincount(idx, weights=c, minlength=n_bins),
        np.bincount(idx, weights=a, minlength=n_bins),
    )


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    r"""ECE with ``n_bins`` equal-width bins (see the module docstring for the formula).

    >>> round(expected_calibration_error([.95, .95, .55, .55], [1, 0, 1, 1]), 6)
    0.45
    """
    return reliability_bins(confidence, correct, n_bins).ece
