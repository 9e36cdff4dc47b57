"""Optional back-ends (impl=...) against the own CPU reference; GPU ones skip without CUDA."""

from __future__ import annotations

import warnings

import pytest
import torch

from losslab.heads import linear_cross_entropy
from losslab.heads._backends import available_backends

HAS_CUDA = torch.cuda.is_available()


def _data(device="cpu", dtype=torch.float32, n=64, d=32, v=257):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g).to(device, dtype)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(device, dtype)
    y = torch.randint(0, v, (n,), generator=g).to(device)
    y[:7] = -100
    return h, w, y


def _compare(impl, device, dtype, rtol, atol, **kw):
    h, w, y = _data(device, dtype)
    out = []
    for which in ("torch", impl):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        loss = linear_cross_entropy(hh, ww, y, impl=which, **kw)
        loss.sum().backward()
        out.append((loss.detach().float(), hh.grad.float(), ww.grad.float()))
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_native_matches_reference_on_cpu(reduction):
    if "torch_native" not in available_backends():
        pytest.skip("torch.nn.functional.linear_cross_entropy needs torch >= 2.13")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare("torch_native", "cpu", torch.float32, 1e-5, 1e-6, reduction=reduction)


def test_unsupported_options_raise():
    h, w, y = _data()
    with pytest.raises(
        ValueError, match=r"z_loss expected 0 or None with impl='torch_native' .*got 0.0001"
    ):
        linear_cross_entropy(h, w, y, impl="torch_native", z_loss=1e-4)


@pytest.mark.slow  # importing cut-cross-entropy imports Triton, and torch.compile is slow on CPU
def test_cce_torch_compile_matches_reference_on_cpu():
    if "cce_torch_compile" not in available_backends():
        pytest.skip("cut-cross-entropy not installed")
    h, w, y = _data()
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="hidden expected a CUDA tensor for impl='cce'"):
            linear_cross_entropy(h, w, y, impl="cce")
    with pytest.raises(ValueError, match="label_smoothing expected 0 or None with impl="):
        linear_cross_entropy(h, w, y, impl="cce_torch_compile", label_smoothing=0.1)
    _compare("cce_torch_compile", "cpu", torch.float32, 1e-5, 1e-6, softcap=10.0)


@pytest.mark.skipif(not HAS_CUDA, reason="GPU back-ends need CUDA")
@pytest.mark.parametrize("impl", ["torch", "torch_native", "cce", "liger"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_backends_match_cpu_reference(impl, dtype):
    if impl not in available_backends():
        pytest.skip(f"{impl} not installed")
    h, w, y = _data("cpu", dtype)
    ref_h, ref_w = h.float().requires_grad_(), w.float().requires_grad_()
    ref = linear_cross_entropy(ref_h, ref_w, y)  # CPU float32 reference
    ref.backward()
    gh, gw = h.cuda().requires_grad_(), w.cuda().requires_grad_()
    loss = linear_cross_entropy(gh, gw, y.cuda(), impl=impl)
    loss.backward()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(loss.float().cpu(), ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(gh.grad.float().cpu(), ref_h.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(gw.grad.float().cpu(), ref_w.grad, rtol=tol, atol=tol)
