import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    recall_score,
    top_k_accuracy_score,
)

from losslab.metrics import (
    accuracy,
    balanced_accuracy,
    classification_metrics,
    macro_f1,
    nll,
    topk_accuracy,
    worst_class_recall,
)


@pytest.fixture(params=[0, 1, 2])
def data(request):
    rng = np.random.default_rng(request.param)
    n, c = 200, 7
    logits = rng.normal(size=(n, c)) * 3
    target = rng.integers(0, c, size=n)
    # make some rows right so accuracy is not ~1/C
    target[:80] = logits[:80].argmax(1)
    return logits, target


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_against_sklearn(data):
    z, y = data
    pred = z.argmax(1)
    assert accuracy(z, y) == pytest.approx(accuracy_score(y, pred))
    assert balanced_accuracy(z, y) == pytest.approx(balanced_accuracy_score(y, pred))
    assert macro_f1(z, y) == pytest.approx(f1_score(y, pred, average="macro"))
    present = np.unique(y)
    recalls = recall_score(y, pred, labels=present, average=None, zero_division=0)
    assert worst_class_recall(z, y) == pytest.approx(recalls.min())
    assert nll(z, y) == pytest.approx(log_loss(y, _softmax(z), labels=range(z.shape[1])))
    for k in range(1, 6):
        ref = top_k_accuracy_score(y, z, k=k, labels=range(z.shape[1]))
        assert topk_accuracy(z, y, k) == pytest.approx(ref)


def test_torch_input_and_dict(data):
    z, y = data
    out = classification_metrics(torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    assert set(out) == {
        "acc",
        "top1",
        "top2",
        "top3",
        "top4",
        "top5",
        "balanced_acc",
        "worst_recall",
        "macro_f1",
        "nll",
    }
    assert out["acc"] == out["top1"]
    assert out["top5"] >= out["top1"]


def test_worst_class_recall_ignores_absent_classes():
    # class 2 never occurs as a target: its recall is undefined, not 0
    z = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]])
    assert worst_class_recall(z, np.array([0, 1, 1, 1])) == pytest.approx(2 / 3)
    assert np.isnan(worst_class_recall(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)))


def test_topk_caps_at_num_classes():
    z = np.array([[1.0, 2.0], [3.0, 0.0]])
    out = classification_metrics(z, np.array([0, 0]))
    assert "top3" not in out and out["top2"] == 1.0


def test_nll_extreme_logits_finite():
    z = np.array([[1e4, -1e4], [-1e4, 1e4]])
    assert np.isfinite(nll(z, np.array([0, 0])))


@pytest.mark.parametrize(
    ("scores", "target", "exc", "match"),
    [
        (np.zeros(3), np.zeros(3, dtype=int), ValueError, "scores"),
        (np.zeros((3, 2)), np.zeros(2, dtype=int), ValueError, "target"),
        (np.zeros((3, 2)), np.zeros(3), TypeError, "integer"),
        (np.zeros((3, 2)), np.array([0, 1, 2]), ValueError, r"\[0, 1\]"),
    ],
)
def test_bad_inputs(scores, target, exc, match):
    with pytest.raises(exc, match=match):
        accuracy(scores, target)
