"""dhkd and pld against the official BinaryKL(-Norm) code's formulas and the PLD paper's
oracle values and limiting cases."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.functional._fused import exp_floor
from losslab.functional.kd_variants import pl_reference

F64 = torch.float64


def logits(seed: int, n: int = 6, c: int = 5, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g, dtype=F64) * scale
    t = torch.randn(n, c, generator=g, dtype=F64) * scale
    return s, t, torch.randint(c, (n,), generator=g)


# ----------------------------------------------------------------------------- DHKD


def official_binary_kl(student, teacher, temperature, normalize, eps=1e-8):
    """distiller_zoo/BinaryKLNorm.py and BinaryKL.py written out: sigmoids clamped to
    [eps, 1 - eps], two KLDiv terms per class, T^2 * sum / N."""
    if normalize:
        p = torch.sigmoid((student - teacher) / temperature).clamp(eps, 1 - eps)
        q = torch.full_like(p, 0.5)
    else:
        p = torch.sigmoid(student / temperature).clamp(eps, 1 - eps)
        q = torch.sigmoid(teacher / temperature).clamp(eps, 1 - eps)
    kl = q * (q.log() - p.log()) + (1 - q) * ((1 - q).log() - (1 - p).log())
    return temperature**2 * kl.sum() / student.shape[0]


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_dhkd_matches_the_official_code(normalize, temperature):
    s, t, _ = logits(0)
    a = s.clone().requires_grad_(True)
    b = s.clone().requires_grad_(True)
    got = F.dhkd(a, t, temperature=temperature, normalize=normalize)
    want = official_binary_kl(b, t, temperature, normalize)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_dhkd_oracle_value_and_zero_at_the_teacher():
    d = torch.tensor([[1.0, -3.0]], dtype=F64)
    per = F.dhkd(d, torch.zeros_like(d), reduction="none")
    assert per.item() == pytest.approx(1.156784, abs=1e-6)
    torch.testing.assert_close(per, 4 * torch.log(torch.cosh(d / 4)).sum(1))
    s, _, _ = logits(1)
    assert F.dhkd(s, s.clone()).item() == 0.0


def test_dhkd_keeps_its_gradient_where_the_official_clamp_saturates():
    # |s - t| / T above log(1e8) = 18.4: the official sigmoid clamp makes the loss flat.
    s = torch.tensor([[50.0, 0.0]], dtype=F64, requires_grad=True)
    t = torch.zeros(1, 2, dtype=F64)
    F.dhkd(s, t, temperature=2.0).backward()
    # d/ds [T^2 log cosh(s / 2T)] = (T / 2) tanh(s / 2T)
    assert s.grad[0, 0].item() == pytest.approx(math.tanh(12.5), rel=1e-12)
    b = s.detach().clone().requires_grad_(True)
    official_binary_kl(b, t, 2.0, True).backward()
    assert b.grad[0, 0].item() == 0.0


def test_dhkd_sees_what_the_softmax_hides():
    s, t, _ = logits(2)
    shifted = s + 3.0
    assert F.kd(shifted, t, alpha=1.0).item() == pytest.approx(F.kd(s, t, alpha=1.0).item())
    assert F.dhkd(shifted, t).item() > F.dhkd(s, t).item() + 1.0


# ----------------------------------------------------------------------------- PLD


def test_pld_paper_oracle():
    out = F.pld(
        torch.zeros(1, 3, dtype=F64), torch.tensor([[3.0, 1.0, 0.0]], dtype=F64), torch.tensor([1])
    )
    assert out.item() == pytest.approx(0.710330, abs=1e-6)


def test_pld_uniform_student_is_weighted_log_counts():
    _, t, y = logits(3, c=6)
    q = torch.softmax(t, dim=1)
    out = F.pld(torch.zeros_like(t), t, y, reduction="none")
    for i in range(len(y)):
        order = [int(y[i])] + [
            k for k in torch.argsort(t[i], descending=True, stable=True).tolist() if k != y[i]
        ]
        want = sum(q[i, k].item() * math.log(6 - r) for r, k in enumerate(order))
        assert out[i].item() == pytest.approx(want, rel=1e-12)


def test_pld_is_translation_invariant_in_the_student():
    s, t, y = logits(4)
    torch.testing.assert_close(
        F.pld(s + torch.randn(6, 1, dtype=F64) * 10, t, y, reduction="none"),
        F.pld(s, t, y, reduction="none"),
    )


def test_pld_reduces_to_cross_entropy_and_listmle():
    s, _, y = logits(5)
    confident = torch.nn.functional.one_hot(y, 5).to(F64) * 1e4
    torch.testing.assert_close(
        F.pld(s, confident, y, reduction="none"),
        torch.nn.functional.cross_entropy(s, y, reduction="none"),
    )
    # Equal teacher logits: uniform weights (ListMLE over the order y, 0, 1, ...).
    flat = torch.zeros_like(s)
    out = F.pld(s, flat, y, reduction="none")
    for i in range(len(y)):
        order = [int(y[i])] + [k for k in range(5) if k != y[i]]
        r = s[i, order]
        want = sum((torch.logsumexp(r[k:], 0) - r[k]).item() for k in range(5)) / 5
        assert out[i].item() == pytest.approx(want, rel=1e-12)


def test_pld_is_convex_in_the_student():
    a, t, y = logits(6)
    b, _, _ = logits(7)
    la, lb = F.pld(a, t, y, reduction="none"), F.pld(b, t, y, reduction="none")
    for w in (0.1, 0.5, 0.9):
        mid = F.pld(w * a + (1 - w) * b, t, y, reduction="none")
        assert torch.all(mid <= w * la + (1 - w) * lb + 1e-12)


def test_pld_teacher_ties_keep_class_order():
    s = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=F64)
    t = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=F64)
    out = F.pld(s, t, torch.tensor([2]))
    r = s[0, [2, 0, 1, 3]]
    want = sum((torch.logsumexp(r[k:], 0) - r[k]).item() for k in range(4)) / 4
    assert out.item() == pytest.approx(want, rel=1e-12)


def pld_both_paths(s, t, y, temperature, teacher_format="logits"):
    """``(value, d/ds, d/dt)`` of F.pld (PLRows for rows of a normal spread) and of the
    logcumsumexp path (pl_reference), per row, under a fixed incoming gradient."""
    out = []
    for fast in (True, False):
        a, b = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
        if fast:
            v = F.pld(
                a, b, y, temperature=temperature, teacher_format=teacher_format, reduction="none"
            )
        else:
            tt = b.log() if teacher_format == "probs" else b
            v = pl_reference(a, tt, y.unsqueeze(1), temperature)
        weights = torch.linspace(-1.0, 2.0, v.numel(), dtype=v.dtype)
        (v * weights).sum().backward()
        out.append((v.detach(), a.grad, b.grad))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_pld_fast_path_equals_logcumsumexp_path(dtype, temperature):
    g = torch.Generator().manual_seed(11)
    n, c = 300, 2048  # several blocks of rows
    s = (torch.randn(n, c, generator=g, dtype=F64) * 3).to(dtype)
    t = (torch.randn(n, c, generator=g, dtype=F64) * 3).to(dtype)
    t[:20, :] = t[:20, :1]  # teacher ties
    y = torch.randint(c, (n,), generator=g)
    (v, ds, dt), (rv, rds, rdt) = pld_both_paths(s, t, y, temperature)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(v, rv, **tol)
    torch.testing.assert_close(ds, rds, **tol)
    torch.testing.assert_close(dt, rdt, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_pld_extreme_rows_equal_logcumsumexp_path(dtype):
    g = torch.Generator().manual_seed(12)
    n, c = 12, 50
    s = torch.randn(n, c, generator=g, dtype=F64)
    spread = -exp_floor(dtype)
    s[1] *= 1e4
    s[2] *= 1e20
    s[3, 7] = -1e30
    s[4] = torch.linspace(0.0, spread * 0.999, c, dtype=F64)  # just inside PLRows' range
    s[5] = torch.linspace(0.0, spread * 1.001, c, dtype=F64)  # just outside it
    s[6] = torch.linspace(-spread * 0.999, 0.0, c, dtype=F64).flip(0) + 100.0
    s[7] *= 40
    s, t = s.to(dtype), torch.randn(n, c, generator=g, dtype=F64).to(dtype) * 5
    t[8] *= 1e4  # teacher mass on one class; the others' weights underflow to 0
    y = torch.randint(c, (n,), generator=g)
    (v, ds, dt), (rv, rds, rdt) = pld_both_paths(s, t, y, 1.0)
    for got in (v, ds, dt):
        assert torch.isfinite(got).all()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(v, rv, **tol)
    torch.testing.assert_close(ds, rds, **tol)
    torch.testing.assert_close(dt, rdt, **tol)
    # A probability teacher with zeros (log 0 = -inf teacher logits).
    p = torch.softmax(t.double() * 3, dim=1).to(dtype)
    p[p < 1e-3] = 0.0
    p = p / p.sum(dim=1, keepdim=True)
    y = p.argmax(dim=1)
    (v, ds, _), (rv, rds, _) = pld_both_paths(s, p, y, 1.0, teacher_format="probs")
    torch.testing.assert_close(v, rv, **tol)
    torch.testing.assert_close(ds, rds, **tol)


def test_pld_rows_gradcheck_student_and_teacher():
    s, t, y = logits(13, n=5, c=7, scale=3.0)
    s, t = s.requires_grad_(True), t.requires_grad_(True)
    for temperature in (1.0, 2.5):
        assert torch.autograd.gradcheck(
            lambda a, b, tau=temperature: F.pld(a, b, y, temperature=tau, reduction="none"),
            (s, t),
        )
