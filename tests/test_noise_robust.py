"""Family tests of the noise-robust losses: special points, limits and official constants.

The generic contract and property tests cover these losses through the registry; the tests
here pin what is specific to each formula.
"""

from __future__ import annotations

import math

import pytest
import torch

import losslab
from losslab import functional as F
from tests.helpers import p_target
from tests.helpers import seeded_logits as logits

F64 = torch.float64
#: -log(1e-4) = 4 ln 10, the RCE scale of the official SCE / APL code ("~9.21 (1 - p_y)").
A = 4 * math.log(10)


# ----------------------------------------------------------------------------- mse


def test_mse_is_the_brier_score():
    z, y = logits(0)
    onehot = torch.nn.functional.one_hot(y, 5).to(F64)
    want = torch.nn.functional.mse_loss(torch.softmax(z, 1), onehot, reduction="none").sum(1)
    torch.testing.assert_close(F.mse(z, y, reduction="none"), want)


def test_mse_extremes_are_zero_and_two():
    z = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]], dtype=F64)
    y = torch.tensor([0, 0])
    got = F.mse(z, y, reduction="none")
    torch.testing.assert_close(got, torch.tensor([0.0, 2.0], dtype=F64), atol=1e-20, rtol=1e-12)


# ----------------------------------------------------------------------------- rce / sce


def test_rce_label_clamp_constant():
    from losslab.functional.noise_robust import RCE_LABEL_CLAMP, RCE_SCALE

    assert RCE_LABEL_CLAMP == 1e-4
    assert pytest.approx(9.210340371976182, rel=1e-15) == RCE_SCALE


def test_rce_equals_A_times_one_minus_p_y():
    z, y = logits(1)
    torch.testing.assert_close(F.rce(z, y, reduction="none"), A * (1 - p_target(z, y)))
    # ... i.e. a multiple of MAE.
    torch.testing.assert_close(F.rce(z, y, reduction="none"), A * F.mae(z, y, reduction="none"))


def test_rce_symmetric_constant_is_A_times_C_minus_one():
    z, _ = logits(2, c=6)
    total = sum(F.rce(z, torch.full((8,), k), reduction="none") for k in range(6))
    torch.testing.assert_close(total, torch.full((8,), 5 * A, dtype=F64))


def test_sce_is_alpha_ce_plus_beta_rce_for_index_and_soft_targets():
    z, y = logits(3)
    q = torch.softmax(torch.randn(8, 5, dtype=F64), dim=1)
    for target in (y, q):
        want = 6.0 * F.ce(z, target, reduction="none") + 0.1 * F.rce(z, target, reduction="none")
        got = F.sce(z, target, alpha=6.0, beta=0.1, reduction="none")
        torch.testing.assert_close(got, want)


def test_sce_defaults_are_the_official_cifar10_run():
    assert losslab.loss_info("sce").defaults == {"alpha": 0.1, "beta": 1.0}


def test_sce_ce_part_is_not_clamped():
    # The official code clamps p at 1e-7 inside the log, capping CE at -log(1e-7) = 16.1;
    # here CE stays exact for a prediction of p_y = e^-30.
    z = torch.tensor([[0.0, 30.0]], dtype=F64)
    got = F.sce(z, torch.tensor([0]), alpha=1.0, beta=0.0)
    assert got.item() == pytest.approx(30.0 + math.log1p(math.exp(-30.0)), rel=1e-12)


# ----------------------------------------------------------------------------- tgce


def test_tgce_with_k_zero_is_gce():
    z, y = logits(4)
    torch.testing.assert_close(F.tgce_stateless(z, y, q=0.7, k=0.0), F.gce(z, y, q=0.7))
    torch.testing.assert_close(F.tgce(z, y, q=0.7), F.gce(z, y, q=0.7))


def test_tgce_truncates_below_k_with_zero_gradient():
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.0]], dtype=F64)
    z.requires_grad_(True)
    y = torch.tensor([0, 0, 0])
    q, k = 0.7, 0.5
    out = F.tgce_stateless(z, y, q=q, k=k, reduction="none")
    p = p_target(z.detach(), y)
    assert p[0] > k and p[1] <= k and p[2] <= k
    want = torch.where(p > k, (1 - p**q) / q, torch.full_like(p, (1 - k**q) / q))
    torch.testing.assert_close(out.detach(), want)
    out.sum().backward()
    assert torch.all(z.grad[1:] == 0)
    assert torch.any(z.grad[0] != 0)


def test_tgce_defaults_are_the_papers():
    assert losslab.loss_info("tgce").defaults == {
        "q": 0.7,
        "k": 0.5,
        "prune_start": 40,
        "prune_every": 10,
    }
    assert losslab.loss_info("tgce_stateless").defaults == {"q": 0.7, "k": 0.5}


def test_tgce_prunes_on_schedule_like_the_official_code():
    mod = losslab.TGCELoss(num_samples=4, prune_start=2, prune_every=3)
    assert [e for e in range(10) if mod.refresh_due(e)] == [2, 5, 8]
    z = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.1, 0.0], [-1.0, 1.0]], dtype=F64)
    y = torch.tensor([0, 0, 0, 1])
    idx = torch.arange(4)
    before = mod(z, y, index=idx)
    torch.testing.assert_close(before, F.gce(z, y, q=0.7))
    mod.refresh(z, y, index=idx)
    p = torch.softmax(z, 1)[idx, y]
    assert torch.equal(mod.sample_keep, (p > 0.5).float())  # official: L_q(p) < L_q(k)
    per = F.gce(z, y, q=0.7, reduction="none") * (p > 0.5)
    torch.testing.assert_close(mod(z, y, index=idx), per.sum() / 4)
    # training calls read the weights but never change them
    mod(z.requires_grad_(True), y, index=idx).backward()
    assert torch.equal(mod.sample_keep, (p > 0.5).float())


