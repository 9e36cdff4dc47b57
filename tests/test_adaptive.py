"""EnsLoss, the Bias loss and Tri-BCE against re-statements of their official algorithms,
with EnsLoss's seeding and gradient properties."""

from __future__ import annotations

import math

import pytest
import torch

import losslab
from losslab import functional as F
from losslab.functional.adaptive import stream_uniforms

F64 = torch.float64


# ----------------------------------------------------------------------------- EnsLoss


def official_ensloss_grad(x, t, normals, lam):
    """d loss / d x of the official forward (losses.py::ensLoss), restated: the same
    normals through -BC^-1, sorted, clipped at -1, assigned by margin rank, tail 1/s above
    margin 1, minus 1e-6; loss = mean(stopgrad(d) * s)."""
    y = 2.0 * t.double() - 1.0
    s = (x * y).detach().requires_grad_(True)
    inv = torch.exp(normals) if lam == 0 else (1 + lam * normals).clamp_min(0) ** (1 / lam)
    d = torch.sort(-inv).values.clamp_min(-1.0)
    g = torch.empty_like(d)
    g[torch.sort(s.detach()).indices] = d
    g = torch.where(s.detach() > 1, g / s.detach(), g) - 1e-6
    (g.detach() * s).mean().backward()
    return s.grad * y


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_gradient_equals_the_official_algorithm(lam):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(40, generator=g, dtype=F64) * 2).requires_grad_(True)
    t = torch.randint(2, (40,), generator=g)
    F.ensloss(x, t, lam=lam, seed=11).backward()
    normals = torch.special.ndtri(stream_uniforms(torch.tensor(11), 40, x.device))
    torch.testing.assert_close(x.grad, official_ensloss_grad(x, t, normals, lam))


def test_gradient_is_calibrated_convex_and_decays():
    g = torch.Generator().manual_seed(1)
    n = 64
    s = (torch.randn(n, generator=g, dtype=F64) * 2).requires_grad_(True)
    ones = torch.ones(n, dtype=torch.long)  # targets 1: the logits are the margins
    F.ensloss(s, ones, seed=5).backward()
    grad = s.grad
    assert torch.all(grad < 0)
    order = torch.argsort(s.detach())
    assert torch.all(grad[order][1:] >= grad[order][:-1])  # non-decreasing in the margin
    assert torch.all(grad >= -(1 + 1e-6) / n - 1e-15)
    tail = s.detach() > 1
    assert torch.all(grad[tail].abs() * s.detach()[tail] <= (1 + 1e-6 * s.detach()[tail]) / n)


def test_permuting_the_batch_permutes_the_values():
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(20, generator=g, dtype=F64), torch.randint(2, (20,), generator=g)
    perm = torch.randperm(20, generator=g)
    torch.testing.assert_close(
        F.ensloss(x, t, reduction="none")[perm], F.ensloss(x[perm], t[perm], reduction="none")
    )


def test_generator_gives_fresh_reproducible_draws():
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(16, generator=g, dtype=F64), torch.randint(2, (16,), generator=g)
    first = F.ensloss(x, t, generator=torch.Generator().manual_seed(7), reduction="none")
    again = F.ensloss(x, t, generator=torch.Generator().manual_seed(7), reduction="none")
    torch.testing.assert_close(first, again)
    gen = torch.Generator().manual_seed(7)
    a = F.ensloss(x, t, generator=gen, reduction="none")
    b = F.ensloss(x, t, generator=gen, reduction="none")
    torch.testing.assert_close(a, first)
    assert not torch.allclose(a, b)
    mod = losslab.EnsLoss(generator=torch.Generator().manual_seed(7), reduction="none")
    torch.testing.assert_close(mod(x, t), first)
    torch.testing.assert_close(mod(x, t), b)


def test_seed_none_uses_the_global_rng():
    x, t = torch.randn(16, dtype=F64), torch.randint(2, (16,))
    torch.manual_seed(0)
    a = F.ensloss(x, t, seed=None, reduction="none")
    b = F.ensloss(x, t, seed=None, reduction="none")
    torch.manual_seed(0)
    torch.testing.assert_close(F.ensloss(x, t, seed=None, reduction="none"), a)
    assert not torch.allclose(a, b)


