"""Equiangular basis vectors, the simplex ETF and their heads; alignment and uniformity."""

from __future__ import annotations

import math

import pytest
import torch

from losslab.heads import EquiangularHead, SimplexETFHead, equiangular_basis, simplex_etf
from losslab.metrics import alignment, uniformity

F64 = torch.float64


def test_equiangular_basis_reaches_the_threshold():
    basis, coherence = equiangular_basis(10, 16, theta=0.01, lr=0.05, max_steps=5000)
    torch.testing.assert_close(basis.norm(dim=1), torch.ones(10))
    cos = (basis @ basis.T).abs() - torch.eye(10)
    assert cos.max().item() <= 0.01 + 1e-4 + 1e-6
    assert abs(cos.max().item() - coherence) < 1e-6
    # More vectors than dimensions: the threshold is out of reach, the best basis is kept.
    _, crowded = equiangular_basis(12, 3, theta=0.002, lr=0.05, max_steps=300)
    assert 0.002 < crowded < 1.0


def test_ebv_loss_research_value():
    head = EquiangularHead(4, 4, label_smoothing=0.0, theta=0.3, lr=0.05, max_steps=10)
    n = 1000
    head.basis = torch.eye(n, dtype=F64)
    head.temperature = 0.07
    f = torch.eye(n, dtype=F64)[:8]
    got = head(f, torch.arange(8))
    assert abs(got.item() - math.log(1 + (n - 1) * math.exp(-1 / 0.07))) < 1e-8
    assert abs(got.item() - 6.2406e-4) < 1e-7


def test_simplex_etf_geometry_and_head():
    for k, d in ((3, 3), (5, 8)):
        m = simplex_etf(k, d).double()
        gram = m @ m.T
        want = torch.full((k, k), -1.0 / (k - 1), dtype=F64).fill_diagonal_(1.0)
        torch.testing.assert_close(gram, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(m.sum(dim=0), torch.zeros(d, dtype=F64), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"^simplex_etf: dim expected an integer >= 5"):
        simplex_etf(5, 4)
    head = SimplexETFHead(8, 4, scale=5.0, learn_scale=True)
    h = torch.randn(6, 8)
    loss = head(h, torch.tensor([0, 1, 2, 3, 0, 1]))
    loss.backward()
    assert head.log_scale.grad is not None and "etf" in dict(head.named_buffers())
    with pytest.raises(ValueError, match=r"^SimplexETFHead: embeddings expected shape \(N, 8\)"):
        head(torch.randn(2, 7), torch.tensor([0, 1]))


def test_uniformity_research_values():
    assert abs(uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=F64)).item() + 8) < 1e-12
    tri = torch.tensor(
        [[math.cos(a), math.sin(a)] for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)], dtype=F64
    )
    assert abs(uniformity(tri).item() + 6) < 1e-12
    assert uniformity(torch.ones(4, 3, dtype=F64)).item() == 0.0
    with pytest.raises(ValueError, match=r"^uniformity: x expected at least two rows"):
        uniformity(torch.ones(1, 3))


def test_alignment_values_and_errors():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    assert alignment(x, x).item() == 0.0
    assert abs(alignment(x, -x, alpha=1.0).item() - 2.0) < 1e-12
    with pytest.raises(ValueError, match=r"^alignment: y expected the shape of x"):
        alignment(x, x[:1])
    with pytest.raises(ValueError, match=r"^alignment: alpha expected"):
        alignment(x, x, alpha=0.0)
