"""Evaluation metrics: accuracy family, NLL, calibration (ECE, reliability bins) and
embedding quality (alignment, uniformity)."""

from losslab.metrics.calibration import (
    ReliabilityBins,
    expected_calibration_error,
    reliability_bins,
    top_label_confidence,
)
from losslab.metrics.classification import (
    accuracy,
    balanced_accuracy,
    classification_metrics,
    log_softmax,
    macro_f1,
    nll,
    topk_accuracy,
)
from losslab.metrics.embedding import alignment, uniformity

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "alignment",
    "balanced_accuracy",
    "classification_metrics",
    "expected_calibration_error",
    "log_softmax",
    "macro_f1",
    "nll",
    "reliability_bins",
    "top_label_confidence",
    "topk_accuracy",
    "uniformity",
]
