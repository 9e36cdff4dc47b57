"""Values and gradients equal pytorch-metric-learning's on random batches, for the losses
it ships: MultiSimilarityLoss (+ its miner), NTXentLoss, SupConLoss, ArcFaceLoss and
CosFaceLoss. Conventions that differ are set explicitly (degrees vs radians, the SupCon
base temperature, balanced batches where PML averages over pairs)."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.heads import MarginHead

pml = pytest.importorskip(
    "pytorch_metric_learning",
    reason="pytorch-metric-learning is not installed (pip install -e '.[dev]')",
)
from pytorch_metric_learning import losses as pml_losses  # noqa: E402
from pytorch_metric_learning import miners as pml_miners  # noqa: E402

F64 = torch.float64


def batch(seed: int, n: int = 12, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g, dtype=F64)
    # Balanced labels: every anchor has the same number of positives, so PML's mean over
    # positive pairs equals losslab's mean over anchors.
    y = torch.arange(4).repeat(n // 4)
    return e, y


def same_value_and_grad(ours, theirs, *tensors):
    leaves_a = [t.clone().requires_grad_(True) for t in tensors]
    leaves_b = [t.clone().requires_grad_(True) for t in tensors]
    a = ours(*leaves_a)
    b = theirs(*leaves_b)
    torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-10, atol=1e-12)
    a.backward()
    b.backward()
    for x, y in zip(leaves_a, leaves_b, strict=True):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_similarity_all_pairs_and_mined(seed):
    e, y = batch(seed)
    cfg = dict(alpha=2.0, beta=50.0, base=0.5)
    theirs = pml_losses.MultiSimilarityLoss(**cfg)
    same_value_and_grad(
        lambda x: F.multi_similarity(x, y, epsilon=None, **cfg), lambda x: theirs(x, y), e
    )
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    same_value_and_grad(
        lambda x: F.multi_similarity(x, y, epsilon=0.1, **cfg),
        lambda x: theirs(x, y, miner(x, y)),
        e,
    )
    # PML's miner feeds the losslab loss directly.
    same_value_and_grad(
        lambda x: F.multi_similarity(x, y, pairs=miner(x, y), **cfg),
        lambda x: theirs(x, y, miner(x, y)),
        e,
    )
    ours = F.MultiSimilarityMiner(0.1)(e, y)
    for a, b in zip(ours, miner(e, y), strict=True):
        assert sorted(a.tolist()) == sorted(b.tolist())


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent(temperature):
    e, y = batch(3)
    theirs = pml_losses.NTXentLoss(temperature=temperature)
    same_value_and_grad(
        lambda x: F.ntxent(x, y, temperature=temperature), lambda x: theirs(x, y), e
    )


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon(temperature):
    e, y = batch(4)
    theirs = pml_losses.SupConLoss(temperature=temperature)
    same_value_and_grad(
        lambda x: F.supcon(x, y, temperature=temperature, base_temperature=temperature),
        lambda x: theirs(x, y),
        e,
    )


@pytest.mark.parametrize(
    ("name", "margin", "pml_margin"), [("arcface", 0.5, math.degrees(0.5)), ("cosface", 0.35, 0.35)]
)
def test_margin_losses(name, margin, pml_margin):
    e, _ = batch(5)
    c = 5
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    cls = pml_losses.ArcFaceLoss if name == "arcface" else pml_losses.CosFaceLoss
    theirs = cls(num_classes=c, embedding_size=e.shape[1], margin=pml_margin, scale=16.0).double()
    w = theirs.W.detach().clone()  # (D, C) in PML

    def ours(x, weight):
        cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(weight, dim=0)
        return getattr(F, name)(cos, y, margin=margin, scale=16.0)

    same_value_and_grad(ours, lambda x, weight: _pml_with_weight(theirs, x, weight, y), e, w)
    head = MarginHead(e.shape[1], c, loss=name, margin=margin, scale=16.0).double()
    with torch.no_grad():
        head.weight.copy_(w.T)
    torch.testing.assert_close(head(e, y), theirs(e, y))


def _pml_with_weight(loss, x, weight, y):
    """PML's loss with its class weights replaced by ``weight`` (a leaf we differentiate)."""
    saved = loss.W
    try:
        del loss.W
        loss.W = weight
        return loss(x, y)
    finally:
        del loss.W
        loss.W = saved
