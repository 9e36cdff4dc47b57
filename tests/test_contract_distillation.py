"""The contract of the distillation kind, for every registered distillation loss."""

from __future__ import annotations

import pytest
import torch

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE

F64 = torch.float64
DISTILLATION = losslab.list_losses(kind="distillation")


@pytest.fixture(params=loss_configs(DISTILLATION), ids=config_id)
def distill_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def logits(seed: int, n: int = 6, c: int = 5, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g, dtype=F64) * scale
    t = torch.randn(n, c, generator=g, dtype=F64) * scale
    return s, t, torch.randint(c, (n,), generator=g)


def oracle(spec, cfg, s, t, y):
    return torch.tensor(
        [
            REFERENCE[spec.name](
                s[i].tolist(), t[i].tolist(), None if y is None else int(y[i]), cfg
            )
            for i in range(len(s))
        ],
        dtype=F64,
    )


def test_oracle(distill_config):
    spec, cfg = distill_config
    s, t, y = logits(0)
    got = spec.function(s, t, y, **cfg, reduction="none")
    torch.testing.assert_close(got, oracle(spec, cfg, s, t, y), rtol=1e-9, atol=1e-10)


#: Losses of the teacher's logits themselves, not of its softmax (dhkd compares logit
#: gaps): a probability teacher reaches them as its log-probabilities, the kind's
#: conversion, which differ from its logits by each row's log-partition.
LOGIT_LEVEL = {"dhkd"}


def test_teacher_probabilities_equal_teacher_logits(distill_config):
    spec, cfg = distill_config
    s, t, y = logits(1)
    probs = spec.function(s, torch.softmax(t, dim=1), y, **cfg, teacher_format="probs")
    torch.testing.assert_close(probs, spec.function(s, torch.log_softmax(t, dim=1), y, **cfg))
    if spec.name not in LOGIT_LEVEL:
        torch.testing.assert_close(probs, spec.function(s, t, y, **cfg))


def test_target_required_exactly_when_used(distill_config):
    spec, cfg = distill_config
    s, t, _ = logits(2)
    if spec.rule("needs_target", cfg):
        with pytest.raises(TypeError, match=rf"^{spec.name}: target expected class indices"):
            spec.function(s, t, **cfg)
    else:
        torch.testing.assert_close(spec.function(s, t, **cfg), oracle(spec, cfg, s, t, None).mean())


def test_reduction_contract(distill_config):
    spec, cfg = distill_config
    s, t, y = logits(3, n=8)
    y[2] = -100
    sw = torch.rand(8, dtype=F64, generator=torch.Generator().manual_seed(4))
    opts = {"sample_weight": sw, "ignore_index": -100}
    none = spec.function(s, t, y, **cfg, reduction="none", **opts)
    valid = y != -100
    base = spec.function(s[valid], t[valid], y[valid], **cfg, reduction="none")
    torch.testing.assert_close(none[valid], base * sw[valid])
    assert none[2] == 0
    torch.testing.assert_close(
        spec.function(s, t, y, **cfg, reduction="mean", **opts), none.sum() / sw[valid].sum()
    )


def test_spatial_dims_equal_flattened(distill_config):
    spec, cfg = distill_config
    g = torch.Generator().manual_seed(5)
    s, t = (
        torch.randn(2, 4, 3, generator=g, dtype=F64),
        torch.randn(2, 4, 3, generator=g, dtype=F64),
    )
    y = torch.randint(4, (2, 3), generator=g)
    flat = lambda a: a.movedim(1, -1).reshape(-1, 4)  # noqa: E731
    got = spec.function(s, t, y, **cfg, reduction="none")
    torch.testing.assert_close(
        got.reshape(-1), spec.function(flat(s), flat(t), y.reshape(-1), **cfg, reduction="none")
    )


def test_zero_when_student_equals_teacher_and_alpha_is_one(distill_config):
    spec, cfg = distill_config
    s, _, _ = logits(6)
    if spec.name == "kd":
        out = spec.function(s, s.clone(), **{**cfg, "alpha": 1.0})
        assert abs(out.item()) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_finite_value_and_gradient(distill_config, scale, dtype):
    spec, cfg = distill_config
    s, t, y = logits(7, scale=abs(scale))
    s[0, 0] = scale
    z = s.to(dtype).requires_grad_(True)
    out = spec.function(z, t.to(dtype), y, **cfg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


def test_bad_distillation_inputs(distill_config):
    spec, cfg = distill_config
    s, t, y = logits(8)
    name = spec.name
    cases = [
        ((s, t[:, :3], y), {}, ValueError, r"teacher expected the student's shape"),
        ((s, t, y.float()), {}, TypeError, r"target expected int64 class indices or None"),
        ((s, t, y[:2]), {}, ValueError, r"target expected class indices of shape"),
        ((s, t, y), {"teacher_format": "probs"}, ValueError, r"teacher expected probabilities"),
        ((s, t, y), {"teacher_format": "logprobs"}, ValueError, r"teacher_format expected one of"),
        (
            (s, torch.full_like(t, float("nan")), y),
            {},
            ValueError,
            r"teacher expected finite values",
        ),
    ]
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)


def test_kd_gradients_reach_a_learnable_teacher():
    s, t, y = logits(9, n=4, c=4, scale=1.5)
    t = t.clone().requires_grad_(True)
    for alpha in (1.0, 0.5):
        assert torch.autograd.gradcheck(
            lambda tt, a=alpha: losslab.functional.kd(s, tt, y, alpha=a, reduction="none"), (t,)
        )
