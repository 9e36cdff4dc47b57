"""Per-cell calibration (temperature scaling fitted on the noisy validation split) and
neural-collapse diagnostics, measured once on the reported weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.bench.backends import InProcessBackend
from losslab.bench.cell import run_cell
from losslab.bench.cell_metrics import penultimate, temperature_scaling_metrics
from losslab.bench.grid import GridSpec
from losslab.bench.runner import run_grid
from losslab.bench.store import ResultStore

TS_COLUMNS = ("test_ece_ts", "test_nll_ts", "ts_temperature")
NC_COLUMNS = ("nc1", "nc2", "nc3", "nc4")


def _grid(**over):
    spec = dict(
        name="calib",
        datasets=["digits"],
        corruptions=["clean", "uniform:0.4"],
        losses=["ce"],
        seeds=[0],
        lrs=[1e-2],
        model="mlp",
        train={"epochs": 3, "batch_size": 256, "patience": None},
    )
    return GridSpec(**{**spec, **over})


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("calib") / "r.duckdb")
    run_grid(_grid(), store, InProcessBackend())
    return {r["corruption"]: r for r in store.rows()}


def test_ts_columns_are_stored(rows):
    for r in rows.values():
        for c in TS_COLUMNS:
            assert r[c] is not None and math.isfinite(r[c]), c
        assert r["ts_temperature"] > 0
        assert r["test_ece_ts"] == r["metrics"]["ts"]["test_ece"]
        # not asked for: no diagnostics
        assert all(r[c] is None for c in NC_COLUMNS)
        assert "diagnostics" not in r["metrics"]


def test_ts_never_increases_validation_nll(rows):
    for r in rows.values():
        assert r["metrics"]["ts"]["val_nll"] <= r["val_nll"] + 1e-12


def test_ts_temperature_follows_the_noise(rows):
    # 40% flipped validation labels: the NLL-optimal temperature softens the model
    # (T > 1) far more than on clean labels
    assert rows["uniform:0.4"]["ts_temperature"] > 1.0
    assert rows["uniform:0.4"]["ts_temperature"] > rows["clean"]["ts_temperature"]


def _oracle_temperature(z, y):
    """Grid search of the validation NLL over log T (float64 numpy)."""
    ts = np.exp(np.linspace(np.log(0.05), np.log(20.0), 4001))
    best = min(ts, key=lambda t: _nll(z / t, y))
    return best


def _nll(z, y):
    m = z.max(1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def _ece(z, y, bins=15):
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            out += m.sum() / len(y) * abs(conf[m].mean() - (pred[m] == y[m]).mean())
    return out


def test_ts_metrics_match_a_grid_search_oracle():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(4, (900,), generator=g)
    z = 3 * (2 * torch.nn.functional.one_hot(y, 4) + torch.randn(900, 4, generator=g))
    zv, yv, zt, yt = z[:300], y[:300], z[300:], y[300:]
    out = temperature_scaling_metrics(zv, yv, zt, yt)
    t = _oracle_temperature(zv.double().numpy(), yv.numpy())
    assert out["temperature"] == pytest.approx(t, rel=2e-3)
    zt64 = zt.double().numpy() / out["temperature"]
    assert out["test_nll"] == pytest.approx(_nll(zt64, yt.numpy()), rel=1e-9)
    assert out["test_ece"] == pytest.approx(_ece(zt64, yt.numpy()), abs=1e-9)
    assert out["val_nll"] <= _nll(zv.double().numpy(), yv.numpy())


def test_ts_on_a_single_class_validation_split_is_skipped_not_fatal():
    z, y = torch.randn(20, 3), torch.zeros(20, dtype=torch.long)
    out = temperature_scaling_metrics(z, y, z, y)
    assert math.isnan(out["temperature"]) and math.isnan(out["test_ece"])
    assert "at least two different classes" in out["skipped"]


def test_diagnostics_are_finite_and_change_nothing_else():
    grid = _grid(corruptions=["uniform:0.4"])
    cell = grid.cell("digits", "uniform:0.4", "ce", {}, 1e-2, 0)
    with_nc = GridSpec(**{**_grid().to_dict(), "diagnostics": True})
    cell_nc = with_nc.cell("digits", "uniform:0.4", "ce", {}, 1e-2, 0)
    plain, diag = run_cell(cell), run_cell(cell_nc)
    assert cell.key != cell_nc.key
    for c in NC_COLUMNS:
        assert diag[c] is not None and math.isfinite(diag[c]), c
    assert 0.0 <= diag["nc4"] <= 1.0 and diag["nc1"] > 0
    nc = diag["metrics"]["diagnostics"]
    assert set(nc) == {"train_noisy", "train_clean"}
    assert nc["train_noisy"]["num_samples"] == diag["config"]["data"]["n_train"]
    assert nc["train_noisy"]["nc1"] == diag["nc1"]
    # the diagnostics run after training and draw no random numbers
    assert diag["curves"] == plain["curves"]
    assert {k: v for k, v in diag["metrics"].items() if k != "diagnostics"} == plain["metrics"]


def test_penultimate_features_are_the_classifier_inputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)
    ).eval()
    X = torch.randn(10, 5)
    h, head = penultimate(model, X, 3, chunk=4)
    assert head is model[2]
    torch.testing.assert_close(h, torch.relu(model[0](X)))
    torch.testing.assert_close(head(h), model(X))
    with pytest.raises(ValueError, match=r"final nn\.Linear with 4 outputs"):
        penultimate(model, X, 4)
