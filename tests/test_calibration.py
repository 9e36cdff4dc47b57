"""Post-hoc calibrators: optimality of the fit, validation NLL never worse, identity
cases, serialisation, errors; the before/after evaluation the benchmark records."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch

from losslab.calibration import (
    CorrectnessAwareCalibrator,
    DirichletScaling,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    evaluate_temperature_scaling,
)
from losslab.metrics import ece, nll

F64 = torch.float64
CE = torch.nn.functional.cross_entropy


def overconfident(n, k=4, seed=0, sharp=3.0):
    """Logits `sharp` times the Bayes logits of a Gaussian mixture (over-confident)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(k, (n,), generator=g)
    x = torch.nn.functional.one_hot(y, k) * 1.5 + torch.randn(n, k, generator=g, dtype=F64)
    return sharp * 1.5 * x, y


def factories():
    return {
        "temperature": TemperatureScaling,
        "vector": VectorScaling,
        "matrix": MatrixScaling,
        "matrix_odir": lambda: MatrixScaling(reg_lambda=1e-3, reg_mu=1e-3),
        "dirichlet": lambda: DirichletScaling(reg_lambda=1e-3, reg_mu=1e-3, reg_norm=True),
        "dirichlet_l2": lambda: DirichletScaling(reg_lambda=1e-3),
        "dirichlet_free": lambda: DirichletScaling(ref_row=False),
        "ca": lambda: CorrectnessAwareCalibrator(epochs=20),
    }


UNREGULARISED = ["temperature", "vector", "matrix", "dirichlet_free"]
REGULARISED = ["matrix_odir", "dirichlet", "dirichlet_l2"]


# ----------------------------------------------------------------------------- the fit


def test_temperature_is_the_nll_minimiser():
    z, y = overconfident(800, seed=1)
    ts = TemperatureScaling().fit(z, y)
    t = torch.tensor(ts.temperature, dtype=F64, requires_grad=True)
    loss = CE(z / t, y)
    (grad,) = torch.autograd.grad(loss, t)
    assert abs(float(grad)) < 1e-7
    for step in (1e-3, -1e-3):
        assert CE(z / (ts.temperature + step), y) > loss
    # Over-confident by 3: the fitted temperature is near 3 (finite-sample deviation).
    assert 2.5 < ts.temperature < 3.5


@pytest.mark.parametrize("name", ["vector", "matrix_odir", "dirichlet", "dirichlet_l2"])
def test_linear_maps_satisfy_first_order_optimality(name):
    z, y = overconfident(600, seed=2)
    cal = factories()[name]().fit(z, y)
    if name == "vector":
        v = cal.scale.clone().requires_grad_(True)
        b = cal.bias.clone().requires_grad_(True)
        loss = CE(z * v + b, y)
    else:
        v = cal.weight.clone().requires_grad_(True)
        b = cal.bias.clone().requires_grad_(True)
        loss = cal.objective(z, y, v, b)
    grads = torch.autograd.grad(loss, (v, b))
    assert max(float(g.abs().max()) for g in grads) < 1e-6


@pytest.mark.parametrize("name", UNREGULARISED)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sharp", [0.3, 1.0, 3.0])
def test_validation_nll_never_increases(name, seed, sharp):
    # Under- (0.3), well- (1) and over-confident (3) logits.
    z, y = overconfident(300, seed=seed, sharp=sharp)
    cal = factories()[name]().fit(z, y)
    assert nll(cal.transform(z), y) <= nll(z, y) + 1e-12


@pytest.mark.parametrize("name", REGULARISED)
@pytest.mark.parametrize("sharp", [0.3, 3.0])
def test_regularised_objective_never_above_the_identity(name, sharp):
    z, y = overconfident(300, seed=4, sharp=sharp)
    cal = factories()[name]().fit(z, y)
    eye, zero = torch.eye(4, dtype=F64), torch.zeros(4, dtype=F64)
    assert cal.objective(z, y, cal.weight, cal.bias) <= cal.objective(z, y, eye, zero) + 1e-12


def test_temperature_lowers_test_ece_of_overconfident_logits():
    zv, yv = overconfident(1000, seed=3)
    zt, yt = overconfident(4000, seed=4)
    ts = TemperatureScaling().fit(zv, yv)
    assert ece(ts.transform(zt), yt) < 0.5 * ece(zt, yt)
    assert torch.equal(ts.transform(zt).argmax(1), zt.argmax(1))


