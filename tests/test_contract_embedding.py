"""The contract of the embedding kind, for every registered embedding loss: oracle values,
per-sample reduction with weights and ignored samples, masking == dropping, views and
labels conventions, degenerate batches and bad inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE

F64 = torch.float64
EMBEDDING = losslab.list_losses(kind="embedding")


@pytest.fixture(params=loss_configs(EMBEDDING), ids=config_id)
def emb_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def batch(seed: int, n: int = 6, views: int = 2, d: int = 4, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, views, d, generator=g, dtype=F64)
    y = torch.randint(classes, (n,), generator=g)
    return x, y


def oracle(spec, cfg, x, y):
    labels = list(range(len(x))) if y is None else y.tolist()
    return REFERENCE[spec.name](x.tolist(), labels, cfg)


def as_tensor(values):
    return torch.tensor([0.0 if v is None else v for v in values], dtype=F64)


def counted_mean(values, weights=None):
    w = [1.0] * len(values) if weights is None else weights
    num = sum(v * wi for v, wi in zip(values, w, strict=True) if v is not None)
    den = sum(wi for v, wi in zip(values, w, strict=True) if v is not None)
    return num / den if den else 0.0


def test_oracle(emb_config):
    spec, cfg = emb_config
    for seed in range(3):
        x, y = batch(seed)
        want = oracle(spec, cfg, x, y)
        got = spec.function(x, y, **cfg, reduction="none")
        torch.testing.assert_close(got, as_tensor(want), rtol=1e-9, atol=1e-10)
        mean = spec.function(x, y, **cfg)
        assert abs(mean.item() - counted_mean(want)) < 1e-9


def test_labels_none_is_each_sample_its_own_class(emb_config):
    spec, cfg = emb_config
    x, _ = batch(1)
    torch.testing.assert_close(
        spec.function(x, None, **cfg, reduction="none"),
        spec.function(x, torch.arange(len(x)), **cfg, reduction="none"),
    )
    torch.testing.assert_close(
        spec.function(x, **cfg, reduction="none"), as_tensor(oracle(spec, cfg, x, None))
    )


def test_two_dimensional_input_is_one_view(emb_config):
    spec, cfg = emb_config
    if spec.rule("views", cfg) not in (None, 1) or spec.rule("min_views", cfg) > 1:
        pytest.skip(f"{spec.name} needs several views")
    x, y = batch(2, views=1)
    torch.testing.assert_close(spec.function(x[:, 0], y, **cfg), spec.function(x, y, **cfg))


def test_reduction_contract(emb_config):
    spec, cfg = emb_config
    x, y = batch(3, n=8)
    y[2] = -100
    sw = torch.rand(8, dtype=F64, generator=torch.Generator().manual_seed(4))
    opts = {"sample_weight": sw, "ignore_index": -100}
    none = spec.function(x, y, **cfg, reduction="none", **opts)
    keep = y != -100
    dropped = oracle(spec, cfg, x[keep], y[keep])
    want = as_tensor(dropped) * sw[keep]
    torch.testing.assert_close(none[keep], want, rtol=1e-9, atol=1e-10)
    assert none[2] == 0
    torch.testing.assert_close(
        spec.function(x, y, **cfg, reduction="mean", **opts).item(),
        counted_mean(dropped, sw[keep].tolist()),
    )
    torch.testing.assert_close(spec.function(x, y, **cfg, reduction="sum", **opts), none.sum())


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 7),
    drop=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_masking_equals_dropping(seed, n, drop):
    for name in EMBEDDING:
        spec = losslab.loss_info(name)
        x, y = batch(seed, n=n)
        keep = ~torch.tensor(drop[:n])
        masked = spec.function(x, torch.where(keep, y, -1), ignore_index=-1, reduction="none")
        assert torch.all(masked[~keep] == 0)
        if keep.any():
            torch.testing.assert_close(
                masked[keep], spec.function(x[keep], y[keep], reduction="none")
            )
        else:
            assert spec.function(x, torch.full_like(y, -1), ignore_index=-1).item() == 0.0


@pytest.mark.parametrize("case", ["one sample", "single class", "no positive"])
def test_degenerate_batches_are_attached_finite(emb_config, case):
    spec, cfg = emb_config
    x, _ = batch(5, n=4)
    if case == "one sample":
        x, y = x[:1], torch.tensor([0])
    elif case == "single class":
        y = torch.zeros(4, dtype=torch.long)
    else:
        y = torch.arange(4)
        x = x[:, :1].expand(4, spec.rule("min_views", cfg), 4).contiguous()
        if spec.rule("views", cfg) == 2:
            x = torch.cat([x, x], dim=1)[:, :2]
    x = x.clone().requires_grad_(True)
    out = spec.function(x, y, **cfg)
    out.backward()
    assert torch.isfinite(out) and out.requires_grad
    assert torch.isfinite(x.grad).all()
    if spec.components:
        parts = spec.function(x, y, **cfg, return_components=True)
        for name in spec.components:
            assert getattr(parts, name).dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e-6, 1e4])
def test_extreme_embeddings_finite_value_and_gradient(emb_config, scale, dtype):
    spec, cfg = emb_config
    x, y = batch(7)
    if dtype != torch.float32 and scale > 1e3:
        scale = 1e2  # squared distances of 1e4-sized embeddings overflow half precision
    z = (x * scale).to(dtype).requires_grad_(True)
    out = spec.function(z, y, **cfg)
    out.backward()
    assert torch.isfinite(out), spec.name
    assert not torch.isnan(z.grad).any(), spec.name


def test_bad_embedding_inputs(emb_config):
    spec, cfg = emb_config
    x, y = batch(8)
    name = spec.name
    cases = [
        ((x[..., None], y), {}, ValueError, r"embeddings expected shape \(N, D\) or \(N, V, D\)"),
        ((x[:, :, :0], y), {}, ValueError, r"embeddings expected at least one embedding dim"),
        ((x, y.float()), {}, TypeError, r"labels expected integer class labels"),
        ((x, y[:3]), {}, ValueError, r"labels expected shape \(6,\)"),
        ((x, y.tolist()), {}, TypeError, r"labels expected an int64 tensor or None"),
        ((x, y), {"gather": "some"}, ValueError, r"gather expected one of \('none', 'all'\)"),
        ((x, y), {"gather": "all"}, ValueError, r"gather expected \"none\" without an initialised"),
        (
            (x, y),
            {"sample_weight": torch.ones(5, dtype=F64)},
            ValueError,
            r"sample_weight expected",
        ),
    ]
    if spec.rule("views", cfg) == 2:
        cases.append(((x[:, :1], y), {}, ValueError, r"embeddings expected 2 views per sample"))
    if spec.rule("min_views", cfg) > 1:
        cases.append(((x[:, 0], y), {}, ValueError, r"embeddings expected at least 2 views"))
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)
