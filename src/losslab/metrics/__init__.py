"""Evaluation metrics: accuracy family, NLL, calibration (ECE and its relatives, Brier
score, smooth ECE, reliability bins; functional and stateful) and embedding quality
(alignment, uniformity), retrieval (Recall@k, MAP@R)."""

from losslab.metrics.calibration import (
    ReliabilityBins,
    adaptive_ece,
    bin_edges,
    brier_score,
    classwise_ece,
    ece,
    expected_calibration_error,
    mce,
    reliability,
    reliability_bins,
    smooth_ece,
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
    worst_class_recall,
)
from losslab.metrics.embedding import alignment, uniformity
from losslab.metrics.retrieval import map_at_r, recall_at_k, retrieval_metrics
from losslab.metrics.stateful import AdaptiveECE, CalibrationMetrics

__all__ = [
    "AdaptiveECE",
    "CalibrationMetrics",
    "ReliabilityBins",
    "accuracy",
    "adaptive_ece",
    "alignment",
    "balanced_accuracy",
    "bin_edges",
    "brier_score",
    "classification_metrics",
    "classwise_ece",
    "ece",
    "expected_calibration_error",
    "log_softmax",
    "macro_f1",
    "map_at_r",
    "mce",
    "nll",
    "recall_at_k",
    "reliability",
    "reliability_bins",
    "retrieval_metrics",
    "smooth_ece",
    "top_label_confidence",
    "topk_accuracy",
    "uniformity",
    "worst_class_recall",
]