def test_calibrated_logits_are_left_nearly_alone():
    # Bayes logits of the mixture are calibrated: the fitted temperature is close to 1.
    z, y = overconfident(20_000, seed=5, sharp=1.0)
    assert TemperatureScaling().fit(z, y).temperature == pytest.approx(1.0, abs=0.05)


def test_temperature_bounds_on_separable_and_uninformative_data():
    # Separable: the NLL decreases towards T = 0; anti-informative: towards T = inf.
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 3.0]], dtype=F64)
    y = torch.tensor([0, 1, 0, 1])
    separable = TemperatureScaling(min_temperature=0.05).fit(z, y)
    assert 0.05 <= separable.temperature < 0.1
    assert nll(separable.transform(z), y) < 1e-9
    flipped = TemperatureScaling(max_temperature=50.0).fit(z, 1 - y)
    assert flipped.temperature == pytest.approx(50.0)
    assert nll(flipped.transform(z), 1 - y) < nll(z, 1 - y)


def test_identity_calibrator_at_temperature_one():
    z, _ = overconfident(50, seed=6)
    ts = TemperatureScaling()
    ts.fitted.fill_(True)  # an unfitted temperature is 1: the identity
    torch.testing.assert_close(ts.transform(z), z)
    assert ts.transform(z.float()).dtype == torch.float32
    assert ts.transform(z.half()).dtype == torch.float32


@pytest.mark.parametrize("name", sorted(factories()))
def test_transform_keeps_shapes_numpy_and_gradients(name):
    z, y = overconfident(400, seed=7)
    cal = factories()[name]().fit(z.numpy(), y.numpy())
    spatial = z[:12].reshape(3, 4, 4).movedim(-1, 1)  # (N, C, d): rows z[:12]
    out = cal.transform(spatial)
    assert out.shape == spatial.shape
    torch.testing.assert_close(out.movedim(1, -1).reshape(-1, 4), cal.transform(z[:12]))
    zz = z[:5].clone().requires_grad_(True)
    cal.transform(zz).sum().backward()
    assert zz.grad is not None and torch.isfinite(zz.grad).all()
    p = cal.predict_proba(z[:5])
    torch.testing.assert_close(p.sum(1), torch.ones(5, dtype=F64))


# ----------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("name", sorted(factories()))
def test_state_dict_round_trip_into_an_unfitted_calibrator(name):
    z, y = overconfident(400, seed=8)
    cal = factories()[name]().fit(z, y)
    state = cal.state_dict()
    fresh = factories()[name]()
    fresh.load_state_dict(state)
    assert fresh.is_fitted
    torch.testing.assert_close(fresh.transform(z), cal.transform(z), rtol=0, atol=0)
    for clone in (pickle.loads(pickle.dumps(cal)), copy.deepcopy(cal)):
        torch.testing.assert_close(clone.transform(z), cal.transform(z), rtol=0, atol=0)


def test_temperature_state_and_repr():
    ts = TemperatureScaling().fit(*overconfident(200, seed=9))
    assert set(ts.state_dict()) == {"fitted", "temperature_"}
    assert f"temperature={ts.temperature:.6g}" in repr(ts)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", sorted(factories()))
def test_too_few_samples_and_a_single_class_are_refused(name):
    cal = factories()[name]()
    where = type(cal).__name__
    z, y = overconfident(200, seed=10)
    with pytest.raises(ValueError, match=rf"^{where}\.fit: logits expected at least \d+ samples"):
        cal.fit(z[:1], y[:1])
    with pytest.raises(ValueError, match=rf"^{where}\.fit: target expected at least two"):
        cal.fit(z, torch.zeros_like(y))


def test_unregularised_maps_need_one_sample_per_parameter():
    z, y = overconfident(19, seed=11)
    with pytest.raises(ValueError, match=r"at least 20 samples \(one per parameter"):
        DirichletScaling().fit(z, y)
    DirichletScaling(reg_lambda=1e-2, reg_mu=1e-2).fit(z, y)
    with pytest.raises(ValueError, match=r"^VectorScaling\.fit: logits expected at least 8"):
        VectorScaling().fit(z[:7], y[:7])


