"""AnyLoss and the MW loss: worked values, the limit of a large amplifier, callables,
degenerate batches, and the pairwise AUC bound and minimiser."""

from __future__ import annotations

import math

import pytest
import torch

import losslab
from losslab import functional as F

F64 = torch.float64
Y = torch.tensor([1, 0, 1, 0])
P = torch.tensor([0.9, 0.2, 0.6, 0.4], dtype=F64)


def test_worked_example():
    x = torch.logit(P)
    a = torch.sigmoid(73 * (P - 0.5))
    assert abs(a[2].item() - 0.999325) < 1e-6
    assert abs(F.anyloss(x, Y, metric="accuracy").item() - 3.375e-4) < 1e-7
    # The worked value has no stabiliser; the code's s = 1e-5 moves it by 2.5e-6.
    assert abs(F.anyloss(x, Y, metric="gmean", eps=0.0).item() - 6.750e-4) < 1e-6
    for metric in ("f1", "balanced_accuracy", "gmean_sqrt"):
        assert abs(F.anyloss(x, Y, metric=metric).item() - 3.375e-4) < 5e-6, metric


def hard_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    tp = float(((pred == 1) & (y == 1)).sum())
    tn = float(((pred == 0) & (y == 0)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    return {
        "accuracy": (tp + tn) / len(y),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "fbeta": 5 * tp / (5 * tp + 4 * fn + fp),
        "balanced_accuracy": (tpr + tnr) / 2,
        "gmean": tpr * tnr,
        "gmean_sqrt": math.sqrt(tpr * tnr),
    }


@pytest.mark.parametrize(
    "metric", ["accuracy", "f1", "fbeta", "balanced_accuracy", "gmean", "gmean_sqrt"]
)
def test_large_amplifier_gives_one_minus_the_hard_metric(metric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, generator=g, dtype=F64) * 3
    y = torch.randint(2, (40,), generator=g)
    want = 1 - hard_metrics((x > 0).long(), y)[metric]
    got = F.anyloss(x, y, metric=metric, amplifier=1e4, beta=2.0, eps=0.0)
    assert abs(got.item() - want) < 1e-6


def test_macro_form_gives_one_minus_hard_macro_f1():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(60, 3, generator=g, dtype=F64) * 4
    y = torch.randint(3, (60,), generator=g)
    p = torch.softmax(z, 1)
    f1s = []
    for c in range(3):
        pred, true = p[:, c] > 0.5, y == c
        tp = float((pred & true).sum())
        f1s.append(2 * tp / (2 * tp + float((pred & ~true).sum()) + float((~pred & true).sum())))
    got = F.anyloss_macro(z, y, amplifier=1e4, eps=0.0)
    assert abs(got.item() - (1 - sum(f1s) / 3)) < 1e-6


def test_callable_metric_equals_the_named_one():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, generator=g, dtype=F64), torch.randint(2, (30,), generator=g)

    def accuracy(tn, fp, fn, tp):
        return (tp + tn) / (tn + fp + fn + tp)

    torch.testing.assert_close(F.anyloss(x, y, metric=accuracy), F.anyloss(x, y, metric="accuracy"))
    z = torch.randn(30, 4, generator=g, dtype=F64)
    yc = torch.randint(4, (30,), generator=g)
    torch.testing.assert_close(
        F.anyloss_macro(z, yc, metric=accuracy), F.anyloss_macro(z, yc, metric="accuracy")
    )


def test_unknown_metric_is_one_clear_error():
    with pytest.raises(ValueError, match=r"^anyloss: metric expected one of \('accuracy'"):
        F.anyloss(torch.zeros(3), torch.tensor([0, 1, 0]), metric="mcc")
    with pytest.raises(ValueError, match=r"^anyloss_macro: metric expected one of"):
        F.anyloss_macro(torch.zeros(3, 2), torch.tensor([0, 1, 0]), metric=3)


@pytest.mark.parametrize(
    ("metric", "labels", "defined"),
    [
        ("f1", [0, 0, 0], False),
        ("f1", [1, 1, 1], True),
        ("balanced_accuracy", [1, 1, 1], False),
        ("gmean", [0, 0, 0], False),
        ("gmean_sqrt", [1, 1, 1], False),
        ("accuracy", [0, 0, 0], True),
    ],
)
def test_undefined_metric_is_an_attached_zero_with_counts(metric, labels, defined):
    x = torch.tensor([0.3, -1.0, 2.0], dtype=F64, requires_grad=True)
    y = torch.tensor(labels)
    out = F.anyloss(x, y, metric=metric, return_components=True)
    assert out.positives.item() == sum(labels)
    assert out.negatives.item() == 3 - sum(labels)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()
    if defined:
        assert out.loss.item() > 0
    else:
        assert out.loss.item() == 0.0 and out.loss.requires_grad and torch.all(x.grad == 0)


def test_macro_form_averages_the_classes_where_the_metric_is_defined():
    z = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 0, 1, 1, 1, 0])  # classes 2 and 3 have no positives
    out = F.anyloss_macro(z, y, return_components=True)
    assert out.classes.item() == 2
    ba = F.anyloss_macro(
        z, torch.zeros(6, dtype=torch.long), metric="balanced_accuracy", return_components=True
    )
    assert ba.classes.item() == 0 and ba.loss.item() == 0.0


