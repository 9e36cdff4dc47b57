"""ArcFace, CosFace, SphereFace and UNPG against the research oracles; MarginHead."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.functional.angular_margin import tukey_keep
from losslab.heads import MarginHead
from tests.reference.naive_angular_margin import unpg_batch

F64 = torch.float64


def test_margin_logits_research_values():
    y = torch.tensor([0])
    arc = F.arcface_logits(torch.tensor([[0.0, 0.3]], dtype=F64), y, margin=0.5, scale=64.0)
    assert abs(arc[0, 0].item() - 64 * math.cos(math.pi / 2 + 0.5)) < 1e-5
    assert abs(arc[0, 0].item() + 30.683) < 1e-3 and abs(arc[0, 1].item() - 19.2) < 1e-12
    cos = F.cosface_logits(torch.tensor([[0.5, 0.1]], dtype=F64), y, margin=0.35, scale=64.0)
    torch.testing.assert_close(cos, torch.tensor([[9.6, 6.4]], dtype=F64))


def test_zero_margin_is_normalised_softmax():
    g = torch.Generator().manual_seed(0)
    c = torch.rand(6, 5, generator=g, dtype=F64) * 2 - 1
    y = torch.randint(5, (6,), generator=g)
    ce = torch.nn.functional.cross_entropy(16 * c, y)
    torch.testing.assert_close(F.arcface(c, y, margin=0.0, scale=16.0), ce)
    torch.testing.assert_close(F.cosface(c, y, margin=0.0, scale=16.0), ce)
    torch.testing.assert_close(F.sphereface(c, y, margin=1, scale=16.0), ce)


def test_arcface_fallback_keeps_the_target_logit_decreasing():
    cos = torch.linspace(-1, 1, 201, dtype=F64)[:, None]
    y = torch.zeros(201, dtype=torch.long)
    with_fb = F.arcface_logits(cos, y, margin=0.5, scale=1.0)[:, 0]
    assert torch.all(with_fb[1:] >= with_fb[:-1])
    without = F.arcface_logits(cos, y, margin=0.5, scale=1.0, fallback=False)[:, 0]
    assert not torch.all(without[1:] >= without[:-1])


def test_sphereface_psi_is_monotone():
    cos = torch.linspace(-1, 1, 401, dtype=F64)[:, None]
    psi = F.sphereface_logits(cos, torch.zeros(401, dtype=torch.long), margin=4, scale=1.0)[:, 0]
    assert torch.all(psi[1:] >= psi[:-1] - 1e-12)
    assert abs(psi[0].item() + 7.0) < 1e-5  # psi(pi) = (-1)^4 cos(4 pi) - 2 * 4 at k = 4


def test_tukey_filter_research_example():
    s = torch.tensor([-0.9, 0, 0.05, 0.1, 0.12, 0.15, 0.2, 0.95], dtype=F64)
    kept = tukey_keep(s, torch.ones(8, dtype=torch.bool), 1.5)
    assert s[kept].tolist() == [0, 0.05, 0.1, 0.12, 0.15, 0.2]


def test_unpg_research_value_and_monotone():
    # CosFace s=64 m=0.35, cosines [0.5 (target), 0.1], one generated negative at 0.2.
    cos = torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=F64)
    y = torch.tensor([0, 1])
    f = torch.tensor([[1.0, 0.0], [0.2, math.sqrt(1 - 0.04)]], dtype=F64)
    cfg = dict(margin_type="cosface", margin=0.35, scale=64.0, reduction="none")
    plain = F.unpg(cos, y, **cfg)
    assert abs(plain[0].item() - 0.039953) < 1e-6
    got = F.unpg(cos, y, embeddings=f, return_components=True, **cfg)
    assert abs(got.loss[0].item() - 3.241549) < 1e-6 and int(got.negative_pairs) == 1
    assert torch.all(got.loss > plain)
    # One class: no generated pairs, plain CosFace.
    same = torch.tensor([0, 0])
    torch.testing.assert_close(F.unpg(cos, same, embeddings=f, **cfg), F.unpg(cos, same, **cfg))


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"margin_type": "cosface", "margin": 0.35, "whisker": None},
        {"whisker": 0.5, "scale": 8.0},
    ],
)
def test_unpg_batch_oracle(cfg):
    g = torch.Generator().manual_seed(1)
    n, c, d = 12, 4, 6
    f = torch.randn(n, d, generator=g, dtype=F64)
    cos = torch.rand(n, c, generator=g, dtype=F64) * 2 - 1
    y = torch.randint(c, (n,), generator=g)
    full = {"margin": 0.5, "scale": 64.0, "margin_type": "arcface", "whisker": 1.5, **cfg}
    want = unpg_batch(cos.tolist(), y.tolist(), f.tolist(), full)
    got = F.unpg(cos, y, embeddings=f, reduction="none", **cfg)
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64))
    y_masked = y.clone()
    y_masked[:3] = -1
    dropped = F.unpg(cos[3:], y[3:], embeddings=f[3:], reduction="none", **cfg)
    masked = F.unpg(cos, y_masked, embeddings=f, ignore_index=-1, reduction="none", **cfg)
    torch.testing.assert_close(masked[3:], dropped)


def test_unpg_bad_embeddings_and_gather_without_group():
    cos, y = torch.rand(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"^unpg: embeddings expected shape \(3, D\)"):
        F.unpg(cos, y, embeddings=torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"^unpg: gather expected \"none\" without"):
        F.unpg(cos, y, embeddings=torch.randn(3, 5), gather="all")


@pytest.mark.parametrize("loss", ["arcface", "cosface", "sphereface", "unpg"])
def test_margin_head_equals_the_loss_on_its_cosines(loss):
    torch.manual_seed(0)
    head = MarginHead(6, 4, loss=loss, scale=8.0).double()
    f = torch.randn(5, 6, dtype=F64)
    y = torch.tensor([0, 1, 2, 3, 0])
    cos = (
        torch.nn.functional.normalize(f, dim=1)
        @ torch.nn.functional.normalize(head.weight, dim=1).T
    )
    extra = {"embeddings": f} if loss == "unpg" else {}
    want = getattr(F, loss)(cos, y, scale=8.0, **extra)
    torch.testing.assert_close(head(f, y), want)
    ce = torch.nn.functional.cross_entropy(head.logits(f, y), y)
    if loss != "unpg":
        torch.testing.assert_close(ce, want)
    head(f, y).backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
    with pytest.raises(ValueError, match=r"^MarginHead: loss expected one of"):
        MarginHead(6, 4, loss="ce")
    with pytest.raises(ValueError, match=rf"^{loss}: scale expected"):
        MarginHead(6, 4, loss=loss, scale=-1.0)