BAD_FIT = [
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), ValueError, "logits expected shape"),
    (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), ValueError, "C >= 2 classes"),
    (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), TypeError, "floating"),
    (torch.full((4, 3), float("nan")), torch.arange(4) % 3, ValueError, "finite values"),
    (torch.zeros(4, 3), torch.zeros(4), TypeError, "target expected integer class indices"),
    (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), ValueError, r"shape \(4,\)"),
    (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), ValueError, r"indices in \[0, 2\]"),
    ("logits", torch.zeros(4, dtype=torch.long), TypeError, "numpy array or torch tensor"),
]


@pytest.mark.parametrize(("logits", "target", "exc", "match"), BAD_FIT)
@pytest.mark.parametrize("name", sorted(factories()))
def test_bad_fit_input_is_one_clear_error(name, logits, target, exc, match):
    cal = factories()[name]()
    with pytest.raises(exc, match=rf"^{type(cal).__name__}\.fit: .*{match}") as err:
        cal.fit(logits, target)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(factories()))
def test_transform_before_fit_and_on_other_classes(name):
    cal = factories()[name]()
    where = type(cal).__name__
    with pytest.raises(RuntimeError, match=rf"^{where}\.transform: self expected a fitted"):
        cal.transform(torch.zeros(2, 4))
    cal.fit(*overconfident(200, seed=12))
    if name != "temperature":
        with pytest.raises(ValueError, match=rf"^{where}\.transform: logits expected"):
            cal.transform(torch.zeros(2, 5))


def test_constructor_arguments_are_checked():
    cases = [
        (lambda: TemperatureScaling(min_temperature=0.0), "min_temperature expected"),
        (lambda: TemperatureScaling(min_temperature=2.0), "max_temperature expected bounds"),
        (lambda: TemperatureScaling(max_iter=0), "max_iter expected a positive int"),
        (lambda: DirichletScaling(reg_lambda=-1.0), "reg_lambda expected"),
        (lambda: DirichletScaling(reg_norm=1), "reg_norm expected a bool"),
        (lambda: CorrectnessAwareCalibrator(hidden=0), "hidden expected an integer >= 1"),
        (lambda: CorrectnessAwareCalibrator(lr=0.0), "lr expected"),
    ]
    for build, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            build()


# ----------------------------------------------------------------------------- bench helper


def test_evaluate_temperature_scaling_matches_its_parts():
    zv, yv = overconfident(500, seed=13)
    zt, yt = overconfident(1500, seed=14)
    r = evaluate_temperature_scaling(zv.numpy(), yv.numpy(), zt, yt, n_bins=10)
    ts = TemperatureScaling().fit(zv, yv)
    assert r.temperature == ts.temperature
    assert r.val_nll_after <= r.val_nll_before
    assert r.test_ece_before == pytest.approx(ece(zt, yt, n_bins=10))
    assert r.test_ece_after == pytest.approx(ece(ts.transform(zt), yt, n_bins=10))
    assert r.test_ece_after < r.test_ece_before
    assert r.test_nll_after == pytest.approx(nll(ts.transform(zt), yt))
    d = r.to_dict()
    assert d["test_reliability_after"]["count"] == r.test_reliability_after.count.tolist()
    assert all(isinstance(v, float) for k, v in d.items() if not k.startswith("test_reliability"))
    assert sum(d["test_reliability_before"]["count"]) == 1500


def test_evaluate_temperature_scaling_refuses_a_degenerate_validation_split():
    zt, yt = overconfident(100, seed=15)
    with pytest.raises(ValueError, match=r"^TemperatureScaling\.fit: target expected"):
        evaluate_temperature_scaling(zt, torch.zeros_like(yt), zt, yt)
    assert math.isfinite(evaluate_temperature_scaling(zt, yt, zt[:0], yt[:0]).val_nll_after)


def test_numpy_float32_inputs():
    z, y = overconfident(300, seed=16)
    ts = TemperatureScaling().fit(z.float().numpy(), y.numpy().astype(np.int32))
    assert ts.temperature == pytest.approx(TemperatureScaling().fit(z, y).temperature, rel=1e-5)
