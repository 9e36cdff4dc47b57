"""The contract of the binary kind, for every registered binary / multi-label loss.

Set-level losses (``SET_LEVEL`` in ``tests/reference/base.py``: an element's loss depends
on the rest of the batch) are compared with their batch oracles, which take the valid
elements and their weights at once; every other rule is the same for them.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE
from tests.reference.base import SET_LEVEL

F64 = torch.float64
BINARY = losslab.list_losses(kind="binary")


@pytest.fixture(params=loss_configs(BINARY), ids=config_id)
def binary_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def scores(seed: int, n: int = 6, labels: int = 3, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, labels, generator=g, dtype=F64) * scale
    return (
        x,
        torch.randint(2, (n, labels), generator=g),
        torch.rand(n, labels, generator=g, dtype=F64),
    )


def oracle(spec, cfg, x, t, pos_weight=None, weight=None, valid=None):
    """Expected per-element values before the reduction's weight; NaN marks the elements a
    set-level loss does not count (masked, or no defined value in the batch)."""
    pw = torch.ones_like(x) if pos_weight is None else pos_weight.expand_as(x)
    if spec.name not in SET_LEVEL:
        flat = [
            REFERENCE[spec.name](float(a), float(b), cfg, float(w))
            for a, b, w in zip(x.flatten(), t.double().flatten(), pw.flatten(), strict=True)
        ]
        return torch.tensor(flat, dtype=F64).reshape(x.shape)
    keep = torch.ones_like(x, dtype=torch.bool) if valid is None else valid
    w = torch.ones_like(x) if weight is None else weight.expand_as(x)
    got = REFERENCE[spec.name](
        x[keep].tolist(), t.double()[keep].tolist(), cfg, w[keep].tolist(), pw[keep].tolist(), {}
    )
    out = torch.full(x.shape, float("nan"), dtype=F64)
    out[keep] = torch.tensor([float("nan") if v is None else v for v in got], dtype=F64)
    return out


def soft(spec) -> bool:
    return bool(spec.rule("soft_targets"))


def takes_pos_weight(spec) -> bool:
    return SET_LEVEL.get(spec.name, {}).get("pos_weight", True)


def assert_values(got, want):
    """``got`` equals ``want`` where ``want`` is a number and is 0 where it is NaN."""
    counted = ~torch.isnan(want)
    torch.testing.assert_close(got[counted], want[counted], rtol=1e-9, atol=1e-10)
    assert torch.all(got[~counted] == 0)


def test_oracle_hard_and_probability_targets(binary_config):
    spec, cfg = binary_config
    x, t, q = scores(0)
    for target in (t, q) if soft(spec) else (t,):
        got = spec.function(x, target, **cfg, reduction="none")
        assert_values(got, oracle(spec, cfg, x, target))
    pw = torch.tensor([0.5, 1.0, 3.0], dtype=F64)
    if not takes_pos_weight(spec):
        with pytest.raises(ValueError, match=rf"^{spec.name}: pos_weight expected None"):
            spec.function(x, t, **cfg, pos_weight=pw)
        return
    got = spec.function(x, t, **cfg, pos_weight=pw, reduction="none")
    assert_values(got, oracle(spec, cfg, x, t, pw))


def test_probability_targets_rejected_when_unsupported(binary_config):
    spec, cfg = binary_config
    if soft(spec):
        pytest.skip(f"{spec.name} accepts probability targets")
    x, t, q = scores(0)
    for target in (q, t.double()):
        with pytest.raises(ValueError, match=rf"^{spec.name}: target expected 0/1 labels"):
            spec.function(x, target, **cfg)


def test_one_dimensional_binary_scores(binary_config):
    spec, cfg = binary_config
    x, t, _ = scores(1, labels=1)
    torch.testing.assert_close(
        spec.function(x[:, 0], t[:, 0], **cfg, reduction="none"),
        spec.function(x, t, **cfg, reduction="none")[:, 0],
    )


def test_integer_targets_equal_float_targets(binary_config):
    spec, cfg = binary_config
    x, t, _ = scores(2)
    for red in ("none", "mean", "sum"):
        a = spec.function(x, t, **cfg, reduction=red)
        if soft(spec):
            torch.testing.assert_close(a, spec.function(x, t.double(), **cfg, reduction=red))
        torch.testing.assert_close(a, spec.function(x, t.bool(), **cfg, reduction=red))


def test_reduction_contract(binary_config):
    spec, cfg = binary_config
    x, t, _ = scores(3, n=8)
    t[2, 1] = -100
    t[5, 0] = -100
    w = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    sw = torch.rand(8, dtype=F64, generator=torch.Generator().manual_seed(4))
    opts = {"weight": w, "sample_weight": sw, "ignore_index": -100}
    none = spec.function(x, t, **cfg, reduction="none", **opts)
    valid = t != -100
    elem_w = w.expand_as(x) * sw[:, None]
    if spec.name in SET_LEVEL:
        # The weights and the mask enter the set's value; the reduction weighs it again.
        values = oracle(spec, cfg, x, torch.where(valid, t, 0), weight=elem_w, valid=valid)
        assert_values(none, values * elem_w)
        valid = valid & ~torch.isnan(values)
    else:
        base = spec.function(x, torch.where(valid, t, 0), **cfg, reduction="none")
        torch.testing.assert_close(none[valid], (base * elem_w)[valid])
    assert torch.all(none[~valid] == 0)
    torch.testing.assert_close(spec.function(x, t, **cfg, reduction="sum", **opts), none.sum())
    torch.testing.assert_close(
        spec.function(x, t, **cfg, reduction="mean", **opts), none.sum() / elem_w[valid].sum()
    )


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    drop=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_masking_equals_dropping(seed, n, drop):
    for name in BINARY:
        spec = losslab.loss_info(name)
        x, t, _ = scores(seed, n=n, labels=1)
        keep = ~torch.tensor(drop[:n])
        masked = spec.function(x[:, 0], torch.where(keep, t[:, 0], -1), ignore_index=-1)
        if keep.any():
            torch.testing.assert_close(masked, spec.function(x[keep, 0], t[keep, 0]))
        else:
            assert masked.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
def test_extreme_logits_finite_value_and_gradient(binary_config, scale, dtype):
    spec, cfg = binary_config
    if dtype != torch.float32 and abs(scale) > 1e4:
        pytest.skip("beyond the dtype's range")
    x, t, q = scores(5, scale=abs(scale))
    x[0] = scale
    for target in (t, q) if soft(spec) else (t,):
        z = x.to(dtype).requires_grad_(True)
        out = spec.function(z, target, **cfg)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(z.grad).all(), spec.name


def test_bad_binary_inputs(binary_config):
    spec, cfg = binary_config
    x, t, q = scores(6)
    name = spec.name
    cases = [
        ((x, t[:, :2]), {}, ValueError, r"target expected the logits' shape"),
        ((x, t * 2), {}, ValueError, r"target expected labels 0 or 1, got a value 2"),
        (
            (x, q + 1),
            {},
            ValueError,
            r"target expected probabilities in \[0, 1\]" if soft(spec) else r"target expected",
        ),
        (
            (x, t),
            {"pos_weight": torch.ones(4, dtype=F64)},
            ValueError,
            r"pos_weight expected a shape",
        ),
        (
            (x, t),
            {"pos_weight": -torch.ones(3, dtype=F64)},
            ValueError,
            r"pos_weight expected finite non-negative",
        ),
        ((x, t), {"weight": torch.ones(2, dtype=F64)}, ValueError, r"weight expected a shape"),
        (
            (x, t),
            {"sample_weight": torch.ones(5, dtype=F64)},
            ValueError,
            r"sample_weight expected shape",
        ),
        ((x, t), {"ignore_index": -100.5}, TypeError, r"ignore_index expected an int or None"),
        ((x, t.to(torch.complex64)), {}, TypeError, r"target expected"),
    ]
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)
