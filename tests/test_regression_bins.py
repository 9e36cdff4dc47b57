"""HL-Gauss and two-hot targets (Stop Regressing) and the RegressionBins helper."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F
from losslab.functional import RegressionBins

F64 = torch.float64


def paper_hl_gauss(y, v_min, v_max, num_bins, sigma):
    """The paper's Appendix A target transform written out: erf at the num_bins + 1 edges,
    differences, normalised by the mass inside the support."""
    support = torch.linspace(v_min, v_max, num_bins + 1, dtype=F64)
    cdf = torch.erf((support[None, :] - y[:, None]) / (math.sqrt(2.0) * sigma))
    return (cdf[:, 1:] - cdf[:, :-1]) / (cdf[:, -1:] - cdf[:, :1])


def test_helper_oracle_values():
    bins = RegressionBins(0.0, 4.0, 4)
    p = bins.hl_gauss(torch.tensor([2.0, 1.5], dtype=F64))
    want = torch.tensor(
        [[0.088055, 0.411945, 0.411945, 0.088055], [0.235194, 0.506761, 0.235194, 0.022851]],
        dtype=F64,
    )
    torch.testing.assert_close(p, want, atol=1e-6, rtol=0)
    centres = bins.centers(F64)
    assert (p[0] * centres).sum().item() == pytest.approx(2.0, abs=1e-12)
    assert (p[1] * centres).sum().item() == pytest.approx(1.5457, abs=1e-4)
    torch.testing.assert_close(p.sum(1), torch.ones(2, dtype=F64))


def test_helper_matches_the_paper_transform():
    y = torch.linspace(-3.0, 7.0, 41, dtype=F64)
    bins = RegressionBins(-3.0, 7.0, 50)
    torch.testing.assert_close(
        bins.hl_gauss(y), paper_hl_gauss(y, -3.0, 7.0, 50, 0.75 * bins.width)
    )


def test_two_hot_recovers_the_value_exactly():
    bins = RegressionBins(-1.0, 3.0, 9)
    c = bins.centers(F64)
    y = torch.linspace(c[0].item(), c[-1].item(), 37, dtype=F64)
    q = bins.encode(y)
    torch.testing.assert_close((q * c).sum(1), y)
    assert torch.all((q > 0).sum(1) <= 2)
    torch.testing.assert_close(bins.decode(torch.log(q)), y)
    # beyond the centres: clipped
    assert bins.encode(torch.tensor([-5.0, 9.0], dtype=F64))[:, [0, -1]].tolist() == [
        [1.0, 0.0],
        [0.0, 1.0],
    ]


def test_small_sigma_gives_one_hot():
    bins = RegressionBins(0.0, 5.0, 5)
    p = bins.hl_gauss(torch.tensor([0.5, 3.5], dtype=F64), sigma=1e-3)
    torch.testing.assert_close(p, torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 1.0, 0]], dtype=F64))


def test_losses_equal_cross_entropy_to_the_helper_targets():
    bins = RegressionBins(0.0, 10.0, 16)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 16, generator=g, dtype=F64) * 2
    c = bins.centers(F64)
    y = c[0] + torch.rand(12, generator=g, dtype=F64) * (c[-1] - c[0])
    q = bins.encode(y)
    for sigma in (0.75, 0.3, 2.0):
        torch.testing.assert_close(
            F.hl_gauss(z, q, sigma=sigma, reduction="none"),
            F.ce(z, bins.hl_gauss(y, sigma=sigma), reduction="none"),
        )
    torch.testing.assert_close(F.two_hot(z, q, reduction="none"), F.ce(z, q, reduction="none"))


def test_index_targets_are_bin_centres():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 6, generator=g, dtype=F64)
    k = torch.randint(6, (8,), generator=g)
    torch.testing.assert_close(F.two_hot(z, k, reduction="none"), F.ce(z, k, reduction="none"))
    bins = RegressionBins(0.0, 6.0, 6)
    torch.testing.assert_close(
        F.hl_gauss(z, k, reduction="none"),
        F.ce(z, bins.hl_gauss(bins.centers(F64)[k]), reduction="none"),
    )


def test_helper_spatial_axes():
    bins = RegressionBins(0.0, 1.0, 4)
    y = torch.rand(3, 5, dtype=F64)
    q = bins.encode(y)
    assert q.shape == (3, 4, 5)
    torch.testing.assert_close(q[:, :, 2], bins.encode(y[:, 2]))
    torch.testing.assert_close(bins.hl_gauss(y)[:, :, 1], bins.hl_gauss(y[:, 1]))
    torch.testing.assert_close(bins.decode(torch.log(q)), y.clamp(0.125, 0.875))


def test_hl_gauss_rejects_masked_bins():
    z = torch.zeros(2, 4)
    z[:, 3] = float("-inf")
    with pytest.raises(ValueError, match=r"^hl_gauss: logits expected finite values"):
        F.hl_gauss(z, torch.tensor([0, 1]))


def test_helper_errors():
    cases = [
        (lambda: RegressionBins(1.0, 0.0, 4), ValueError, r"v_max expected a value above"),
        (lambda: RegressionBins(0.0, 1.0, 0), ValueError, r"num_bins expected an integer"),
        (lambda: RegressionBins(0.0, 1.0, 2.0), TypeError, r"num_bins expected an integer"),
        (lambda: RegressionBins(float("nan"), 1.0, 2), ValueError, r"v_min expected a finite"),
        (lambda: RegressionBins(0.0, 1.0, 4).encode(torch.tensor([1])), TypeError, r"y expected"),
        (
            lambda: RegressionBins(0.0, 1.0, 4).hl_gauss(torch.tensor([0.5]), sigma=0.0),
            ValueError,
            r"sigma expected",
        ),
        (
            lambda: RegressionBins(0.0, 1.0, 4).decode(torch.zeros(2, 3)),
            ValueError,
            r"logits expected shape \(N, 4, \.\.\.\)",
        ),
    ]
    for make, exc, msg in cases:
        with pytest.raises(exc, match=rf"^RegressionBins[.\w]*: {msg}"):
            make()
    assert repr(RegressionBins(0, 2, 3)) == "RegressionBins(v_min=0.0, v_max=2.0, num_bins=3)"


def test_helper_docstring_example_runs():
    from tests.test_contract_common import _run_doctests

    _run_doctests(RegressionBins, "losslab.functional.RegressionBins")


@pytest.mark.parametrize("sigma", [0.75, 2.0])
def test_hl_gauss_window_matches_the_full_histogram(sigma):
    """With many bins, HL-Gauss takes log p only within 10 sigma of the target; values and
    gradients equal the full-histogram cross-entropy (the oracle's formula), including
    targets at both ends of the bin axis, soft targets and spatial axes."""
    from tests.reference.naive_regression_bins import hl_gauss as oracle

    c = 120
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, c, 2, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([[0, 119], [1, 60], [118, 3], [30, 90], [59, 0]])
    z1 = z.clone().requires_grad_(True)
    got = F.hl_gauss(z1, y, sigma=sigma, reduction="none")
    z2 = z.clone().requires_grad_(True)
    u = y.to(torch.float64)
    edges = torch.arange(c + 1, dtype=torch.float64) - 0.5
    cdf = torch.erf((edges.view(1, -1, 1) - u.unsqueeze(1)) / (math.sqrt(2.0) * sigma))
    full = (cdf[:, 1:] - cdf[:, :-1]) / (cdf[:, -1:] - cdf[:, :1])
    want = -(full * torch.log_softmax(z2, dim=1)).sum(dim=1)
    torch.testing.assert_close(got, want)
    w = torch.rand(got.shape, generator=g, dtype=torch.float64)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    row = [float(v) for v in z[2, :, 0]]
    assert math.isclose(float(got.detach()[2, 0]), oracle(row, 118, {"sigma": sigma}), rel_tol=1e-9)
    q = torch.zeros(2, c, dtype=torch.float64)
    q[0, 7], q[0, 8], q[1, 100] = 0.25, 0.75, 1.0  # positions 7.75 and 100
    soft = F.hl_gauss(z[:2, :, 0], q, sigma=sigma, reduction="none")
    for i, pos in enumerate((7.75, 100.0)):
        cdf = torch.erf((edges - pos) / (math.sqrt(2.0) * sigma))
        hist = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])
        ref = -(hist * torch.log_softmax(z[i, :, 0], dim=0)).sum()
        torch.testing.assert_close(soft[i], ref)
