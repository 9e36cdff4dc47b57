"""The correctness-aware loss and calibrator: a plain-Python oracle, the reference
code's conventions, degenerate batches, gradient signs, features and the fit."""

from __future__ import annotations

import math

import pytest
import torch

from losslab.calibration import (
    CorrectnessAwareCalibrator,
    TemperatureScaling,
    ca_features,
    ca_loss,
)
from losslab.metrics import ece

F64 = torch.float64


def oracle(z, y, weights=None, correct=None):
    """The reference code's objective, written out: sum w (c_hat - c)^2 / sum w with
    w = 1 - a for correct and a for wrong samples (times the sample weight)."""
    n = len(z)
    s = weights or [1.0] * n
    conf, hit = [], []
    for i, row in enumerate(z):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        conf.append(max(e) / sum(e))
        pred = row.index(m)
        hit.append(float(pred == y[i]) if correct is None else float(correct[i]))
    a = sum(si * ci for si, ci in zip(s, hit, strict=True)) / sum(s)
    w = [si * (ci * (1 - a) + (1 - ci) * a) for si, ci in zip(s, hit, strict=True)]
    num = sum(wi * (p - c) ** 2 for wi, p, c in zip(w, conf, hit, strict=True))
    return num / sum(w), w, conf, hit


def sample(seed, n=12, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=F64) * 2, torch.randint(c, (n,), generator=g)


@pytest.mark.parametrize("seed", range(5))
def test_oracle(seed):
    z, y = sample(seed)
    want, w, conf, hit = oracle(z.tolist(), y.tolist())
    assert float(ca_loss(z, y)) == pytest.approx(want, rel=1e-12)
    per = [wi * (p - c) ** 2 for wi, p, c in zip(w, conf, hit, strict=True)]
    torch.testing.assert_close(ca_loss(z, y, reduction="none"), torch.tensor(per, dtype=F64))
    assert float(ca_loss(z, y, reduction="sum")) == pytest.approx(sum(per), rel=1e-12)


def test_oracle_with_sample_weights_and_given_correctness():
    z, y = sample(7)
    sw = torch.rand(12, generator=torch.Generator().manual_seed(1), dtype=F64)
    correct = torch.tensor([1, 0] * 6, dtype=torch.bool)
    want, *_ = oracle(z.tolist(), y.tolist(), sw.tolist(), correct.tolist())
    got = ca_loss(z, y, sample_weight=sw, correct=correct)
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_balanced_mean_is_half_correct_half_wrong():
    z, y = sample(8, n=40)
    p = torch.softmax(z, 1)
    conf, hit = p.amax(1), z.argmax(1) == y
    want = 0.5 * ((1 - conf[hit]) ** 2).mean() + 0.5 * (conf[~hit] ** 2).mean()
    torch.testing.assert_close(ca_loss(z, y), want)


def test_confident_correct_and_uniform_wrong():
    # c_hat = 1 on the correct elements, the least possible 1/C on the wrong ones.
    z = torch.tensor([[60.0, 0, 0, 0], [0, 60.0, 0, 0], [0, 0, 0, 0]], dtype=F64)
    y = torch.tensor([0, 1, 3])  # the uniform row predicts class 0 (first maximum): wrong
    assert float(ca_loss(z, y)) == pytest.approx(0.5 * 0.25**2, rel=1e-12)
    assert float(ca_loss(z[:2], y[:2])) == 0.0  # no wrong element: attached 0


@pytest.mark.parametrize("case", ["all correct", "all wrong", "empty", "zero weights"])
def test_degenerate_batches_give_an_attached_zero_with_counts(case):
    z, y = sample(9, n=6)
    pred = z.argmax(1)
    kw = {}
    if case == "all correct":
        y = pred
    elif case == "all wrong":
        y = (pred + 1) % 4
    elif case == "empty":
        z, y = z[:0], y[:0]
    else:
        kw["sample_weight"] = torch.zeros(6, dtype=F64)
    z = z.clone().requires_grad_(True)
    out = ca_loss(z, y, return_components=True, **kw)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    assert torch.all(z.grad == 0)
    counts = {"all correct": (6, 0), "all wrong": (0, 6), "empty": (0, 0), "zero weights": (0, 0)}
    assert (out.n_correct.item(), out.n_wrong.item()) == counts[case]


def test_gradient_sign_with_respect_to_the_temperature():
    # Raising T lowers c_hat: it lowers the loss of a wrong sample, raises a correct one's.
    z = torch.tensor([[2.0, 0.5, -1.0], [1.0, 0.2, 0.1]], dtype=F64)
    y = torch.tensor([0, 1])  # first correct, second wrong
    t = torch.ones(2, dtype=F64, requires_grad=True)
    ca_loss(z / t.unsqueeze(1), y, correct=torch.tensor([True, False])).backward()
    assert t.grad[0] > 0 and t.grad[1] < 0


def test_half_precision_and_spatial_dims():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(2, 3, 5, generator=g, dtype=F64)
    y = torch.randint(3, (2, 5), generator=g)
    flat = ca_loss(z.movedim(1, -1).reshape(-1, 3), y.reshape(-1), reduction="none")
    torch.testing.assert_close(ca_loss(z, y, reduction="none").reshape(-1), flat)
    half = ca_loss(z.half(), y)
    assert half.dtype == torch.float32
    assert float(half) == pytest.approx(float(ca_loss(z.half().double(), y)), rel=1e-5)


@pytest.mark.slow
def test_compiles_fullgraph():
    # The value checks are skipped while compiling; no data-dependent branch remains.
    z, y = sample(10, n=16)
    torch._dynamo.reset()
    compiled = torch.compile(ca_loss, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z.float(), y), ca_loss(z.float(), y))


