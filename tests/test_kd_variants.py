"""dhkd and pld against the official BinaryKL(-Norm) code's formulas and the PLD paper's
oracle values and limiting cases."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F

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
