"""The Fourier head against a complex-arithmetic reference of the paper's construction
and the official code's autocorrelation and regulariser."""

from __future__ import annotations

import cmath
import math

import pytest
import torch

from losslab import functional as F
from losslab.heads import FourierHead

F64 = torch.float64


def reference(head: FourierHead, h: torch.Tensor) -> tuple[list[list[float]], float]:
    """Per-row logits and the regulariser from the formulas, with Python complex numbers."""
    m, n = head.num_frequencies, head.num_bins
    w = head.linear.weight.detach().double().tolist()
    b = head.linear.bias.detach().double().tolist()
    centres = [-1 + (2 * j + 1) / n for j in range(n)]
    rows, reg = [], 0.0
    for x in h.double().tolist():
        out = [
            sum(wi * xi for wi, xi in zip(row, x, strict=True)) + bi
            for row, bi in zip(w, b, strict=True)
        ]
        a = [complex(out[k], out[m + 1 + k]) for k in range(m + 1)]
        c = [sum(a[l + k] * a[l].conjugate() for l in range(m + 1 - k)) for k in range(m + 1)]
        f = [
            0.5
            + sum(
                (c[k] / c[0].real * cmath.exp(1j * math.pi * k * xj)).real for k in range(1, m + 1)
            )
            for xj in centres
        ]
        total = sum(f)
        rows.append([math.log(fj / total + head.eps) for fj in f])
        reg += sum(2 * math.pi**2 * k * k * abs(c[k]) ** 2 for k in range(m + 1))
    return rows, head.regularization * 2 * reg / len(rows)


def official_autocorrelation(a_re: torch.Tensor, a_im: torch.Tensor) -> torch.Tensor:
    """The official autocorrelate(): grouped conv1d of the complex coefficients with their
    conjugates, right half."""
    seq = torch.complex(a_re, a_im)
    batch, length = seq.shape
    out = torch.nn.functional.conv1d(
        seq[None], seq[:, None, :].conj().resolve_conj(), padding=length - 1, groups=batch
    )
    return out[0, :, length - 1 :]


def make(m: int = 6, n: int = 20, d: int = 5, gamma: float = 1e-3, seed: int = 0) -> FourierHead:
    torch.manual_seed(seed)
    head = FourierHead(d, n, m, regularization=gamma).double()
    with torch.no_grad():  # away from the near-uniform initialisation
        head.linear.weight.mul_(100)
        head.linear.bias.mul_(100)
    return head


def test_matches_the_reference():
    head = make()
    h = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    logits, reg = head(h, return_regularization=True)
    rows, want_reg = reference(head, h)
    torch.testing.assert_close(logits, torch.tensor(rows, dtype=F64))
    assert reg.item() == pytest.approx(want_reg, rel=1e-10)


def test_autocorrelation_equals_the_official_convolution():
    head = make(m=9)
    h = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    c_re, c_im = head.autocorrelation(h)
    a = head.linear(h)
    want = official_autocorrelation(a[:, :10], a[:, 10:])
    torch.testing.assert_close(c_re, want.real)
    torch.testing.assert_close(c_im, want.imag)


def test_pmf_is_a_distribution():
    head = make(m=12, n=50)
    h = torch.randn(64, 5, generator=torch.Generator().manual_seed(3), dtype=F64) * 30
    p = head.pmf(h)
    assert torch.all(p >= 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(64, dtype=F64))
    torch.testing.assert_close(torch.softmax(head(h), -1), p, atol=1e-4, rtol=0)


def test_only_the_constant_coefficient_gives_uniform_and_no_regularisation():
    head = make()
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.linear.bias[0] = 1.7  # a_0 real; a_1 .. a_m = 0
    logits, reg = head(torch.randn(3, 5, dtype=F64), return_regularization=True)
    torch.testing.assert_close(
        head.pmf(torch.zeros(3, 5, dtype=F64)), torch.full((3, 20), 0.05, dtype=F64)
    )
    assert reg.item() == 0.0
    torch.testing.assert_close(logits, torch.full((3, 20), math.log(0.05 + 1e-5), dtype=F64))


def test_zero_frequencies_and_zero_coefficients_are_uniform():
    head = make(m=0)
    torch.testing.assert_close(
        head.pmf(torch.randn(5, 5, dtype=F64)), torch.full((5, 20), 0.05, dtype=F64)
    )
    head = make()
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    p = head.pmf(torch.randn(2, 5, dtype=F64))
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.full((2, 20), 0.05, dtype=F64))


def test_initialisation_starts_near_uniform():
    torch.manual_seed(0)
    head = FourierHead(64, 30, 10)
    bound = 1 / math.sqrt(64) / 100
    assert head.linear.weight.abs().max().item() <= bound
    assert head.linear.bias.abs().max().item() <= bound


def test_batch_dims_dtypes_and_gradients():
    head = make()
    h = torch.randn(2, 3, 5, dtype=F64, requires_grad=True)
    logits = head(h)
    assert logits.shape == (2, 3, 20)
    torch.testing.assert_close(logits[1, 2], head(h[1, 2][None])[0])
    F.ce(logits.reshape(6, 20), torch.arange(6)).backward()
    assert torch.isfinite(h.grad).all() and head.linear.weight.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda x: head(x, return_regularization=True)[1] + head(x).sum(),
        (h[0].detach().clone().requires_grad_(),),
    )
    half = FourierHead(5, 20, 6).to(torch.bfloat16)
    assert half(torch.randn(4, 5, dtype=torch.bfloat16)).dtype == torch.float32


def test_regulariser_weighs_frequency_k_by_k_squared():
    # a_0 = 1 and a_k = 1/2: the only non-zero autocorrelations are c_0 and c_k = 1/2.
    for k in range(1, 7):
        head = make(m=6, gamma=0.1)
        with torch.no_grad():
            head.linear.weight.zero_()
            head.linear.bias.zero_()
            head.linear.bias[0] = 1.0
            head.linear.bias[k] = 0.5
        _, reg = head(torch.zeros(3, 5, dtype=F64), return_regularization=True)
        assert reg.item() == pytest.approx(0.1 * 2 * 2 * math.pi**2 * k * k * 0.25, rel=1e-12)


def test_bad_arguments():
    cases = [
        (lambda: FourierHead(0, 10, 3), ValueError, r"in_features expected an integer >= 1"),
        (lambda: FourierHead(4, 0, 3), ValueError, r"num_bins expected an integer >= 1"),
        (lambda: FourierHead(4, 10, -1), ValueError, r"num_frequencies expected an integer >= 0"),
        (lambda: FourierHead(4, 10, 2.0), TypeError, r"num_frequencies expected an integer"),
        (
            lambda: FourierHead(4, 10, 3, regularization=-1.0),
            ValueError,
            r"regularization expected",
        ),
        (lambda: FourierHead(4, 10, 3, eps=0.0), ValueError, r"eps expected"),
        (
            lambda: FourierHead(4, 10, 3)(torch.zeros(2, 5)),
            ValueError,
            r"hidden expected shape \(\.\.\., 4\)",
        ),
        (
            lambda: FourierHead(4, 10, 3)(torch.zeros(2, 4).long()),
            TypeError,
            r"hidden expected a floating",
        ),
    ]
    for make_it, exc, msg in cases:
        with pytest.raises(exc, match=rf"^FourierHead: {msg}"):
            make_it()


def test_docstring_examples_run():
    from tests.test_contract_common import _run_doctests

    _run_doctests(FourierHead, "losslab.heads.FourierHead")
