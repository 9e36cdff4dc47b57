r"""Classification metrics computed from logits: top-k accuracy, balanced accuracy,
worst-class recall, macro-F1 and negative log-likelihood.

All functions take ``scores`` of shape ``(N, C)`` (logits; anything monotone in the
class probability works for the ranking metrics) and integer ``target`` of shape ``(N,)``
as numpy arrays or torch tensors, and return Python floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "classification_metrics",
    "log_softmax",
    "macro_f1",
    "nll",
    "topk_accuracy",
    "worst_class_recall",
]


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # pragma: no cover - defensive
            raise TypeError(
                f"losslab.metrics: {name} expected an array or tensor, got {type(x).__name__}"
            ) from exc
    return x


def _check(scores: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy(scores, "scores")
    t = _as_numpy(target, "target")
    if s.ndim != 2:
        raise ValueError(f"losslab.metrics: scores expected shape (N, C), got {s.shape}")
    if t.ndim != 1 or t.shape[0] != s.shape[0]:
        raise ValueError(f"losslab.metrics: target expected shape ({s.shape[0]},), got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"losslab.metrics: target expected an integer dtype, got {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= s.shape[1]):
        raise ValueError(
            f"losslab.metrics: target expected class indices in [0, {s.shape[1] - 1}], "
            f"got values in [{t.min()}, {t.max()}]"
        )
    return s.astype(np.float64, copy=False), t.astype(np.int64, copy=False)


def log_softmax(scores: Any) -> np.ndarray:
    r"""Row-wise :math:`\log \mathrm{softmax}(z)_k = z_k - \log\sum_j e^{z_j}` (max-shifted)."""
    z = _as_numpy(scores, "scores").astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def topk_accuracy(scores: Any, target: Any, k: int = 1) -> float:
    r"""Fraction of rows whose target is among the ``k`` highest scores.

    .. math:: \mathrm{acc@k} = \frac1N \sum_i 1[\,|\{j : z_{ij} > z_{i y_i}\}| < k\,]

    Ties are resolved in favour of the target (a target tied with the k-th score counts
    as a hit), which makes the metric independent of the sort order of tied classes.
    """
    s, t = _check(scores, target)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"topk_accuracy: k expected a positive int, got {k!r}")
    if t.size == 0:
        return float("nan")
    target_score = s[np.arange(len(t)), t][:, None]
    n_above = (s > target_score).sum(axis=1)
    return float((n_above < k).mean())


def accuracy(scores: Any, target: Any) -> float:
    """Top-1 accuracy, ``mean(argmax_k z_ik == y_i)`` (first maximum on ties)."""
    s, t = _check(scores, target)
    if t.size == 0:
        return float("nan")
    return float((s.argmax(axis=1) == t).mean())


def _confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def balanced_accuracy(scores: Any, target: Any) -> float:
    r"""Mean per-class recall over the classes present in ``target``.

    .. math:: \mathrm{bacc} = \frac{1}{|\mathcal{K}|}\sum_{k \in \mathcal{K}}
              \frac{|\{i: \hat y_i = k, y_i = k\}|}{|\{i : y_i = k\}|}

    where :math:`\mathcal K` are the classes with at least one target (as scikit-learn).
    """
    recalls = _recalls(scores, target)
    return float(recalls.mean()) if recalls.size else float("nan")


def worst_class_recall(scores: Any, target: Any) -> float:
    r"""Smallest per-class recall over the classes present in ``target``: the accuracy
    on the class the model serves worst (on long-tailed data, usually a tail class).

    .. math:: \min_{k \in \mathcal{K}}
              \frac{|\{i: \hat y_i = k, y_i = k\}|}{|\{i : y_i = k\}|}

    with :math:`\mathcal K` the classes with at least one target, as in
    :func:`balanced_accuracy` (whose mean this is the minimum of).

    Example:
        >>> import numpy as np
        >>> z = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> worst_class_recall(z, np.array([0, 0, 1, 1]))
        0.5
    """
    recalls = _recalls(scores, target)
    return float(recalls.min()) if recalls.size else float("nan")


def _recalls(scores: Any, target: Any) -> np.ndarray:
    """Per-class recall of the classes present in ``target`` (empty for no targets)."""
    s, t = _check(scores, target)
    if t.size == 0:
        return np.zeros(0)
    cm = _confusion(s.argmax(axis=1), t, s.shape[1])
    support = cm.sum(axis=1)
    present = support > 0
    return np.diag(cm)[present] / support[present]


def macro_f1(scores: Any, target: Any) -> float:
    r"""Unweighted mean of per-class F1 over classes that occur in the target or the
    prediction; a class with no true positive has F1 = 0 (scikit-learn's convention).

    .. math:: F1_k = \frac{2\,TP_k}{2\,TP_k + FP_k + FN_k}
    """
    s, t = _check(scores, target)
    if t.size == 0:
        return float("nan")
    cm = _confusion(s.argmax(axis=1), t, s.shape[1])
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


def nll(scores: Any, target: Any, *, input: str = "logits") -> float:
    r"""Mean negative log-likelihood, :math:`-\frac1N\sum_i \log p_{i y_i}`, computed in
    float64: ``p`` is the softmax of the logits, or the scores themselves with
    ``input="probs"`` (``inf`` where a target has probability 0). Scores may be
    ``(N, C, *)`` numpy arrays or torch tensors."""
    from losslab.metrics._inputs import predictions

    p = predictions("nll", scores, target, input=input)
    if len(p) == 0:
        return float("nan")
    return float(-p.log_probs.gather(1, p.target.unsqueeze(1)).mean())


def classification_metrics(scores: Any, target: Any, max_k: int = 5) -> dict[str, float]:
    """All classification metrics of this module in one dict:
    ``acc`` (= ``top1``), ``top1`` ... ``top{max_k}`` (capped at C), ``balanced_acc``,
    ``worst_recall``, ``macro_f1`` and ``nll``."""
    s, t = _check(scores, target)
    out: dict[str, float] = {"acc": accuracy(s, t)}
    for k in range(1, min(max_k, s.shape[1]) + 1):
        out[f"top{k}"] = topk_accuracy(s, t, k)
    out["balanced_acc"] = balanced_accuracy(s, t)
    out["worst_recall"] = worst_class_recall(s, t)
    out["macro_f1"] = macro_f1(s, t)
    out["nll"] = nll(s, t)
    return out
