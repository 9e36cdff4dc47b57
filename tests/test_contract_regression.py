"""The contract of the regression kind, for every registered regression loss.

Oracles are batch oracles (``tests/reference/base.py``): a regression loss may use the
whole batch (Balanced MSE's BMC estimates the label distribution from it).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE

F64 = torch.float64
REGRESSION = losslab.list_losses(kind="regression")


@pytest.fixture(params=loss_configs(REGRESSION), ids=config_id)
def regression_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def data(seed: int, n: int = 6, outputs: int = 2, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(n, outputs, generator=g, dtype=F64) * scale
    return target + torch.randn(n, outputs, generator=g, dtype=F64), target


def oracle(spec, cfg, pred, target, valid=None, extras=None):
    keep = torch.ones_like(pred, dtype=torch.bool) if valid is None else valid
    values = REFERENCE[spec.name](
        pred[keep].tolist(), target[keep].tolist(), cfg, [1.0] * int(keep.sum()), extras or {}
    )
    out = torch.zeros(pred.shape, dtype=F64)
    out[keep] = torch.tensor(values, dtype=F64)
    return out


def test_oracle(regression_config):
    spec, cfg = regression_config
    pred, target = data(0)
    got = spec.function(pred, target, **cfg, reduction="none")
    torch.testing.assert_close(got, oracle(spec, cfg, pred, target), rtol=1e-9, atol=1e-10)


def test_one_dimensional_equals_one_column(regression_config):
    spec, cfg = regression_config
    pred, target = data(1, outputs=1)
    torch.testing.assert_close(
        spec.function(pred[:, 0], target[:, 0], **cfg, reduction="none"),
        spec.function(pred, target, **cfg, reduction="none")[:, 0],
    )


def test_reduction_contract(regression_config):
    spec, cfg = regression_config
    pred, target = data(3, n=8)
    target[2, 1] = -100
    target[5, 0] = -100
    sw = torch.rand(8, dtype=F64, generator=torch.Generator().manual_seed(4))
    opts = {"sample_weight": sw, "ignore_index": -100}
    none = spec.function(pred, target, **cfg, reduction="none", **opts)
    valid = target != -100
    elem_w = sw[:, None].expand_as(pred)
    want = oracle(spec, cfg, pred, torch.where(valid, target, 0.0), valid) * elem_w
    torch.testing.assert_close(none, want, rtol=1e-9, atol=1e-10)
    assert torch.all(none[~valid] == 0)
    torch.testing.assert_close(
        spec.function(pred, target, **cfg, reduction="sum", **opts), none.sum()
    )
    torch.testing.assert_close(
        spec.function(pred, target, **cfg, reduction="mean", **opts),
        none.sum() / elem_w[valid].sum(),
    )


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    drop=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_masking_equals_dropping(seed, n, drop):
    for name in REGRESSION:
        spec = losslab.loss_info(name)
        pred, target = data(seed, n=n, outputs=1)
        keep = ~torch.tensor(drop[:n])
        masked = spec.function(pred[:, 0], torch.where(keep, target[:, 0], -1.0), ignore_index=-1)
        if keep.any():
            torch.testing.assert_close(masked, spec.function(pred[keep, 0], target[keep, 0]))
        else:
            assert masked.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_large_values_finite_value_and_gradient(regression_config, dtype):
    spec, cfg = regression_config
    pred, target = data(5, scale=100.0)
    pred[0, 0] = 1e3
    p = pred.to(dtype).requires_grad_(True)
    out = spec.function(p, target.to(dtype), **cfg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(p.grad).all(), spec.name


def test_bad_regression_inputs(regression_config):
    spec, cfg = regression_config
    pred, target = data(6)
    name = spec.name
    cases = [
        ((pred, target[:, :1]), {}, ValueError, r"target expected the predictions' shape"),
        ((pred, target.long()), {}, TypeError, r"target expected a floating-point tensor"),
        ((pred, torch.full_like(target, float("nan"))), {}, ValueError, r"target expected finite"),
        ((pred[:, :0], target[:, :0]), {}, ValueError, r"pred expected shape"),
        ((pred, target), {"ignore_index": -1.5}, TypeError, r"ignore_index expected an int"),
        (
            (pred, target),
            {"sample_weight": torch.ones(5, dtype=F64)},
            ValueError,
            r"sample_weight expected shape",
        ),
    ]
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)
