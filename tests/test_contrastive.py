"""NT-Xent / InfoNCE, SupCon, CLIP (and ClipHead), CWCL, Barlow Twins and CACR against
the research oracles and their stated invariances."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.heads import ClipHead

F64 = torch.float64
VALUE = math.log(1 + 2 * math.exp(-2))  # 0.239545: one positive at 1, two negatives at 0, tau 0.5


def two_by_two():
    """Samples A = e1 and B = e2, each with two identical views."""
    return torch.eye(2, dtype=F64)[:, None, :].expand(2, 2, 2).contiguous()


def test_ntxent_infonce_and_supcon_research_value():
    views = two_by_two()
    assert abs(F.ntxent(views, temperature=0.5).item() - VALUE) < 1e-12
    assert abs(F.infonce(views, temperature=0.5).item() - VALUE) < 1e-12
    flat = views.reshape(4, 2)
    labels = torch.tensor([0, 0, 1, 1])
    assert abs(F.ntxent(flat, labels, temperature=0.5).item() - VALUE) < 1e-12
    got = F.supcon(flat, labels, temperature=0.5, base_temperature=0.5)
    assert abs(got.item() - VALUE) < 1e-12
    # The official factor tau / tau_base with the official base temperature 0.07.
    official = F.supcon(flat, labels, temperature=0.5)
    assert abs(official.item() - VALUE * 0.5 / 0.07) < 1e-12


def test_ntxent_is_scale_invariant_and_counts_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 5, generator=g, dtype=F64)
    torch.testing.assert_close(F.ntxent(x), F.ntxent(7.5 * x))
    parts = F.ntxent(x, return_components=True)
    assert int(parts.positive_pairs) == 12  # each of 12 views has its other view


def test_supcon_anchor_without_positive_counts_as_zero():
    x = torch.randn(3, 4, dtype=F64)
    parts = F.supcon(x, torch.tensor([0, 1, 2]), return_components=True)
    assert parts.loss.item() == 0.0 and int(parts.positive_pairs) == 0
    none = F.supcon(x, torch.tensor([0, 0, 1]), reduction="none")
    assert none[2] == 0 and torch.all(none[:2] > 0)


def test_clip_research_value_symmetry_and_head():
    pairs = torch.eye(3, dtype=F64)[:, None, :].expand(3, 2, 3)
    assert abs(F.clip(pairs, temperature=0.5).item() - VALUE) < 1e-12
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 4, generator=g, dtype=F64)
    torch.testing.assert_close(F.clip(x), F.clip(x.flip(1)))
    head = ClipHead(temperature=0.05).double()
    got = head(x[:, 0], x[:, 1])
    torch.testing.assert_close(got, F.clip(x, temperature=0.05))
    got.backward()
    assert head.log_scale.grad is not None and torch.isfinite(head.log_scale.grad)
    with torch.no_grad():
        head.log_scale.fill_(10.0)  # the clamp: scale at most 100
    torch.testing.assert_close(head(x[:, 0], x[:, 1]), F.clip(x, temperature=0.01))
    with pytest.raises(ValueError, match=r"^ClipHead: text expected the image embeddings' shape"):
        head(x[:, 0], x[:3, 1])


def test_cwcl_research_value_and_reduction_to_clip():
    p = torch.eye(2, dtype=F64)
    views = torch.stack([p, p], dim=1)
    forward = 0.793595
    got = F.cwcl(views, temperature=0.5, reverse="infonce")
    assert abs(got.item() - (forward + math.log(1 + math.exp(-2))) / 2) < 1e-6
    # Antipodal frozen embeddings give w = I: CWCL is CLIP.
    anti = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=F64)
    q = torch.tensor([[0.6, 0.8], [-0.8, 0.6]], dtype=F64)
    both = torch.stack([anti, q], dim=1)
    torch.testing.assert_close(F.cwcl(both, temperature=0.3), F.clip(both, temperature=0.3))


def test_barlow_twins_research_values_and_invariances():
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], dtype=F64)
    assert F.barlow_twins(torch.stack([z, z], dim=1)).item() < 1e-9
    assert abs(F.barlow_twins(torch.stack([z, -z], dim=1)).item() - 7.99992) < 1e-5
    assert F.barlow_twins(torch.stack([z, 3 * z + 7], dim=1)).item() < 1e-9
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 3, generator=g, dtype=F64), torch.randn(8, 3, generator=g, dtype=F64)
    torch.testing.assert_close(
        F.barlow_twins(torch.stack([a, b], dim=1)), F.barlow_twins(torch.stack([b, a], dim=1))
    )
    one = F.barlow_twins(torch.randn(1, 2, 3, dtype=F64, requires_grad=True))
    assert one.item() == 0.0 and one.requires_grad


def test_cacr_research_values_and_bounds():
    z = torch.eye(2, dtype=F64)
    assert abs(F.cacr(torch.stack([z, z], dim=1)).item() + 2.0) < 1e-12
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, 4, generator=g, dtype=F64)
    u = torch.nn.functional.normalize(x, dim=-1)
    # Two views: one positive per anchor (weight 1), so attraction = alpha * mean |z1 - z2|^2.
    attraction = (u[:, 0] - u[:, 1]).pow(2).sum(dim=1)
    repulsion_free = F.cacr(x, beta=0.0, reduction="none")
    torch.testing.assert_close(repulsion_free, attraction)
    x4 = torch.randn(6, 4, 4, generator=g, dtype=F64)
    none = F.cacr(x4, reduction="none")
    assert torch.all(none <= 4.0) and torch.all(none >= -4.0)