def test_fixed_seed_is_deterministic_across_dtypes():
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(12, generator=g, dtype=F64), torch.randint(2, (12,), generator=g)
    torch.testing.assert_close(
        F.ensloss(x.float(), t, seed=9, reduction="none"),
        F.ensloss(x, t, seed=9, reduction="none").float(),
    )
    assert not torch.allclose(F.ensloss(x, t, seed=9), F.ensloss(x, t, seed=10))


def test_stream_is_uniform():
    u = stream_uniforms(torch.tensor(123), 50_000, torch.device("cpu"))
    assert u.min() > 0 and u.max() < 1
    counts = torch.histc(u, bins=20, min=0, max=1)
    assert torch.all((counts - 2500).abs() < 250)
    # Consecutive keys give unrelated streams.
    v = stream_uniforms(torch.tensor(124), 50_000, torch.device("cpu"))
    assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item()) < 0.02


def test_bad_generator_and_targets():
    x, t = torch.randn(4), torch.tensor([1, 0, 1, 0])
    with pytest.raises(TypeError, match=r"^ensloss: generator expected a torch.Generator"):
        F.ensloss(x, t, generator=3)
    with pytest.raises(ValueError, match=r"^ensloss: pos_weight expected None"):
        F.ensloss(x, t, pos_weight=torch.tensor(2.0))
    with pytest.raises(ValueError, match=r"^ensloss: seed expected an integer >= 0"):
        F.ensloss(x, t, seed=-1)


# ----------------------------------------------------------------------------- Bias loss


def test_weights_at_known_normalised_variances():
    # Features [a, -a] have unbiased variance 2 a^2: a = 0, 1/2, 1/sqrt(2) give 0, 1/2, 1.
    a = torch.tensor([0.0, 0.5, math.sqrt(0.5)], dtype=F64)
    feats = torch.stack([a, -a], dim=1)
    z = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2])
    got = F.bias_loss(z, y, features=feats, normalize="local", reduction="none")
    weights = got / F.ce(z, y, reduction="none")
    torch.testing.assert_close(
        weights, torch.tensor([0.7, 0.861834, 1.049859], dtype=F64), atol=1e-6, rtol=0
    )


def official_bias_loss(batches, alpha=0.3, beta=0.3, mode="global"):
    """The official module's forward over successive batches, restated (its state is the
    running minimum variance, initialised at 1e5)."""
    global_min = 1e5
    out = []
    for z, y, feats in batches:
        var = feats.reshape(len(feats), -1).var(dim=1)
        lo, hi = var.min(), var.max()
        if mode == "global":
            global_min = min(global_min, float(lo))
            v = (var - global_min) / (hi - lo)
        else:
            v = (var - lo) / (hi - lo)
        w = torch.exp(v * alpha) - beta
        out.append((w * torch.nn.functional.cross_entropy(z, y, reduction="none")).mean())
    return out


@pytest.mark.parametrize("mode", ["global", "local"])
def test_equals_the_official_module_over_batches(mode):
    g = torch.Generator().manual_seed(6)
    batches = []
    for scale in (1.0, 3.0, 0.5):
        z = torch.randn(8, 5, generator=g, dtype=F64)
        y = torch.randint(5, (8,), generator=g)
        feats = torch.randn(8, 4, 3, 3, generator=g, dtype=F64) * scale
        batches.append((z, y, feats))
    want = official_bias_loss(batches, mode=mode)
    vmin = None
    for (z, y, feats), ref in zip(batches, want, strict=True):
        out = F.bias_loss(
            z, y, features=feats, normalize=mode, variance_min=vmin, return_components=True
        )
        torch.testing.assert_close(out.loss, ref)
        vmin = out.variance_min


def test_no_gradient_through_features_and_equal_variances_are_safe():
    z = torch.randn(4, 3, dtype=F64, requires_grad=True)
    feats = torch.randn(4, 6, dtype=F64, requires_grad=True)
    F.bias_loss(z, torch.tensor([0, 1, 2, 0]), features=feats).backward()
    assert feats.grad is None and torch.isfinite(z.grad).all()
    same = torch.tensor([[1.0, -1.0]] * 4, dtype=F64)
    out = F.bias_loss(z, torch.tensor([0, 1, 2, 0]), features=same, reduction="none")
    torch.testing.assert_close(
        out, 0.7 * F.ce(z.detach(), torch.tensor([0, 1, 2, 0]), reduction="none")
    )
    one = F.bias_loss(z[:1], torch.tensor([0]), features=same[:1], variance_min=0.5)
    assert torch.isfinite(one)


