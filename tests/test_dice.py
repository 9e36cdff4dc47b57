"""The Dice family: hand-computed values, its identities, token-level padding and the
soft-F1 limit of the set-level form."""

from __future__ import annotations

import pytest
import torch

from losslab import functional as F

F64 = torch.float64


def logit(p: float) -> torch.Tensor:
    return torch.logit(torch.tensor([p], dtype=F64))


@pytest.mark.parametrize(
    ("p", "y", "alpha", "want"),
    [(0.8, 1, 0.0, 0.015152), (0.3, 0, 0.0, 0.082569), (0.8, 1, 1.0, 0.348341)],
)
def test_hand_computed_values(p, y, alpha, want):
    # One element with smoothing 1 and the squared denominator: 1 - (2 p y + 1)/(p^2 + y^2 + 1)
    # with p replaced by (1 - p)^alpha p.
    got = F.binary_self_adjusting_dice(logit(p), torch.tensor([y]), alpha=alpha, smooth=1.0)
    assert abs(got.item() - want) < 1e-6


def test_perfect_predictions_score_zero():
    y = torch.tensor([0, 2, 1, 1])
    z = torch.nn.functional.one_hot(y, 3).to(F64) * 60 - 30
    for fn in (F.dice, F.tversky):
        assert fn(z, y).item() < 1e-12
    assert F.dice(z, y, square=False).item() < 1e-12
    t = torch.tensor([1, 0, 1, 1])
    x = (2 * t - 1).to(F64) * 60
    for fn in (F.binary_dice, F.binary_tversky):
        assert fn(x, t).item() < 1e-12


def test_tversky_at_one_half_is_unsquared_dice_with_twice_the_smoothing():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(9, 4, generator=g, dtype=F64), torch.randint(4, (9,), generator=g)
    torch.testing.assert_close(
        F.tversky(z, y, alpha=0.5, beta=0.5, smooth=0.3, reduction="none"),
        F.dice(z, y, square=False, smooth=0.6, reduction="none"),
    )
    x, t = torch.randn(20, generator=g, dtype=F64), torch.randint(2, (20,), generator=g)
    torch.testing.assert_close(
        F.binary_tversky(x, t, alpha=0.5, beta=0.5, smooth=0.3),
        F.binary_dice(x, t, square=False, smooth=0.6),
    )


def test_unsquared_set_dice_without_smoothing_is_one_minus_soft_f1():
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(30, generator=g, dtype=F64), torch.randint(2, (30,), generator=g)
    p = torch.sigmoid(x)
    tp, fp, fn = (p * t).sum(), (p * (1 - t)).sum(), ((1 - p) * t).sum()
    soft_f1 = 2 * tp / (2 * tp + fp + fn)
    torch.testing.assert_close(F.binary_dice(x, t, square=False, smooth=0.0), 1 - soft_f1)


def test_set_level_loss_is_one_value_carried_by_every_element():
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(4, 3, generator=g, dtype=F64), torch.randint(2, (4, 3), generator=g)
    none = F.binary_dice(x, t, reduction="none")
    assert torch.all(none == none[0, 0])
    torch.testing.assert_close(F.binary_dice(x, t), none[0, 0])
    torch.testing.assert_close(F.binary_dice(x.flatten(), t.flatten()), none[0, 0])


def test_token_level_padding_is_dropped():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 5, 7, generator=g, dtype=F64)
    y = torch.randint(5, (2, 7), generator=g)
    y[0, 4:] = -100
    got = F.self_adjusting_dice(z, y, ignore_index=-100, alpha=1.0)
    keep = y != -100
    flat = F.self_adjusting_dice(z.movedim(1, -1)[keep], y[keep], alpha=1.0)
    torch.testing.assert_close(got, flat)


def test_empty_set_with_no_smoothing_is_zero_not_nan():
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    t = torch.full((3,), -100)
    out = F.binary_dice(x, t, smooth=0.0, ignore_index=-100)
    out.backward()
    assert out.item() == 0.0 and torch.all(x.grad == 0)


@pytest.mark.parametrize("fn", [F.self_adjusting_dice, F.binary_self_adjusting_dice])
def test_self_adjusting_factor_has_finite_gradient_at_saturated_probabilities(fn):
    # (1 - p)^alpha with alpha < 1 has an infinite slope at p = 1.
    if fn is F.self_adjusting_dice:
        z = torch.tensor([[200.0, -200.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)
        y = torch.tensor([0, 2])
    else:
        z = torch.tensor([200.0, -200.0, 1.0], requires_grad=True)
        y = torch.tensor([1, 0, 1])
    out = fn(z, y, alpha=0.01)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


def test_pos_weight_and_weights_weigh_the_masses():
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(10, generator=g, dtype=F64), torch.randint(2, (10,), generator=g)
    # Doubling every positive's weight equals pos_weight=2.
    w = torch.where(t == 1, 2.0, 1.0).to(F64)
    p = torch.sigmoid(x)
    tp = (2 * t * p).sum()
    fp = ((1 - t) * p).sum()
    fn = (2 * t * (1 - p)).sum()
    want = 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)
    torch.testing.assert_close(
        F.binary_tversky(x, t, pos_weight=torch.tensor(2.0, dtype=F64)), want
    )
    torch.testing.assert_close(F.binary_tversky(x, t, sample_weight=w), want)


@pytest.mark.parametrize("square", [True, False])
def test_self_adjusting_index_targets_match_their_one_hot_form(square):
    """Index targets take the separable path (one softmax, exact 1 - p, analytic
    backward); their one-hot probabilities take the general one. Values and gradients
    agree, including rows where p rounds to 1 (the floored (1 - p)^alpha) and to 0."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 5, generator=g, dtype=F64) * 3
    z[0] = torch.tensor([300.0, -5.0, 0.0, 1.0, 2.0], dtype=F64)  # p_y rounds to 1
    z[1] = torch.tensor([-300.0, 5.0, 0.0, 1.0, 2.0], dtype=F64)  # p_y rounds to 0
    z[2] = torch.tensor([0.0, 400.0, 0.0, 1.0, 2.0], dtype=F64)  # a wrong class at 1
    y = torch.tensor([0, 0, 0, 3, 4, 1])
    cfg = {"alpha": 0.3, "smooth": 0.5, "square": square, "reduction": "none"}
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    a = F.self_adjusting_dice(z1, y, **cfg)
    b = F.self_adjusting_dice(z2, torch.nn.functional.one_hot(y, 5).to(F64), **cfg)
    torch.testing.assert_close(a, b)
    w = torch.rand(6, generator=g, dtype=F64)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)
