"""Fused linear CE == F.cross_entropy(hidden @ weight.T + bias, ...) in value and grads."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import torch
import torch.nn.functional as F

from losslab.heads import LinearCrossEntropy, auto_chunk_size, linear_cross_entropy


def reference(
    h,
    w,
    y,
    *,
    bias=None,
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    reduction="mean",
):
    """Naive O(N V) memory oracle: materialised float32/float64 logits."""
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    z = h.to(acc) @ w.to(acc).T
    if bias is not None:
        z = z + bias.to(acc)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    loss = F.cross_entropy(
        z, y, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    if z_loss > 0:
        valid = y != ignore_index
        zt = z_loss * torch.logsumexp(z, 1) ** 2 * valid
        zt = {"none": zt, "sum": zt.sum(), "mean": zt.sum() / valid.sum()}[reduction]
        loss = loss + zt
    return loss


def _run(fn, h, w, y, b, go, **kw):
    h = h.clone().requires_grad_()
    w = w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    loss = fn(h, w, y, bias=b, **kw)
    loss.backward(go)
    grads = [h.grad, w.grad] + ([] if b is None else [b.grad])
    return [loss.detach(), *grads]


def _data(n=37, d=16, v=101, dtype=torch.float64, n_ignored=8, seed=0, bias=False, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).mul(scale).to(dtype)
    w = torch.randn(v, d, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(v, generator=g, dtype=torch.float64).to(dtype) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    y[torch.randperm(n, generator=g)[:n_ignored]] = -100
    return h, w, y, b


OPTIONS = list(
    itertools.product(["mean", "sum", "none"], [0.0, 0.1], [0.0, 1e-2], [None, 5.0], [False, True])
)


@pytest.mark.parametrize(("reduction", "ls", "zl", "cap", "bias"), OPTIONS)
@pytest.mark.parametrize("vocab_chunk", [None, 17])
def test_equals_naive_float64_all_options(reduction, ls, zl, cap, bias, vocab_chunk):
    h, w, y, b = _data(bias=bias)
    go = (
        torch.randn(37, dtype=torch.float64)
        if reduction == "none"
        else torch.tensor(1.7, dtype=torch.float64)
    )
    kw = dict(reduction=reduction, label_smoothing=ls, z_loss=zl, softcap=cap)
    ref = _run(reference, h, w, y, b, go, **kw)
    got = _run(
        linear_cross_entropy, h, w, y, b, go, chunk_size=8, vocab_chunk_size=vocab_chunk, **kw
    )
    for a, c in zip(got, ref, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs_match_float32_reference(reduction, dtype):
    h, w, y, b = _data(n=64, d=32, v=300, dtype=dtype, bias=True, scale=1.0)
    go = torch.ones(64) if reduction == "none" else torch.tensor(1.0)
    kw = dict(reduction=reduction, label_smoothing=0.05, z_loss=1e-3, softcap=20.0)
    ref = _run(reference, h, w, y, b, go, **kw)
    got = _run(linear_cross_entropy, h, w, y, b, go, chunk_size=16, **kw)
    assert got[0].dtype == torch.float32  # the loss is float32 whatever the input dtype
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, c in zip(got[1:], ref[1:], strict=True):
        assert a.dtype == dtype
        # the reference rounds its gradient to `dtype` at the same points; allow 2 ulps
        tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
        torch.testing.assert_close(a.float(), c.float(), rtol=tol, atol=tol)


def test_float32_large_logits_accurate_and_finite():
    # logit std ~30: exp underflows for most classes; the clamp must not change the result
    h, w, y, _ = _data(n=48, d=64, v=500, dtype=torch.float64, scale=1.0)
    w = w * (30.0 / 64**0.5)
    ref = _run(reference, h, w, y, None, torch.tensor(1.0, dtype=torch.float64))
    got = _run(
        linear_cross_entropy, h.float(), w.float(), y, None, torch.tensor(1.0), chunk_size=16
    )
    for a, c in zip(got, ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), c, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    "scale",
    [
        0.05,  # |z| < 30 everywhere: exp without the max shift
        8.0,  # logits std ~32: max shift, no clamp (range < the float64 floor)
        100.0,  # logits std ~400: range > ~690, the clamp is active
    ],
)
def test_fused_forward_paths_equal_naive_at_every_logit_scale(reduction, bias, scale):
    h, w, y, b = _data(n=50, d=16, v=120, bias=bias, scale=scale)
    if b is not None:
        b = b * scale
    go = torch.tensor(0.7, dtype=torch.float64)
    kw = dict(reduction=reduction, label_smoothing=0.1, z_loss=1e-3)
    ref = _run(reference, h, w, y, b, go, **kw)
    got = _run(linear_cross_entropy, h, w, y, b, go, chunk_size=7, **kw)
    for a, c in zip(got, ref, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9 * max(1.0, float(c.abs().max())))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_float64(reduction):
    h, w, y, b = _data(n=6, d=4, v=9, n_ignored=1, bias=True)
    y[0] = 8

    def f(h, w, b):
        return linear_cross_entropy(
            h,
            w,
            y,
            bias=b,
            reduction=reduction,
            label_smoothing=0.1,
            z_loss=0.01,
            softcap=4.0,
            chunk_size=4,
            vocab_chunk_size=5,
            allow_retain_graph=True,
        )

    inputs = tuple(t.clone().requires_grad_() for t in (h, w, b))
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("shift", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_batched_input_with_shift(shift, reduction):
    g = torch.Generator().manual_seed(1)
    B, T, D, V = 3, 7, 8, 23
    h = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, -1] = -100
    hs = h[:, : T - shift].reshape(-1, D) if shift else h.reshape(-1, D)
    ys = y[:, shift:].reshape(-1) if shift else y.reshape(-1)
    hh = h.clone().requires_grad_()
    got = linear_cross_entropy(hh, w, y, shift=shift, reduction=reduction, chunk_size=5)
    assert got.shape == (() if reduction == "mean" else (B, T - shift))
    got.sum().backward()
    h2 = h.clone().requires_grad_()
    ref = reference(h2[:, : T - shift].reshape(-1, D), w, ys, reduction=reduction)
    ref.sum().backward()
    torch.testing.assert_close(
        got.reshape(-1) if reduction == "none" else got, ref, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(hh.grad, h2.grad, rtol=1e-10, atol=1e-12)
    assert hs.shape[0] == ys.shape[0]


def test_all_ignored_mean_is_zero_attached_with_zero_grads():
    h, w, y, _ = _data(n=5, d=4, v=7, dtype=torch.float32)
    y[:] = -100
    h.requires_grad_()
    w.requires_grad_()
    loss = linear_cross_entropy(h, w, y)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert h.grad.abs().max() == 0 and w.grad.abs().max() == 0


def test_no_grad_and_partial_requires_grad():
    h, w, y, b = _data(bias=True)
    ref = reference(h, w, y, bias=b)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, y, bias=b, chunk_size=8), ref)
    wg = w.clone().requires_grad_()  # only the weight learns (frozen features)
    linear_cross_entropy(h, wg, y, bias=b, chunk_size=8).backward()
    w2 = w.clone().requires_grad_()
    reference(h, w2, y, bias=b).backward()
    torch.testing.assert_close(wg.grad, w2.grad)


def test_inputs_not_mutated_and_second_backward_raises():
    h, w, y, _ = _data(dtype=torch.float32)
    h0, w0, y0 = h.clone(), w.clone(), y.clone()
    h.requires_grad_()
    w.requires_grad_()
    loss = linear_cross_entropy(h, w, y, chunk_size=8)
    loss.backward(retain_graph=True)
    assert torch.equal(h.detach(), h0) and torch.equal(w.detach(), w0) and torch.equal(y, y0)
    with pytest.raises(RuntimeError, match=r"linear_cross_entropy: .*twice"):
        loss.backward()
    h.grad = w.grad = None
    loss = linear_cross_entropy(h, w, y, chunk_size=8, allow_retain_graph=True)
    loss.backward(retain_graph=True)
    g1 = h.grad.clone()
    loss.backward()
    torch.testing.assert_close(h.grad, 2 * g1)


def test_module_equals_function_and_config_round_trip():
    h, w, y, b = _data(bias=True)
    cfg = dict(label_smoothing=0.1, z_loss=1e-3, softcap=3.0, reduction="sum", chunk_size=8)
    mod = LinearCrossEntropy(**cfg)
    torch.testing.assert_close(mod(h, w, y, b), linear_cross_entropy(h, w, y, bias=b, **cfg))
    clone = LinearCrossEntropy.from_config(mod.get_config())
    assert clone.get_config() == mod.get_config()
    assert pickle.loads(pickle.dumps(mod)).get_config() == mod.get_config()
    assert copy.deepcopy(mod).get_config() == mod.get_config()
    assert "softcap=3.0" in repr(mod)


def test_auto_chunk_size_bounds_logit_memory():
    c = auto_chunk_size(4096, 1024, 65536)
    assert c * 65536 * 4 <= 0.4 * (4096 * 1024 + 65536 * 1024) * 4 and c % 32 == 0 and c >= 32
    assert auto_chunk_size(10, 8, 50) == 10


def test_bad_inputs_raise_clear_errors():
    # every message in the library's format: "<where>: <argument> expected <what>, got <value>"
    h, w, y, _ = _data(dtype=torch.float32)
    y_bad = y.clone()
    y_bad[3] = 101
    with pytest.raises(
        ValueError,
        match=r"linear_cross_entropy: target expected class indices in \[0, 100\] \(101 rows\) "
        r"or ignore_index=-100, got class 101",
    ):
        linear_cross_entropy(h, w, y_bad)
    linear_cross_entropy(h, w, y, validate=False, chunk_size=8)  # no host-sync range check
    y_neg = y.clone()
    y_neg[0] = -5
    with pytest.raises(ValueError, match="got class -5"):
        linear_cross_entropy(h, w, y_neg)
    with pytest.raises(ValueError, match=r"hidden expected shape \(\.\.\., 15\) \(D of weight\)"):
        linear_cross_entropy(h, w[:, :15], y)
    with pytest.raises(TypeError, match="hidden expected a floating-point tensor"):
        linear_cross_entropy(h.long(), w, y)
    with pytest.raises(TypeError, match="target expected a tensor of integer class indices"):
        linear_cross_entropy(h, w, y.float())
    with pytest.raises(ValueError, match=r"target expected shape \(37,\)"):
        linear_cross_entropy(h, w, y[:-1])
    with pytest.raises(
        ValueError,
        match="linear_cross_entropy: reduction expected one of 'none', 'mean', 'sum', got 'avg'",
    ):
        linear_cross_entropy(h, w, y, reduction="avg")
    with pytest.raises(ValueError, match=r"bias expected shape \(101,\)"):
        linear_cross_entropy(h, w, y, bias=torch.zeros(3))
    with pytest.raises(ValueError, match=r"label_smoothing expected a real number in \[0, 1\]"):
        linear_cross_entropy(h, w, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"softcap expected a real number in \(0, inf\), got 0.0"):
        linear_cross_entropy(h, w, y, softcap=0.0)
    with pytest.raises(ValueError, match=r"impl expected one of .*got 'nope'"):
        linear_cross_entropy(h, w, y, impl="nope")
    with pytest.raises(ValueError, match="LinearCrossEntropy: reduction expected one of"):
        LinearCrossEntropy(reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch(reduction):
    h = torch.zeros(0, 4, requires_grad=True)
    w = torch.randn(7, 4, requires_grad=True)
    out = linear_cross_entropy(h, w, torch.zeros(0, dtype=torch.long), reduction=reduction)
    assert out.shape == ((0,) if reduction == "none" else ())
    out.sum().backward()
    assert w.grad is not None and w.grad.abs().max() == 0
