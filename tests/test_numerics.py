"""Regression tests for the numerical defects a hostile tester found (issue 9, items 2, 3
and 7), written as the tester ran them."""

from __future__ import annotations

import math

import pytest
import torch

import losslab
from losslab import functional as F


@pytest.mark.parametrize("name", ["nce_rce", "nce", "nce_agce", "nce_aul", "z_loss", "aldr_kl"])
def test_finite_float16_batches_are_accepted(name):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(256, 100, generator=g) + 3).half()
    y = torch.randint(100, (256,), generator=g)
    assert torch.isfinite(getattr(F, name)(z, y))
    assert torch.isfinite(F.ce(z, y))


def test_real_neg_inf_is_still_found_after_an_overflowing_sum():
    z = (torch.randn(256, 100) + 3).half()
    z[5, 7] = float("-inf")
    with pytest.raises(ValueError, match="nce: logits expected finite values, got -inf values"):
        F.nce(z, torch.zeros(256, dtype=torch.long))


def test_zero_initialised_output_layer_gets_a_sane_gradient():
    # The tester's setting: a linear output layer initialised at zero.
    g = torch.Generator().manual_seed(1)
    h = torch.randn(64, 16, generator=g)
    y = torch.randint(10, (64,), generator=g)
    grads = {}
    for name in ("ce", "z_loss", "ldr_kl", "aldr_kl"):
        w = torch.zeros(10, 16, requires_grad=True)
        cfg = {"normalize": "abs_mean"} if name.endswith("ldr_kl") else {}
        getattr(F, name)(h @ w.T, y, **cfg).backward()
        grads[name] = w.grad.abs().max().item()
    assert grads["ce"] < 1
    for name in ("z_loss", "ldr_kl", "aldr_kl"):
        assert math.isfinite(grads[name]) and grads[name] < 500, (name, grads)


def test_z_loss_is_exact_at_huge_logits():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y = torch.tensor([3])
    for scale in (1.0, 1e20, 1e30, 5e37):
        zz = (z * scale).requires_grad_(True)
        out = F.z_loss(zz, y)
        torch.testing.assert_close(out, torch.tensor(0.232235), atol=1e-6, rtol=0)
        out.backward()
        assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0


def test_sum_exp_float16_gradients_and_float32_values_stay_finite():
    z = torch.tensor([[0.0, 12.0, 0.0]], dtype=torch.float16, requires_grad=True)
    F.sum_exp(z, torch.tensor([0])).backward()
    assert torch.isfinite(z.grad).all() and (z.grad != 0).all()
    for dtype in (torch.float32, torch.bfloat16):
        z = torch.tensor([[0.0, 1e30, 0.0]], dtype=dtype, requires_grad=True)
        out = F.sum_exp(z, torch.tensor([0]))
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(z.grad).all()


def test_sum_exp_is_exact_below_its_tail():
    z = torch.tensor([[0.0, 15.0, 1.0]], dtype=torch.float64)
    want = math.exp(15.0) + math.exp(1.0)
    torch.testing.assert_close(
        F.sum_exp(z, torch.tensor([0])), torch.tensor(want, dtype=torch.float64)
    )


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0.0, -1.0])
def test_aldr_rejects_bad_sample_temperatures(bad):
    z = torch.randn(3, 4)
    t = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(
        ValueError, match=r"^aldr_kl: sample_temperature expected per-element values"
    ):
        F.aldr_kl(z, torch.tensor([0, 1, 2]), sample_temperature=t)


def test_aldr_state_is_untouched_by_nan_logits_and_later_calls_work():
    mod = losslab.ALDRKLLoss(num_samples=4)
    idx = torch.tensor([0, 1])
    before = mod.sample_temperature.clone()
    with pytest.raises(ValueError, match="aldr_kl: logits expected finite values"):
        mod(torch.full((2, 3), float("nan")), torch.tensor([0, 1]), index=idx)
    with pytest.raises(ValueError, match="aldr_kl: logits expected at least 2 classes"):
        mod(torch.zeros(2, 1), torch.tensor([0, 0]), index=idx)
    assert torch.equal(mod.sample_temperature, before)
    assert torch.isfinite(mod(torch.randn(2, 3), torch.tensor([0, 1]), index=idx))