BAD = [
    ({"logits": [[1.0, 2.0]]}, TypeError, "logits expected a float tensor"),
    ({"logits": torch.zeros(3)}, TypeError, "logits expected a float tensor"),
    ({"target": torch.zeros(4)}, TypeError, "target expected an int64 tensor"),
    ({"target": torch.zeros(3, dtype=torch.long)}, ValueError, r"target expected class .* \(4,\)"),
    ({"target": torch.full((4,), 7)}, ValueError, r"target expected class indices in \[0, 2\]"),
    ({"logits": torch.full((4, 3), float("nan"))}, ValueError, "logits expected finite values"),
    ({"reduction": "avg"}, ValueError, "reduction expected one of"),
    ({"sample_weight": -torch.ones(4)}, ValueError, "sample_weight expected finite non-negative"),
    ({"sample_weight": torch.ones(3)}, ValueError, r"sample_weight expected a tensor .* \(4,\)"),
    ({"correct": torch.full((4,), 2.0)}, ValueError, "correct expected 0/1 or boolean values"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "exc", "match"), BAD)
def test_bad_input_is_one_clear_error(change, exc, match):
    kw = {"logits": torch.zeros(4, 3), "target": torch.zeros(4, dtype=torch.long), **change}
    with pytest.raises(exc, match=rf"^ca_loss: {match}"):
        ca_loss(kw.pop("logits"), kw.pop("target"), **kw)


# ----------------------------------------------------------------------------- features


def test_features_without_and_with_views():
    z, _ = sample(11, n=5, c=6)
    u = ca_features(z, k=3)
    top = torch.softmax(z, 1).sort(1, descending=True).values[:, :3]
    torch.testing.assert_close(u, top)
    views = [z.flip(1), z * 0.5, z + 1.0]
    u = ca_features(z, views, k=4)
    assert u.shape == (5, 12)
    idx = z.topk(4, dim=1).indices
    torch.testing.assert_close(u[:, 4:8], torch.softmax(z * 0.5, 1).gather(1, idx))
    torch.testing.assert_close(u[:, 8:], torch.softmax(z, 1).gather(1, idx))  # shift-invariant
    assert ca_features(z[:, :2], k=4).shape == (5, 2)
    with pytest.raises(ValueError, match=r"^ca_features: views\[0\] expected logits of shape"):
        ca_features(z, [z[:, :3]])
    with pytest.raises(ValueError, match=r"^ca_features: k expected an integer >= 1"):
        ca_features(z, k=0)


# ----------------------------------------------------------------------------- calibrator


def difficulty_data(n, seed):
    """10 classes, per-sample difficulty, logits 3x the scale of the evidence."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(10, (n,), generator=g)
    hard = torch.rand(n, 1, generator=g, dtype=F64)
    x = torch.nn.functional.one_hot(y, 10) * (2.5 - 2 * hard)
    return 3 * (x + torch.randn(n, 10, generator=g, dtype=F64)), y


def test_fit_lowers_the_ca_loss_and_the_test_ece():
    zv, yv = difficulty_data(3000, 1)
    zt, yt = difficulty_data(6000, 2)
    cal = CorrectnessAwareCalibrator().fit(zv, yv)
    correct = zv.argmax(1) == yv
    assert float(ca_loss(cal.transform(zv), yv, correct=correct)) < 0.9 * float(ca_loss(zv, yv))
    assert ece(cal.transform(zt), yt) < 0.25 * ece(zt, yt)
    t = cal.temperatures(zt)
    assert t.shape == (6000,) and bool((t >= 0.1).all() and (t <= 10).all())
    assert t.std() > 0  # per-sample temperatures
    assert torch.equal(cal.transform(zt).argmax(1), zt.argmax(1))


def test_fit_is_deterministic_and_starts_at_the_identity():
    zv, yv = difficulty_data(500, 3)
    a = CorrectnessAwareCalibrator(epochs=3, seed=5).fit(zv, yv)
    b = CorrectnessAwareCalibrator(epochs=3, seed=5).fit(zv, yv)
    torch.testing.assert_close(a.transform(zv), b.transform(zv), rtol=0, atol=0)
    # One step of size lr from T = 1: the temperatures are still close to 1.
    one = CorrectnessAwareCalibrator(epochs=1, batch_size=500, lr=1e-6).fit(zv, yv)
    torch.testing.assert_close(one.temperatures(zv), torch.ones(500, dtype=F64), atol=1e-5, rtol=0)


def test_features_given_at_fit_are_needed_at_transform():
    zv, yv = difficulty_data(400, 4)
    views = [zv + 0.3 * torch.randn_like(zv) for _ in range(3)]
    feats = ca_features(zv, views)
    cal = CorrectnessAwareCalibrator(epochs=5).fit(zv, yv, features=feats)
    assert cal.w1.shape[1] == 12
    assert cal.transform(zv, features=feats).shape == zv.shape
    with pytest.raises(ValueError, match=r"^CorrectnessAwareCalibrator\.transform: features "):
        cal.transform(zv)  # the default features have 4 columns, not 12
    with pytest.raises(ValueError, match=r"features expected a float array of shape \(400, F\)"):
        cal.transform(zv, features=feats[:10])


def test_fit_needs_correct_and_wrong_predictions():
    z, y = difficulty_data(100, 5)
    with pytest.raises(
        ValueError, match="target expected both correct and wrong predictions, got only correct"
    ):
        CorrectnessAwareCalibrator().fit(z, z.argmax(1))
    assert TemperatureScaling().fit(z, y).temperature > 0  # a usual split is fine