def test_values_lie_in_unit_interval():
    g = torch.Generator().manual_seed(4)
    for metric in ("accuracy", "f1", "balanced_accuracy", "gmean", "gmean_sqrt"):
        for scale in (0.1, 3.0, 100.0):
            x = torch.randn(50, generator=g, dtype=F64) * scale
            y = torch.randint(2, (50,), generator=g)
            v = F.anyloss(x, y, metric=metric).item()
            assert 0.0 <= v <= 1.0


# ----------------------------------------------------------------------------- MW


def pair_losses(x, y, tau=1.0):
    pos, neg = x[y == 1], x[y == 0]
    return torch.nn.functional.softplus(-(pos[:, None] - neg[None, :]) / tau)


def test_equal_scores_give_log_two_per_pair():
    x = torch.zeros(7, dtype=F64)
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    torch.testing.assert_close(
        F.mw(x, y, reduction="none"), torch.full((7,), math.log(2), dtype=F64)
    )


def test_mean_over_elements_is_the_mean_over_pairs_and_bounds_the_auc():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(25, generator=g, dtype=F64)
    y = torch.randint(2, (25,), generator=g)
    for tau in (1.0, 0.1):
        pairs = pair_losses(x, y, tau)
        torch.testing.assert_close(F.mw(x, y, temperature=tau), pairs.mean())
        misordered = (x[y == 1][:, None] < x[y == 0][None, :]).double().mean()
        assert F.mw(x, y, temperature=tau).item() / math.log(2) >= misordered.item()
        torch.testing.assert_close(F.mw(x, y, temperature=tau), F.mw(x / tau, y))


def test_shifting_one_positive_changes_the_loss():
    # Positives are compared with every negative: no per-anchor shift invariance.
    x = torch.tensor([1.0, -1.0, 0.5, 0.0], dtype=F64)
    y = torch.tensor([1, 0, 1, 0])
    shifted = x.clone()
    shifted[0] += 3.0
    assert F.mw(shifted, y).item() < F.mw(x, y).item()


def test_minimiser_ranks_positives_first():
    g = torch.Generator().manual_seed(6)
    y = torch.randint(2, (30,), generator=g)
    y[:2] = torch.tensor([0, 1])
    x = (torch.randn(30, generator=g, dtype=F64) - 2.0 * y).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        F.mw(x, y).backward()
        opt.step()
    assert x[y == 1].min() > x[y == 0].max()


def test_single_class_batch_is_an_attached_zero_with_counts():
    x = torch.randn(5, dtype=F64, requires_grad=True)
    out = F.mw(x, torch.ones(5, dtype=torch.long), return_components=True)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    assert (out.positives.item(), out.negatives.item()) == (5.0, 0.0)
    out.loss.backward()
    assert torch.all(x.grad == 0)
    masked = F.mw(x, torch.tensor([1, 0, -100, -100, 1]), ignore_index=-100, return_components=True)
    assert (masked.positives.item(), masked.negatives.item()) == (2.0, 1.0)


def test_probability_targets_split_each_element():
    # An element with target 1/2 and weight 2 is a positive and a negative of weight 1 at
    # the same score: the same pairs, so the same mean pair loss.
    soft = F.mw(
        torch.tensor([0.7, -0.2, 1.5], dtype=F64),
        torch.tensor([0.5, 0.0, 1.0], dtype=F64),
        sample_weight=torch.tensor([2.0, 1.0, 1.0], dtype=F64),
    )
    hard = F.mw(torch.tensor([0.7, 0.7, -0.2, 1.5], dtype=F64), torch.tensor([1, 0, 0, 1]))
    torch.testing.assert_close(soft, hard)


def test_pos_weight_is_rejected_clearly():
    with pytest.raises(ValueError, match=r"^mw: pos_weight expected None"):
        F.mw(torch.zeros(4), torch.tensor([1, 0, 1, 0]), pos_weight=torch.tensor(2.0))


def test_components_follow_module_and_reduction():
    x = torch.tensor([2.0, -1.0, 0.5, 0.0])
    y = torch.tensor([1, 0, 1, 0])
    mod = losslab.MWLoss(temperature=0.5)
    out = mod(x, y, return_components=True)
    assert out._fields == ("loss", "positives", "negatives")
    torch.testing.assert_close(out.loss, F.mw(x, y, temperature=0.5))
