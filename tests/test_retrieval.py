"""DEXML's decoupled softmax and soft top-k against the research oracles, and the
implicit-function gradient of the soft top-k threshold."""

from __future__ import annotations

import pytest
import torch

from losslab import functional as F

F64 = torch.float64


def test_decoupled_softmax_research_value_and_single_positive_is_ce():
    s = torch.tensor([[2.0, 1.0, 0.0, 0.0]], dtype=F64)
    q = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=F64)
    assert abs(F.decoupled_softmax(s, q, temperature=1.0).item() - 0.395495) < 1e-6
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=F64)
    y = torch.randint(5, (6,), generator=g)
    torch.testing.assert_close(
        F.decoupled_softmax(z, y, temperature=0.5), torch.nn.functional.cross_entropy(z / 0.5, y)
    )


def test_soft_topk_memberships_research_values():
    s = torch.tensor([[3.0, 2.0, 1.0, 0.0]], dtype=F64)
    p = F.soft_topk_probs(s, 2, 1.0)
    torch.testing.assert_close(
        p, torch.tensor([[0.817574, 0.622459, 0.377541, 0.182426]], dtype=F64), atol=1e-6, rtol=0
    )
    assert abs(p.sum().item() - 2.0) < 1e-12


def test_soft_topk_jacobian_rows_and_columns_sum_to_zero():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(1, 6, generator=g, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda x: F.soft_topk_probs(x, 3, 1.5)[0], s)[:, 0, :]
    torch.testing.assert_close(jac.sum(dim=0), torch.zeros(6, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(jac.sum(dim=1), torch.zeros(6, dtype=F64), atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(lambda x: F.soft_topk_probs(x, 3, 1.5), (s.requires_grad_(),))


def test_soft_topk_tends_to_hard_topk_and_is_zero_when_all_fit():
    s = torch.tensor([[3.0, 2.0, 1.0, 0.0]], dtype=F64)
    p = F.soft_topk_probs(s, 2, 50.0)
    torch.testing.assert_close(
        p, torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64), atol=1e-9, rtol=0
    )
    z = torch.randn(3, 4, dtype=F64, requires_grad=True)
    out = F.soft_topk(z, torch.tensor([0, 1, 2]), k=4)
    out.backward()
    assert out.item() == 0.0 and torch.all(z.grad == 0)


def test_soft_topk_saturated_rows_agree_across_precisions():
    # One candidate far below the others with K = C - 1: the membership sum sits within
    # 1e-100 of K, which the tail comparison resolves in float32 as well as float64.
    z = torch.tensor([[-6.4, -0.4, 3.3, 0.2, -0.3, -0.2]])
    y = torch.tensor([0])
    a = F.soft_topk(z, y, k=5)
    b = F.soft_topk(z.double(), y, k=5)
    torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=0)


def test_soft_topk_probs_needs_k_inside_the_row():
    s = torch.zeros(2, 4)
    for k in (0, 4, 5.5):
        with pytest.raises(ValueError, match=r"^soft_topk_probs: k expected a value strictly"):
            F.soft_topk_probs(s, k, alpha=1.0)
    torch.testing.assert_close(F.soft_topk_probs(s, 2, alpha=1.0).sum(dim=1), torch.full((2,), 2.0))
