"""Multi-Similarity (with its miner) and the SuSana losses against the research oracles,
the official semantics and their own invariants."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.functional import MultiSimilarityMiner
from losslab.functional.metric_learning import icnn_score
from tests.reference import REFERENCE

F64 = torch.float64


def ms_batch():
    s = math.sqrt(1 - 0.55**2)
    e = torch.tensor([[1, 0, 0], [0.6, 0.8, 0], [0.55, 0, s], [0, 0, 1]], dtype=F64)
    return e, torch.tensor([0, 0, 1, 1])


def test_multi_similarity_research_values():
    e, y = ms_batch()
    # All pairs, pytorch-metric-learning's defaults.
    got = F.multi_similarity(e, y, alpha=2.0, beta=50.0, base=0.5, epsilon=None)
    assert abs(got.item() - 0.278607) < 5e-7
    # Mined with epsilon 0.1, the official loss: a quarter of the one-anchor value.
    for beta, want in ((50.0, 0.087662), (40.0, 0.088061)):
        got = F.multi_similarity(e, y, beta=beta)
        assert abs(got.item() - want) < 5e-7


def test_multi_similarity_one_anchor_values_and_pair_weights():
    # Anchor with one positive at cos 0.6 and one negative at 0.55, nothing mined away.
    for (a, b, lam), want in (
        ((2, 50, 0.5), 0.350647),
        ((2, 40, 0.5), 0.352243),
        ((2, 50, 1.0), 0.585550),
    ):
        s_pos, s_neg = 0.6, 0.55
        value = (
            math.log1p(math.exp(-a * (s_pos - lam))) / a
            + math.log1p(math.exp(b * (s_neg - lam))) / b
        )
        assert abs(value - want) < 5e-7
    e, y = ms_batch()
    x = e.clone().requires_grad_(True)
    parts = F.multi_similarity(x, y, beta=50.0, return_components=True, reduction="sum")
    # The miner keeps one positive and one negative pair, both of anchor 0.
    assert int(parts.positive_pairs) == 1 and int(parts.negative_pairs) == 1
    # The gradient of a pair is its GPW weight:
    # dL/dS+ = -sigmoid(-a (S - l)), dL/dS- = sigmoid(b (S - l)).
    s = torch.tensor([0.6, 0.55], dtype=F64, requires_grad=True)
    one = torch.stack(
        [
            torch.tensor([1.0, 0.0], dtype=F64),
            torch.stack([s[0], (1 - s[0] ** 2).sqrt()]),
            torch.stack([s[1], -(1 - s[1] ** 2).sqrt()]),
        ]
    )
    F.multi_similarity(one, torch.tensor([0, 0, 1]), beta=50.0, reduction="none")[0].backward()
    torch.testing.assert_close(
        s.grad, torch.tensor([-0.450166, 0.924142], dtype=F64), atol=1e-6, rtol=0
    )


def test_multi_similarity_mining_keeps_the_informative_pairs():
    # Anchor positives at [0.9, 0.5], negatives at [0.2, 0.45, 0.65]: keep {0.5} and {0.45, 0.65}.
    cos = [0.9, 0.5, 0.2, 0.45, 0.65]
    a = torch.tensor([1.0, 0.0], dtype=F64)
    others = torch.tensor([[c, math.sqrt(1 - c * c)] for c in cos], dtype=F64)
    e = torch.cat([a[None], others])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    none = F.multi_similarity(e, y, beta=50.0, reduction="none")
    want = (
        math.log1p(math.exp(-2 * (0.5 - 0.5))) / 2
        + math.log1p(math.exp(50 * (0.45 - 0.5)) + math.exp(50 * (0.65 - 0.5))) / 50
    )
    assert abs(none[0].item() - want) < 1e-9
    assert abs(want - 0.496586) < 5e-7


def test_miner_matches_the_built_in_mining_and_feeds_the_loss():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(12, 5, generator=g, dtype=F64)
    y = torch.randint(3, (12,), generator=g)
    pairs = MultiSimilarityMiner(0.1)(e, y)
    torch.testing.assert_close(F.multi_similarity(e, y, pairs=pairs), F.multi_similarity(e, y))
    want = REFERENCE["multi_similarity"](
        e[:, None].tolist(),
        y.tolist(),
        {"alpha": 2.0, "beta": 40.0, "base": 0.5, "epsilon": 0.1},
        pairs=[p.tolist() for p in pairs],
    )
    torch.testing.assert_close(
        F.multi_similarity(e, y, pairs=pairs, reduction="none"), torch.tensor(want, dtype=F64)
    )
    with pytest.raises(ValueError, match=r"^multi_similarity: pairs expected row indices"):
        F.multi_similarity(e, y, pairs=(pairs[0], pairs[1] + 100, pairs[2], pairs[3]))
    with pytest.raises(TypeError, match=r"^multi_similarity: pairs expected a tuple"):
        F.multi_similarity(e, y, pairs=pairs[:2])


def test_multi_similarity_single_class_is_attached_zero_with_counts():
    e = torch.randn(5, 4, dtype=F64, requires_grad=True)
    parts = F.multi_similarity(e, torch.zeros(5, dtype=torch.long), return_components=True)
    assert parts.loss.item() == 0.0 and parts.loss.requires_grad
    assert int(parts.positive_pairs) == 0 and int(parts.negative_pairs) == 0


def test_proto_triplet_research_value_and_zero_past_the_margin():
    e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, 0.0]], dtype=F64)
    support = torch.tensor([True, False, True])
    y = torch.tensor([0, 0, 1])
    got = F.proto_triplet(e, y, support=support, return_components=True)
    assert abs(got.loss.item() - 0.200998) < 5e-7 and int(got.queries) == 1
    far = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]], dtype=F64)
    assert F.proto_triplet(far, y, support=support).item() == 0.0


def test_proto_triplet_support_matches_oracle_and_validates():
    g = torch.Generator().manual_seed(1)
    e = torch.randn(10, 2, 3, generator=g, dtype=F64)
    y = torch.randint(3, (10,), generator=g)
    sup = torch.rand(10, generator=g) < 0.5
    want = REFERENCE["proto_triplet"](e.tolist(), y.tolist(), {"margin": 0.5}, support=sup.tolist())
    got = F.proto_triplet(e, y, support=sup, reduction="none")
    torch.testing.assert_close(
        got, torch.tensor([0.0 if v is None else v for v in want], dtype=F64)
    )
    with pytest.raises(TypeError, match=r"^proto_triplet: support expected a bool tensor"):
        F.proto_triplet(e, y, support=sup.float())


def test_icnn_perfect_clusters_and_range():
    # 5-way 5-shot, same-class points coincide at 10 e_k: the official modified_score
    # gives 0.9999823223306 on this input (its float32 count guards move the 13th digit).
    centres = torch.eye(5, dtype=F64) * 10
    x = centres.repeat_interleave(5, dim=0)
    y = torch.arange(5).repeat_interleave(5)
    psi = icnn_score(x, y, x, y, 4, None)
    assert abs(psi.item() - 0.9999823223306) < 1e-11
    assert abs(F.icnn(x, y).item() + math.log(0.9999823223306)) < 1e-11
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        r = torch.randn(20, 6, generator=g, dtype=F64)
        ry = torch.randint(4, (20,), generator=g)
        assert 0.0 <= icnn_score(r, ry, r, ry, 4, None).item() <= 1.0


def test_icnn_query_support_matches_oracle():
    g = torch.Generator().manual_seed(3)
    e = torch.randn(12, 1, 3, generator=g, dtype=F64)
    y = torch.randint(3, (12,), generator=g)
    sup = torch.arange(12) < 8
    want = REFERENCE["icnn"](e.tolist(), y.tolist(), {"k": 4, "ipc": None}, support=sup.tolist())
    torch.testing.assert_close(F.icnn(e, y, support=sup), torch.tensor(want[0], dtype=F64))
