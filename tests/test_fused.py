"""The fused rows (analytic backward) against plain autograd, including clamped branches."""

from __future__ import annotations

import math

import pytest
import torch

from losslab.functional import _fused as fused
from losslab.functional._fused import LDRKLRows, ZLossRows
from losslab.functional.ldr import normalize_logits


def _ldr_autograd(z, y, margin, lam, normalize):
    f = normalize_logits(z, normalize)
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).to(z.dtype)
    lam_col = lam.unsqueeze(1) if isinstance(lam, torch.Tensor) else lam
    a = margin * (1 - onehot) + f - f.gather(1, y[:, None])
    return lam * (torch.logsumexp(a / lam_col, dim=1) - math.log(z.shape[1]))


def _z_autograd(o, y, a, b, eps=1e-2):
    mu = o.mean(dim=1, keepdim=True)
    var = ((o - mu) ** 2).mean(dim=1, keepdim=True)
    # sqrt has an infinite slope at 0: keep the floored branch off it.
    sd = torch.where(var > eps * eps, var.clamp_min(eps * eps).sqrt(), eps)
    z = (o - mu) / sd
    return torch.nn.functional.softplus(a * (b - z.gather(1, y[:, None]).squeeze(1))) / a


def _inputs(seed=0, n=7, c=6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    z[0] = 0.0  # a row whose mean |z| is clamped, and whose std is clamped
    z[1] = -200.0  # softplus underflows to (almost) 0: clamped softplus mean
    y = torch.randint(c, (n,), generator=g)
    return z, y


@pytest.mark.parametrize("normalize", ["none", "softplus_mean", "abs_mean"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_ldr_rows_match_autograd(normalize, per_sample):
    z, y = _inputs()
    lam = torch.linspace(0.5, 4.0, z.shape[0], dtype=torch.float64) if per_sample else 2.5
    w = torch.rand(z.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    out1 = LDRKLRows.apply(z1, y, 0.3, lam, normalize, 1e-2)
    out2 = _ldr_autograd(z2, y, 0.3, lam, normalize)
    torch.testing.assert_close(out1, out2)
    (out1 * w).sum().backward()
    (out2 * w).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (2.0, 1.0), (0.5, -1.0)])
def test_z_rows_match_autograd(a, b):
    o, y = _inputs(2)
    w = torch.rand(o.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    o1 = o.clone().requires_grad_(True)
    o2 = o.clone().requires_grad_(True)
    out1 = ZLossRows.apply(o1, y, a, b, 1e-2)
    out2 = _z_autograd(o2, y, a, b)
    torch.testing.assert_close(out1, out2)
    (out1 * w).sum().backward()
    (out2 * w).sum().backward()
    torch.testing.assert_close(o1.grad, o2.grad)


def test_rows_gradcheck_float64():
    z, y = _inputs(4)
    z = z[2:].clone().requires_grad_(True)  # away from the clamp kinks
    y = y[2:]
    for normalize in ("none", "softplus_mean", "abs_mean"):
        fn = lambda x, nm=normalize: LDRKLRows.apply(x, y, 0.2, 1.7, nm, 1e-2)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (z,))
    assert torch.autograd.gradcheck(lambda x: ZLossRows.apply(x, y, 1.5, 0.5, 1e-2), (z,))


@pytest.mark.parametrize("normalize", ["none", "softplus_mean", "abs_mean"])
def test_ldr_rows_blockwise_equal_one_block(normalize, monkeypatch):
    """Rows split over several blocks give the one-block values and gradients, including a
    block whose logits overflow ``exp`` (softplus' safe path) next to ordinary ones."""
    z, y = _inputs(5, n=11, c=6)
    z = z.float()
    z[9] = torch.tensor([120.0, -3.0, 95.0, 0.5, 100.0, 2.0])
    lam = torch.linspace(0.5, 4.0, z.shape[0])

    def run():
        x = z.clone().requires_grad_(True)
        out = LDRKLRows.apply(x, y, 0.3, lam, normalize, 1e-2)
        out.sum().backward()
        return out, x.grad

    one = run()
    monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 2 * z.shape[1])
    many = run()
    torch.testing.assert_close(many, one)
    assert torch.isfinite(one[0]).all() and torch.isfinite(one[1]).all()


def test_ldr_rows_backward_twice():
    """``retain_graph`` backward passes give the same gradient (the saved exponentials
    are read, never overwritten)."""
    z, y = _inputs(6)
    x = z.clone().requires_grad_(True)
    out = LDRKLRows.apply(x, y, 0.3, 2.0, "softplus_mean", 1e-2).sum()
    (g1,) = torch.autograd.grad(out, x, retain_graph=True)
    (g2,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(g1, g2)


SET_LOSSES = (
    ("binary_dice", {}),
    ("binary_dice", {"square": False}),
    ("binary_self_adjusting_dice", {"alpha": 0.5}),
    ("binary_tversky", {}),
    ("anyloss", {"metric": "f1"}),
    ("anyloss", {"metric": "gmean"}),
)


@pytest.mark.parametrize(("name", "config"), SET_LOSSES)
@pytest.mark.parametrize("options", ["plain", "weighted"])
def test_set_level_sums_gradcheck_with_weights_and_mask(name, config, options):
    """BlockSums' hand-written gradient (mass_sums) against finite differences, without
    weights (the whole mass is 1, never built) and with element weights, per-label
    pos_weight and an ignore_index mask (the general masses)."""
    from losslab import functional as F

    g = torch.Generator().manual_seed(5)
    x = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.randint(2, (6, 4), generator=g)
    kw = dict(config)
    if options == "weighted":
        t[0, 1] = t[3, 2] = -100
        kw.update(
            weight=torch.rand(6, 4, generator=g, dtype=torch.float64) + 0.5,
            pos_weight=torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64),
            ignore_index=-100,
        )
    fn = getattr(F, name)
    assert torch.autograd.gradcheck(lambda z: fn(z, t, **kw), (x,))


@pytest.mark.parametrize("targets", ["index", "soft"])
def test_anyloss_macro_gradcheck_with_weights(targets):
    """AnyLoss macro's per-class sums and their scaled gradient coefficients against
    finite differences, with sample weights and index or probability targets."""
    from losslab import functional as F

    g = torch.Generator().manual_seed(6)
    z = (torch.randn(7, 5, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    y = torch.randint(5, (7,), generator=g)
    if targets == "soft":
        y = torch.softmax(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    w = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda s: F.anyloss_macro(s, y, sample_weight=w, amplifier=3.0), (z,)
    )


@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_hinge_sum_rows_match_autograd(margin):
    """HingeSumRows (ww_svm's kernel) against the autograd sum of hinges over several
    blocks, values and gradients."""
    g = torch.Generator().manual_seed(7)
    z = torch.randn(700, 1000, generator=g)
    y = torch.randint(1000, (700,), generator=g)
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    got = fused.hinge_sum(a, y, margin)
    want = torch.relu(b - (b.gather(1, y[:, None]) - margin)).sum(dim=1)
    torch.testing.assert_close(got, want)
    w = torch.rand(700, generator=g)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("square", [True, False])
def test_self_adjusting_dice_rows_match_autograd_over_blocks(square):
    """ComplementSeparableRows (self-adjusting Dice, index targets) against the general
    one-hot path over several blocks, values and gradients, and without grad mode (no
    derivative computed) the same values."""
    from losslab import functional as F

    g = torch.Generator().manual_seed(8)
    z = torch.randn(700, 1000, generator=g, dtype=torch.float64) * 3
    y = torch.randint(1000, (700,), generator=g)
    cfg = {"alpha": 0.2, "square": square, "reduction": "none"}
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    got = F.self_adjusting_dice(a, y, **cfg)
    want = F.self_adjusting_dice(b, torch.nn.functional.one_hot(y, 1000).to(z.dtype), **cfg)
    torch.testing.assert_close(got, want)
    w = torch.rand(700, generator=g, dtype=torch.float64)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    with torch.no_grad():
        torch.testing.assert_close(F.self_adjusting_dice(a, y, **cfg), got.detach())