def test_alpha_beta_zero_is_cross_entropy_and_weights_grow_with_variance():
    g = torch.Generator().manual_seed(7)
    z, y = torch.randn(6, 4, generator=g, dtype=F64), torch.randint(4, (6,), generator=g)
    feats = torch.randn(6, 10, generator=g, dtype=F64) * torch.arange(1, 7, dtype=F64)[:, None]
    torch.testing.assert_close(F.bias_loss(z, y, features=feats, alpha=0.0, beta=0.0), F.ce(z, y))
    w = F.bias_loss(z, y, features=feats, reduction="none") / F.ce(z, y, reduction="none")
    var = feats.var(dim=1)
    assert torch.all(w[var.argsort()][1:] >= w[var.argsort()][:-1])


def test_bad_features():
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    for feats in (torch.randn(3, 5), torch.randn(4, 1), torch.randn(4)):
        with pytest.raises(ValueError, match=r"^bias_loss: features expected shape \(4,\)"):
            F.bias_loss(z, y, features=feats)
    with pytest.raises(TypeError, match=r"^bias_loss: features expected a floating-point"):
        F.bias_loss(z, y, features=torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^bias_loss: variance_min expected a number"):
        F.bias_loss(z, y, features=torch.randn(4, 5), variance_min=torch.ones(2))


# ----------------------------------------------------------------------------- Tri-BCE


def official_tri_bce(deep, shallow, t):
    """FCN's add_loss restated: BCE on probabilities of the fused (mean-logit) prediction
    and of each branch, weights (L_branch - L)_+ not detached."""
    bce = torch.nn.functional.binary_cross_entropy
    t = t.double()
    fused = bce(torch.sigmoid((deep + shallow) / 2), t)
    l_d, l_s = bce(torch.sigmoid(deep), t), bce(torch.sigmoid(shallow), t)
    return fused + torch.relu(l_d - fused) * l_d + torch.relu(l_s - fused) * l_s


def test_equals_the_official_loss_in_value_and_gradient():
    g = torch.Generator().manual_seed(8)
    deep = torch.randn(32, generator=g, dtype=F64).requires_grad_(True)
    shallow = (torch.randn(32, generator=g, dtype=F64) * 2).requires_grad_(True)
    t = torch.randint(2, (32,), generator=g)
    ours = F.tri_bce(deep, t, shallow_logits=shallow)
    grads = torch.autograd.grad(ours, (deep, shallow))
    ref = official_tri_bce(deep, shallow, t)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads, torch.autograd.grad(ref, (deep, shallow)), strict=True):
        torch.testing.assert_close(a, b)


def test_detached_weights_and_components():
    g = torch.Generator().manual_seed(9)
    deep = torch.randn(16, generator=g, dtype=F64).requires_grad_(True)
    shallow = torch.randn(16, generator=g, dtype=F64)
    t = torch.randint(2, (16,), generator=g)
    out = F.tri_bce(deep, t, shallow_logits=shallow, detach_weights=True, return_components=True)
    w_d = torch.relu(out.deep - out.fused).detach()
    w_s = torch.relu(out.shallow - out.fused).detach()
    want = torch.autograd.grad(
        out.fused + w_d * out.deep + w_s * out.shallow, deep, retain_graph=True
    )[0]
    torch.testing.assert_close(torch.autograd.grad(out.loss, deep)[0], want)
    assert w_d >= 0 and w_s >= 0


def test_equal_branches_give_bce():
    g = torch.Generator().manual_seed(10)
    x, t = torch.randn(2, 7, generator=g, dtype=F64), torch.randint(2, (2, 7), generator=g)
    pw = torch.tensor(3.0, dtype=F64)
    torch.testing.assert_close(
        F.tri_bce(x, t, shallow_logits=x.clone(), pos_weight=pw), F.bce(x, t, pos_weight=pw)
    )


def test_bad_shallow_logits():
    x, t = torch.randn(5), torch.randint(2, (5,))
    with pytest.raises(ValueError, match=r"^tri_bce: shallow_logits expected the logits' shape"):
        F.tri_bce(x, t, shallow_logits=torch.randn(4))
    with pytest.raises(ValueError, match=r"^tri_bce: shallow_logits expected finite"):
        F.tri_bce(x, t, shallow_logits=torch.full((5,), float("nan")))
