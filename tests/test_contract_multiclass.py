"""The contract of the multiclass kind, verified for every registered multi-class loss.

Parametrised over the registry (defaults plus each loss's declared test configs), so a
new loss is covered the moment it is registered. What holds for every kind (modules,
signatures, docs, compile, dtypes, state) is in ``test_contract_common.py``.

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
from losslab.registry import LossSpec
from tests.helpers import seeded_logits
from tests.reference import REFERENCE
from tests.reference.base import SET_LEVEL

F64 = torch.float64


def spec_and_cfg(param: tuple[str, dict]) -> tuple[LossSpec, dict]:
    name, overrides = param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def call(spec: LossSpec, z: torch.Tensor, y: torch.Tensor, cfg: dict, **kw) -> torch.Tensor:
    return spec.function(z, y, **cfg, **kw)


def inputs(
    seed: int, n: int = 6, c: int = 5, *, dtype=F64, scale: float = 2.0, extra: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    return seeded_logits(seed, n, c, scale, dtype=dtype, extra=extra)


def soft_target(seed: int, n: int, c: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.softmax(torch.randn(n, c, generator=g, dtype=F64) * 2, dim=1)


# ----------------------------------------------------------------------------- oracle


def oracle(spec: LossSpec, cfg: dict, z, y, weight=None) -> torch.Tensor:
    """Expected values of ``(N, C)`` logits before the reduction's weight; ``y`` holds int
    classes or probability rows. NaN marks the elements a set-level loss does not count."""
    targets = [int(v) if y.dim() == 1 else v.tolist() for v in y]
    if spec.name not in SET_LEVEL:
        return torch.tensor(
            [REFERENCE[spec.name](z[i].tolist(), targets[i], cfg) for i in range(len(z))],
            dtype=F64,
        )
    w = [1.0] * len(z) if weight is None else weight.tolist()
    got = REFERENCE[spec.name](z.tolist(), targets, cfg, w, {})
    return torch.tensor([float("nan") if v is None else v for v in got], dtype=F64)


def assert_values(got, want):
    """``got`` equals ``want`` where ``want`` is a number and is 0 where it is NaN."""
    counted = ~torch.isnan(want)
    torch.testing.assert_close(got[counted], want[counted], rtol=1e-9, atol=1e-10)
    assert torch.all(got[~counted] == 0)


def test_oracle_index_targets(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    z, y = inputs(0)
    assert_values(call(spec, z, y, cfg, reduction="none"), oracle(spec, cfg, z, y))


def test_oracle_soft_targets(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    if not spec.rule("soft_targets"):
        pytest.skip(f"{spec.name} does not accept soft targets")
    z, _ = inputs(1)
    q = soft_target(1, *z.shape)
    assert_values(call(spec, z, q, cfg, reduction="none"), oracle(spec, cfg, z, q))


def test_soft_targets_rejected_when_unsupported(loss_name):
    spec = losslab.loss_info(loss_name)
    if spec.rule("soft_targets"):
        pytest.skip(f"{loss_name} accepts soft targets")
    z, _ = inputs(2)
    with pytest.raises(ValueError, match=rf"{loss_name}: target .*soft"):
        call(spec, z, soft_target(2, *z.shape), dict(spec.defaults))


# ----------------------------------------------------------------------------- reduction


def test_reduction_contract(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    z, y = inputs(3, n=8)
    y[2] = -100
    y[5] = -100
    w = torch.rand(5, dtype=F64, generator=torch.Generator().manual_seed(3)) + 0.5
    sw = torch.rand(8, dtype=F64, generator=torch.Generator().manual_seed(4))
    opts = {"weight": w, "sample_weight": sw, "ignore_index": -100}
    none = call(spec, z, y, cfg, reduction="none", **opts)
    valid = y != -100
    elem_w = w[y[valid]] * sw[valid]
    assert none.shape == y.shape
    if spec.name in SET_LEVEL:
        # The weights and the mask enter the set's value; the reduction weighs it again.
        base = oracle(spec, cfg, z[valid], y[valid], elem_w)
        assert_values(none[valid], base * elem_w)
        elem_w = torch.where(torch.isnan(base), 0.0, elem_w)
    else:
        base = call(spec, z[valid], y[valid], cfg, reduction="none")
        torch.testing.assert_close(none[valid], base * elem_w)
    assert torch.all(none[~valid] == 0)
    torch.testing.assert_close(call(spec, z, y, cfg, reduction="sum", **opts), none.sum())
    torch.testing.assert_close(
        call(spec, z, y, cfg, reduction="mean", **opts), none.sum() / elem_w.sum()
    )


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    c=st.integers(2, 7),
    drop=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_masking_equals_dropping(loss_name, seed, n, c, drop):
    spec = losslab.loss_info(loss_name)
    cfg = dict(spec.defaults)
    z, y = inputs(seed, n, c)
    keep = ~torch.tensor(drop[:n])
    y_masked = torch.where(keep, y, -1)
    masked = call(spec, z, y_masked, cfg, ignore_index=-1)
    if keep.any():
        dropped = call(spec, z[keep], y[keep], cfg)
        torch.testing.assert_close(masked, dropped)
    else:
        assert masked.item() == 0.0


@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), c=st.integers(2, 7))
def test_index_targets_equal_one_hot(loss_name, seed, n, c):
    spec = losslab.loss_info(loss_name)
    if not spec.rule("soft_targets"):
        pytest.skip(f"{loss_name} does not accept soft targets")
    cfg = dict(spec.defaults)
    z, y = inputs(seed, n, c)
    onehot = torch.nn.functional.one_hot(y, c).to(F64)
    w = torch.linspace(0.5, 2.0, c, dtype=F64)
    for red in ("none", "mean", "sum"):
        torch.testing.assert_close(
            call(spec, z, y, cfg, reduction=red, weight=w),
            call(spec, z, onehot, cfg, reduction=red, weight=w),
        )


@given(seed=st.integers(0, 10_000), n=st.integers(2, 9))
def test_batch_permutation_invariance(loss_name, seed, n):
    spec = losslab.loss_info(loss_name)
    cfg = dict(spec.defaults)
    z, y = inputs(seed, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for red in ("mean", "sum"):
        torch.testing.assert_close(
            call(spec, z, y, cfg, reduction=red), call(spec, z[perm], y[perm], cfg, reduction=red)
        )
    torch.testing.assert_close(
        call(spec, z, y, cfg, reduction="none")[perm],
        call(spec, z[perm], y[perm], cfg, reduction="none"),
    )


def test_sum_of_none_equals_sum(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    z, y = inputs(5, n=7)
    torch.testing.assert_close(
        call(spec, z, y, cfg, reduction="none").sum(), call(spec, z, y, cfg, reduction="sum")
    )


def test_spatial_dims_equal_flattened(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    z, y = inputs(6, n=3, extra=(4,))
    flat_z = z.movedim(1, -1).reshape(-1, z.shape[1])
    got = call(spec, z, y, cfg, reduction="none")
    assert got.shape == y.shape
    torch.testing.assert_close(
        got.reshape(-1), call(spec, flat_z, y.reshape(-1), cfg, reduction="none")
    )


def test_all_ignored_batch_is_attached_zero(loss_name):
    spec = losslab.loss_info(loss_name)
    z, y = inputs(7)
    z.requires_grad_(True)
    out = call(spec, z, torch.full_like(y, -100), dict(spec.defaults), ignore_index=-100)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.all(z.grad == 0)


def test_empty_batch(loss_name):
    spec = losslab.loss_info(loss_name)
    z = torch.zeros(0, 4, dtype=F64)
    out = call(spec, z, torch.zeros(0, dtype=torch.long), dict(spec.defaults))
    assert out.item() == 0.0


# ----------------------------------------------------------------------------- autograd


def test_gradcheck_float64(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    z, y = inputs(9, n=4, c=4, scale=1.5)
    z.requires_grad_(True)
    w = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=F64)
    assert torch.autograd.gradcheck(
        lambda x: call(spec, x, y, cfg, weight=w, reduction="none"), (z,), eps=1e-6, atol=1e-5
    )
    if spec.rule("soft_targets"):
        q = soft_target(9, 4, 4).requires_grad_(False)
        assert torch.autograd.gradcheck(lambda x: call(spec, x, q, cfg), (z,), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- numerics


EXTREME = [
    (dtype, scale)
    for dtype in (torch.float32, torch.bfloat16, torch.float16)
    for scale in (1e4, -1e4, 6e4, 1e20, -1e20, 1e30, -1e30)
    if abs(scale) < torch.finfo(dtype).max
]


@pytest.mark.parametrize(("dtype", "scale"), EXTREME, ids=[f"{d}-{s:g}" for d, s in EXTREME])
def test_extreme_logits_finite_value_and_gradient(loss_config, scale, dtype):
    spec, cfg = spec_and_cfg(loss_config)
    g = torch.Generator().manual_seed(11)
    z = torch.randn(8, 6, generator=g) * abs(scale)
    z[0] = 0.0
    z[0, 0] = scale  # target 0 extremely right (scale > 0) or wrong (scale < 0)
    z[1] = torch.sign(torch.randn(6, generator=g)) * scale
    z[2] = 0.0  # a row of equal logits (a zero-initialised output layer)
    z[3] = scale  # equal and extreme
    z = z.clamp(-torch.finfo(dtype).max, torch.finfo(dtype).max)
    y = torch.randint(6, (8,), generator=g)
    y[0] = 0
    z = z.to(dtype).requires_grad_(True)
    out = call(spec, z, y, cfg)
    out.backward()
    assert torch.isfinite(out), f"{spec.name}: non-finite loss {out}"
    assert torch.isfinite(z.grad).all(), f"{spec.name}: non-finite gradient"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bounded_gradient_on_equal_rows(loss_config, dtype):
    # A zero-initialised output layer gives rows of equal logits; the gradient there must
    # stay of a sane size (normalisers are floored, see docs/design.md "Numerics").
    spec, cfg = spec_and_cfg(loss_config)
    for value in (0.0, 3.0):
        z = torch.full((4, 6), value, dtype=dtype, requires_grad=True)
        call(spec, z, torch.tensor([0, 1, 2, 3]), cfg, reduction="sum").backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().max() < 1e3, spec.name


def test_half_precision_sums_do_not_overflow_the_finiteness_check(loss_name):
    # float16 batches whose sum overflows float16 are finite and must be accepted.
    spec = losslab.loss_info(loss_name)
    g = torch.Generator().manual_seed(12)
    z = (torch.randn(256, 100, generator=g) + 3).half()
    y = torch.randint(100, (256,), generator=g)
    assert torch.isinf(z.sum())
    assert torch.isfinite(call(spec, z, y, dict(spec.defaults)))


def test_scale_invariant_losses_are_exact_at_huge_logits(loss_config):
    spec, cfg = spec_and_cfg(loss_config)
    claim = spec.properties.get("scale_invariant")
    if claim is None or cfg != spec.config(**claim.params):
        pytest.skip(f"{spec.name} is not declared scale-invariant at {cfg}")
    z, y = inputs(13, n=16, c=6, dtype=torch.float32)
    torch.testing.assert_close(call(spec, z * 1e20, y, cfg), call(spec, z, y, cfg))


def test_neg_inf_masked_classes(loss_name):
    spec = losslab.loss_info(loss_name)
    cfg = dict(spec.defaults)
    z, y = inputs(12, n=6, c=5, dtype=torch.float32)
    y = torch.clamp(y, max=2)
    z[:, 3:] = float("-inf")
    if not spec.rule("neg_inf_ok"):
        with pytest.raises(ValueError, match=rf"{loss_name}: logits expected"):
            call(spec, z, y, cfg)
        return
    z.requires_grad_(True)
    out = call(spec, z, y, cfg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()
    assert torch.all(z.grad[:, 3:] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtype_matrix(loss_config, dtype):
    spec, cfg = spec_and_cfg(loss_config)
    # At scale 3 no logit gap reaches the float16 tail of the exponential losses (9.7).
    z, y = inputs(13, n=16, c=6, dtype=dtype, scale=2.0 if dtype == torch.float16 else 3.0)
    out = call(spec, z, y, cfg, reduction="none")
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Same input values in float64: only the internal float32 arithmetic may differ.
    ref = call(spec, z.to(F64), y, cfg, reduction="none")
    torch.testing.assert_close(out.to(F64), ref, rtol=2e-4, atol=2e-5)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(loss_name):
    spec = losslab.loss_info(loss_name)
    cfg = dict(spec.defaults)
    z, y = inputs(17, n=4, c=5, dtype=torch.float32)
    cases = [
        (z, y[:3], ValueError, r"target expected class indices of shape \(4,\)"),
        (z, torch.rand(4, 3), ValueError, r"target expected probabilities of the logits' shape"),
        (z, y.float(), ValueError, r"target expected"),
        (
            z,
            torch.tensor([0, 1, 12, 2]),
            ValueError,
            r"target contains class 12 but logits have 5 classes",
        ),
        (z, torch.tensor([0, -3, 1, 2]), ValueError, r"target contains class -3"),
        (y, y, TypeError, r"logits expected a floating-point tensor"),
        (z[0], y, ValueError, r"logits expected shape \(N, C\)"),
        (torch.full_like(z, float("nan")), y, ValueError, r"logits expected finite values"),
        (torch.full_like(z, float("inf")), y, ValueError, r"logits expected finite values"),
        (z, y.bool(), TypeError, r"target expected int64 class indices or float probabilities"),
    ]
    for logits, target, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{loss_name}: {msg}"):
            call(spec, logits, target, cfg)
    bad_opts = [
        ({"reduction": "avg"}, r"reduction expected one of 'none', 'mean', 'sum'"),
        ({"weight": -torch.ones(5)}, r"weight expected finite non-negative weights"),
        ({"weight": torch.ones(4)}, r"weight expected shape \(5,\)"),
        ({"sample_weight": torch.ones(3)}, r"sample_weight expected shape \(4,\)"),
        ({"sample_weight": -torch.ones(4)}, r"sample_weight expected finite non-negative"),
    ]
    for opts, msg in bad_opts:
        with pytest.raises(ValueError, match=rf"^{loss_name}: {msg}"):
            call(spec, z, y, cfg, **opts)
    # validate=False skips the value checks (for hot loops) but keeps the structural ones.
    call(spec, torch.full_like(z, float("nan")), y, cfg, validate=False)
    with pytest.raises(ValueError):
        call(spec, z, y[:3], cfg, validate=False)
