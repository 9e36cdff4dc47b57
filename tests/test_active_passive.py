"""Family tests of NCE, AGCE, AUL and their active-passive sums."""

from __future__ import annotations

import math

import pytest
import torch

import losslab
from losslab import functional as F
from tests.helpers import p_target
from tests.helpers import seeded_logits as logits

F64 = torch.float64


# ----------------------------------------------------------------------------- nce


def test_nce_sums_to_one_over_labels():
    z, _ = logits(0, c=6, scale=4.0)
    total = sum(F.nce(z, torch.full((8,), k), reduction="none") for k in range(6))
    torch.testing.assert_close(total, torch.ones(8, dtype=F64))


def test_nce_of_uniform_prediction_is_one_over_c():
    z = torch.zeros(3, 4, dtype=F64)
    got = F.nce(z, torch.tensor([0, 1, 3]), reduction="none")
    torch.testing.assert_close(got, torch.full((3,), 0.25, dtype=F64))


def test_nce_is_ce_over_the_sum_of_ce():
    z, y = logits(1)
    ce_all = -torch.log_softmax(z, dim=1)
    want = ce_all.gather(1, y[:, None]).squeeze(1) / ce_all.sum(1)
    torch.testing.assert_close(F.nce(z, y, reduction="none"), want)


def test_nce_refuses_masked_classes_and_single_class():
    z = torch.tensor([[0.0, float("-inf"), 1.0]])
    with pytest.raises(ValueError, match="nce_rce: logits expected finite values"):
        F.nce_rce(z, torch.tensor([0]))
    with pytest.raises(ValueError, match="nce: logits expected at least 2 classes"):
        F.nce(torch.zeros(2, 1), torch.tensor([0, 0]))


# ----------------------------------------------------------------------------- sums


def test_nce_rce_is_alpha_nce_plus_beta_rce():
    z, y = logits(2)
    want = 10.0 * F.nce(z, y, reduction="none") + 0.1 * F.rce(z, y, reduction="none")
    torch.testing.assert_close(F.nce_rce(z, y, alpha=10.0, beta=0.1, reduction="none"), want)


def test_nce_rce_symmetric_constant():
    z, _ = logits(3, c=4)
    total = sum(F.nce_rce(z, torch.full((8,), k), reduction="none") for k in range(4))
    torch.testing.assert_close(total, torch.full((8,), 1.0 + 3 * 4 * math.log(10), dtype=F64))


@pytest.mark.parametrize(("name", "part"), [("nce_agce", "agce"), ("nce_aul", "aul")])
def test_nce_asymmetric_sums(name, part):
    z, y = logits(4)
    q = torch.softmax(torch.randn(8, 5, dtype=F64), dim=1)
    cfg = dict(losslab.loss_info(name).defaults)
    alpha, beta = cfg.pop("alpha"), cfg.pop("beta")
    for target in (y, q):
        want = alpha * F.nce(z, target, reduction="none") + beta * getattr(F, part)(
            z, target, **cfg, reduction="none"
        )
        got = getattr(F, name)(z, target, reduction="none")
        torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------------- agce / aul


def test_agce_and_aul_closed_forms():
    z, y = logits(5)
    p = p_target(z, y)
    a, q = 0.6, 0.6
    want = ((a + 1) ** q - (a + p) ** q) / q
    torch.testing.assert_close(F.agce(z, y, a=a, q=q, reduction="none"), want)
    a, q = 5.5, 3.0
    want = ((a - p) ** q - (a - 1) ** q) / q
    torch.testing.assert_close(F.aul(z, y, a=a, q=q, reduction="none"), want)


@pytest.mark.parametrize(
    ("name", "cfg", "top"),
    [
        ("agce", {"a": 0.6, "q": 0.6}, (1.6**0.6 - 0.6**0.6) / 0.6),
        ("aul", {"a": 5.5, "q": 3.0}, (5.5**3 - 4.5**3) / 3),
    ],
)
def test_agce_aul_range_endpoints(name, cfg, top):
    fn = getattr(F, name)
    y = torch.tensor([0])
    right = torch.tensor([[1e4, 0.0, 0.0]], dtype=F64)
    wrong = torch.tensor([[-1e4, 0.0, 0.0]], dtype=F64)
    assert fn(right, y, **cfg).item() == pytest.approx(0.0, abs=1e-300)
    assert fn(wrong, y, **cfg).item() == pytest.approx(top, rel=1e-12)


def test_official_cifar10_defaults():
    info = losslab.loss_info
    assert info("agce").defaults == {"a": 0.6, "q": 0.6}
    assert info("aul").defaults == {"a": 5.5, "q": 3.0}
    assert info("nce_rce").defaults == {"alpha": 1.0, "beta": 1.0}
    assert info("nce_agce").defaults == {"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}
    assert info("nce_aul").defaults == {"alpha": 1.0, "beta": 4.0, "a": 6.3, "q": 1.5}


@pytest.mark.parametrize("name", ["agce", "aul", "nce_agce", "nce_aul"])
def test_asymmetric_losses_have_no_p_hyperparameter(name):
    # In the ALFs code only ANormLoss (the asymmetric norm loss) has a `p`; AGCE and AUL
    # are parametrised by (a, q) alone.
    with pytest.raises(TypeError, match=rf"{name}: unknown hyperparameter\(s\) \['p'\]"):
        losslab.build_loss(name, p=0.7)


def test_aul_rejects_a_at_most_one():
    z, y = logits(6)
    with pytest.raises(ValueError, match=r"^aul: a expected a real number in \(1, inf\)"):
        F.aul(z, y, a=1.0)
