"""LDR-KL and ALDR-KL: limits, published special points, and the stateful module."""

from __future__ import annotations

import math

import pytest
import torch

import losslab
import losslab.functional as F
from tests.helpers import seeded_logits


def _zy(seed=0, n=6, c=5):
    return seeded_logits(seed, n, c)


def test_ldr_kl_small_temperature_tends_to_crammer_singer():
    z, y = _zy()
    ldr = F.ldr_kl(z, y, temperature=1e-3, margin=1.0, normalize="none", reduction="none")
    cs = F.cs_svm(z, y, margin=1.0, reduction="none")
    torch.testing.assert_close(ldr, cs, atol=1e-2, rtol=0)


def test_ldr_kl_large_temperature_tends_to_mean_gap():
    z, y = _zy(1)
    c = z.shape[1]
    got = F.ldr_kl(z, y, temperature=1e6, margin=0.5, normalize="none", reduction="none")
    gaps = z - z.gather(1, y[:, None]) + 0.5 * (1 - torch.nn.functional.one_hot(y, c))
    torch.testing.assert_close(got, gaps.mean(dim=1), atol=1e-4, rtol=0)


def test_ldr_kl_zero_margin_is_scaled_temperature_ce():
    z, y = _zy(2)
    lam = 3.0
    got = F.ldr_kl(z, y, temperature=lam, margin=0.0, normalize="none", reduction="none")
    ce = torch.nn.functional.cross_entropy(z / lam, y, reduction="none")
    torch.testing.assert_close(got, lam * ce - lam * math.log(z.shape[1]))


def test_softplus_mean_normalisation_sums_to_num_classes():
    z, _ = _zy(3)
    from losslab.functional.ldr import normalize_logits

    f = normalize_logits(z, "softplus_mean")
    assert torch.all(f > 0)
    torch.testing.assert_close(f.sum(dim=1), torch.full((z.shape[0],), 5.0, dtype=z.dtype))


def test_aldr_temperature_update_is_the_closed_form_maximiser():
    z, _ = _zy(4)
    lam0, alpha = 10.0, 2.0
    new = F.aldr_kl_temperature(z, temperature0=lam0, alpha=alpha, normalize="abs_mean")
    c = z.shape[1]
    assert torch.all(new <= lam0) and torch.all(new >= lam0 * (1 - 1 / alpha))
    # Brute-force the maximiser of -lam*KL - alpha log C / (2 lam0) (lam - lam0)^2.
    from losslab.functional.ldr import ALDR_PROB_SMOOTHING, normalize_logits

    f = normalize_logits(z, "abs_mean")
    p = torch.softmax(f / lam0, dim=1) + ALDR_PROB_SMOOTHING
    p = p / p.sum(dim=1, keepdim=True)
    kl = (p * torch.log(p * c)).sum(dim=1)
    grid = torch.linspace(lam0 / 2, lam0, 20001, dtype=torch.float64)
    obj = -grid[None] * kl[:, None] - alpha * math.log(c) / (2 * lam0) * (grid[None] - lam0) ** 2
    torch.testing.assert_close(new, grid[obj.argmax(dim=1)], atol=1e-3, rtol=0)


def test_aldr_module_keeps_per_example_state_and_matches_functional():
    z, y = _zy(5, n=4)
    mod = losslab.ALDRKLLoss(num_samples=10, reduction="none")
    idx = torch.tensor([7, 2, 9, 0])
    first = mod(z, y, index=idx)
    lam = F.aldr_kl_temperature(z, temperature0=10.0, alpha=2.0, normalize="abs_mean")
    torch.testing.assert_close(mod.sample_temperature[idx].double(), lam, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(first, F.aldr_kl(z, y, sample_temperature=lam, reduction="none"))
    untouched = torch.tensor([1, 3, 4, 5, 6, 8])
    assert torch.all(mod.sample_temperature[untouched] == 10.0)
    # Second visit ascends from the stored value; eval mode reads without writing.
    mod(z, y, index=idx)
    lam2 = F.aldr_kl_temperature(z, normalize="abs_mean", sample_temperature=lam)
    torch.testing.assert_close(mod.sample_temperature[idx].double(), lam2, rtol=1e-6, atol=1e-6)
    mod.eval()
    before = mod.sample_temperature.clone()
    mod(z * 3, y, index=idx)
    assert torch.equal(before, mod.sample_temperature)
    state = mod.state_dict()
    fresh = losslab.ALDRKLLoss(num_samples=10, reduction="none")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.sample_temperature, mod.sample_temperature)


def test_aldr_module_gradient_treats_temperature_as_constant():
    z, y = _zy(6, n=3)
    z.requires_grad_(True)
    mod = losslab.ALDRKLLoss(num_samples=3)
    mod(z, y, index=torch.arange(3)).backward()
    lam = mod.sample_temperature.double()
    z2 = z.detach().clone().requires_grad_(True)
    F.aldr_kl(z2, y, sample_temperature=lam).backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_aldr_module_errors():
    mod = losslab.ALDRKLLoss(num_samples=4)
    z, y = _zy(7, n=2)
    with pytest.raises(TypeError, match="aldr_kl: index expected the dataset indices"):
        mod(z, y)
    with pytest.raises(ValueError, match=r"aldr_kl: index expected dataset indices in \[0, 3\]"):
        mod(z, y, index=torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="aldr_kl: num_samples expected an integer"):
        losslab.ALDRKLLoss()
    with pytest.raises(ValueError, match="aldr_kl: alpha expected a real number in"):
        losslab.ALDRKLLoss(num_samples=4, alpha=1.0)


def test_z_loss_published_values():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    y = torch.tensor([3])
    torch.testing.assert_close(
        F.z_loss(z, y), torch.tensor(0.232235, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        F.z_loss(z, y, a=2.0, b=1.0), torch.tensor(0.204382, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_z_loss_equal_logits_finite_gradient():
    z = torch.zeros(2, 5, requires_grad=True)
    F.z_loss(z, torch.tensor([0, 1])).backward()
    assert torch.isfinite(z.grad).all()


def test_comp_sum_published_values():
    z = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    for fn, want in ((F.ce, 0.407606), (F.sum_exp, 0.503215), (F.mae, 0.334759)):
        torch.testing.assert_close(
            fn(z, y), torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0
        )
    torch.testing.assert_close(
        F.gce(z, y, q=0.7), torch.tensor(0.354614, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("normalize", ["abs_mean", "softplus_mean", "none"])
def test_aldr_module_fused_step_matches_the_function(normalize, monkeypatch):
    """In training, the temperature step also makes the loss's forward pass (one visit per
    block of rows); values and gradients equal the function at the new temperatures, over
    several blocks and with spatial axes."""
    from losslab.functional import _fused

    monkeypatch.setattr(_fused, "BLOCK_ELEMENTS", 12)
    g = torch.Generator().manual_seed(8)
    z = (torch.randn(4, 5, 3, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(5, (4, 3), generator=g)
    mod = losslab.ALDRKLLoss(num_samples=12, normalize=normalize, reduction="none")
    idx = torch.randperm(12, generator=g).reshape(4, 3)
    out = mod(z, y, index=idx)
    lam = F.aldr_kl_temperature(z.detach(), normalize=normalize)
    z2 = z.detach().clone().requires_grad_(True)
    ref = F.aldr_kl(z2, y, normalize=normalize, sample_temperature=lam, reduction="none")
    torch.testing.assert_close(out, ref)
    w = torch.rand(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)