# ----------------------------------------------------------------------------- rll


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_rll_sums_to_zero_over_labels(alpha):
    z, _ = logits(5, c=7, scale=5.0)
    total = sum(F.rll(z, torch.full((8,), k), alpha=alpha, reduction="none") for k in range(7))
    torch.testing.assert_close(total, torch.zeros(8, dtype=F64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_rll_range_endpoints(alpha):
    c = 4
    best = torch.tensor([[1e4, 0.0, 0.0, 0.0]], dtype=F64)  # p_y = 1
    worst = torch.tensor([[-1e4, 0.0, 0.0, 0.0]], dtype=F64)  # p_y = 0, rest uniform
    y = torch.tensor([0])
    assert F.rll(best, y, alpha=alpha).item() == pytest.approx(math.log(alpha / (1 + alpha)))
    want = math.log(1 + 1 / (alpha * (c - 1)))
    assert F.rll(worst, y, alpha=alpha).item() == pytest.approx(want)


def test_rll_differs_from_the_ldr_benchmark_coded_form():
    # LDR repo RLLLoss: -log(a + p_y) + log(sum_k [exp((1 - Y_k) z_k - sum_j z_j) + a])/(K-1).
    z, y = logits(6, c=4)
    alpha = 0.1
    onehot = torch.nn.functional.one_hot(y, 4).to(F64)
    inner = torch.exp((1 - onehot) * z - z.sum(1, keepdim=True)) + alpha
    coded = -torch.log(alpha + p_target(z, y)) + torch.log(inner.sum(1)) / 3
    textbook = F.rll(z, y, alpha=alpha, reduction="none")
    assert (coded - textbook).abs().max() > 1e-2
    coded_sum = sum(
        -torch.log(alpha + p_target(z, torch.full((8,), k)))
        + torch.log(
            (
                torch.exp(
                    (1 - torch.nn.functional.one_hot(torch.full((8,), k), 4).to(F64)) * z
                    - z.sum(1, keepdim=True)
                )
                + alpha
            ).sum(1)
        )
        / 3
        for k in range(4)
    )
    assert coded_sum.std() > 1e-3  # the coded form is not symmetric


# ----------------------------------------------------------------------------- jsc


def _jsc_closed_form(p: torch.Tensor, pi: float) -> torch.Tensor:
    # For a one-hot label JS depends on p_y only (m_y = pi + (1-pi) p_y, m_j = (1-pi) p_j).
    r = 1 - pi
    m = pi + r * p
    js = -pi * torch.log(m) + r * p * torch.log(p / m) - r * (1 - p) * math.log(r)
    return js / (-r * math.log(r))


@pytest.mark.parametrize("pi", [0.1, 0.5, 0.7, 0.9])
def test_jsc_is_a_function_of_p_y(pi):
    z, y = logits(7)
    got = F.jsc(z, y, pi=pi, reduction="none")
    torch.testing.assert_close(got, _jsc_closed_form(p_target(z, y), pi))


def test_jsc_tends_to_ce_as_pi_goes_to_zero():
    z, y = logits(8)
    ce = F.ce(z, y, reduction="none")
    pis = (1e-4, 1e-6, 1e-8)
    err = [(F.jsc(z, y, pi=pi, reduction="none") - ce).abs().max().item() for pi in pis]
    # The gap closes linearly in pi.
    assert err[2] < 1e-5
    assert err[0] > 50 * err[1] > 2500 * err[2]


def test_jsc_tends_to_mae_as_pi_goes_to_one():
    z, y = logits(9)
    mae = 1 - p_target(z, y)
    p = p_target(z, y)
    for eps in (1e-4, 1e-8, 1e-12):
        got = F.jsc(z, y, pi=1 - eps, reduction="none")
        # first-order term of the slow (1/|log(1 - pi)|) convergence
        lead = (1 - p + p * torch.log(p)) / -math.log(eps)
        torch.testing.assert_close(got - mae, lead, atol=1e-3, rtol=0)


def test_jsc_bound_at_half_is_two():
    # pi = 1/2: H(pi) = log 2 and the scale is 1/(0.5 log 2), so the maximum (p_y = 0) is 2.
    z = torch.tensor([[-1e4, 0.0, 0.0]], dtype=F64)
    assert F.jsc(z, torch.tensor([0]), pi=0.5).item() == pytest.approx(2.0, rel=1e-12)
    spec = losslab.loss_info("jsc")
    assert spec.properties["bounded"].upper_bound({"pi": 0.5}, 3) == pytest.approx(2.0)


def test_jsc_soft_target_equal_to_prediction_is_zero():
    z, _ = logits(10)
    got = F.jsc(z, torch.softmax(z, dim=1), pi=0.3, reduction="none")
    torch.testing.assert_close(got, torch.zeros(8, dtype=F64), atol=1e-15, rtol=0)


def test_jsc_default_is_the_official_cifar10_config():
    assert losslab.loss_info("jsc").defaults == {"pi": 0.7}


def test_jsc_masked_class_in_a_soft_target_stays_finite():
    z = torch.tensor([[1.0, 0.0, float("-inf")]], requires_grad=True)
    q = torch.tensor([[0.5, 0.5, 0.0]])
    out = F.jsc(z, q)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all() and z.grad[0, 2] == 0
