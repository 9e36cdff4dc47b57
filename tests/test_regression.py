"""Balanced MSE against restatements of the official BMC, BNI and GAI functions (values
and gradients, the noise scale's included), and the learnable-sigma module."""

from __future__ import annotations

import pytest
import torch

import losslab
from losslab import functional as F
from losslab.heads import BalancedMSE

F64 = torch.float64
CENTERS = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0], dtype=F64)
WEIGHTS = torch.tensor([0.05, 0.2, 0.4, 0.2, 0.15, 0.0], dtype=F64)
VARIANCES = torch.tensor([0.5, 1.0, 0.2, 2.0, 0.7, 1.0], dtype=F64)


def official(method, pred, target, sigma):
    """The official functions (imdb-wiki-dir/balanaced_mse.py) restated for (B, 1) inputs."""
    var = sigma**2
    if method == "bmc":
        logits = -0.5 * (pred - target.T) ** 2 / var
        return (
            torch.nn.functional.cross_entropy(logits, torch.arange(len(pred))) * (2 * var).detach()
        )
    mse = (pred - target) ** 2 / 2 / var
    if method == "bni":
        bal = -0.5 * (pred - CENTERS) ** 2 / var + WEIGHTS.log()
    else:
        mse = mse + 0.5 * var.log()
        total = VARIANCES + var
        bal = -0.5 * total.log() - 0.5 * (pred - CENTERS) ** 2 / total + WEIGHTS.log()
    return ((mse + torch.logsumexp(bal, dim=-1, keepdim=True)) * (2 * var).detach()).mean()


@pytest.mark.parametrize("method", ["bmc", "bni", "gai"])
def test_equals_the_official_functions_with_gradients(method):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(16, 1, generator=g, dtype=F64) * 2
    pred = (target + torch.randn(16, 1, generator=g, dtype=F64)).requires_grad_(True)
    sigma = torch.tensor(0.8, dtype=F64, requires_grad=True)
    priors = {"prior_centers": CENTERS, "prior_weights": WEIGHTS, "prior_variances": VARIANCES}
    ours = F.balanced_mse(
        pred, target, method=method, noise_sigma=sigma, **(priors if method != "bmc" else {})
    )
    ref = official(method, pred, target, sigma)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(
        torch.autograd.grad(ours, (pred, sigma)),
        torch.autograd.grad(ref, (pred, sigma)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


def test_bmc_of_one_element_is_zero_and_batch_order_does_not_matter():
    assert F.balanced_mse(torch.tensor([3.0]), torch.tensor([-1.0])).item() == 0.0
    g = torch.Generator().manual_seed(1)
    p, y = torch.randn(10, generator=g, dtype=F64), torch.randn(10, generator=g, dtype=F64)
    perm = torch.randperm(10, generator=g)
    torch.testing.assert_close(
        F.balanced_mse(p, y, reduction="none")[perm],
        F.balanced_mse(p[perm], y[perm], reduction="none"),
    )


@pytest.mark.parametrize("method", ["bmc", "bni"])
def test_loss_falls_with_the_error(method):
    y = torch.linspace(-2, 2, 9, dtype=F64)
    kw = {"prior_centers": CENTERS, "prior_weights": WEIGHTS} if method == "bni" else {}
    values = [F.balanced_mse(y + e, y, method=method, **kw).item() for e in (1.0, 0.5, 0.1, 0.0)]
    assert values == sorted(values, reverse=True)


def test_sigma_sign_is_irrelevant_and_zero_is_an_error():
    p, y = torch.randn(6, dtype=F64), torch.randn(6, dtype=F64)
    torch.testing.assert_close(
        F.balanced_mse(p, y, noise_sigma=-2.0), F.balanced_mse(p, y, noise_sigma=2.0)
    )
    torch.testing.assert_close(
        F.balanced_mse(p, y, noise_sigma=torch.tensor([2.0])), F.balanced_mse(p, y, noise_sigma=2.0)
    )
    for bad in (0.0, float("inf"), torch.tensor(0.0)):
        with pytest.raises(
            ValueError, match=r"^balanced_mse: noise_sigma expected a finite non-zero"
        ):
            F.balanced_mse(p, y, noise_sigma=bad)
    with pytest.raises(TypeError, match=r"^balanced_mse: noise_sigma expected"):
        F.balanced_mse(p, y, noise_sigma=torch.ones(2))


def test_missing_or_bad_priors_raise_clearly():
    p, y = torch.randn(6), torch.randn(6)
    with pytest.raises(ValueError, match=r"^balanced_mse: prior_centers expected a 1-D tensor"):
        F.balanced_mse(p, y, method="bni")
    with pytest.raises(ValueError, match=r"^balanced_mse: prior_weights expected shape \(3,\)"):
        F.balanced_mse(p, y, method="bni", prior_centers=[0.0, 1.0, 2.0], prior_weights=[1.0])
    with pytest.raises(ValueError, match=r"^balanced_mse: prior_weights expected at least one"):
        F.balanced_mse(p, y, method="bni", prior_centers=[0.0, 1.0], prior_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"^balanced_mse: prior_variances expected .*variances"):
        F.balanced_mse(
            p, y, method="gai", prior_centers=[0.0], prior_weights=[1.0], prior_variances=[0.0]
        )
    with pytest.raises(ValueError, match=r"^balanced_mse: method expected one of"):
        F.balanced_mse(p, y, method="lds")


def test_module_learns_sigma():
    g = torch.Generator().manual_seed(2)
    y = torch.randn(64, 1, generator=g)
    pred = y + 0.3 * torch.randn(64, 1, generator=g)
    loss_fn = BalancedMSE(init_noise_sigma=2.0)
    opt = torch.optim.SGD(loss_fn.sigma_parameters(), lr=0.05)
    before = loss_fn.noise_sigma.item()
    for _ in range(20):
        opt.zero_grad()
        loss_fn(pred, y).backward()
        opt.step()
    # With predictions this close, the likelihood prefers a smaller noise scale.
    assert abs(loss_fn.noise_sigma.item()) < before
    torch.testing.assert_close(
        loss_fn(pred, y), F.balanced_mse(pred, y, noise_sigma=loss_fn.noise_sigma.detach())
    )


def test_module_passes_its_config_and_rejects_a_fixed_sigma():
    loss_fn = BalancedMSE(
        method="bni", prior_centers=[0.0, 1.0], prior_weights=[0.5, 0.5], reduction="sum"
    )
    p, y = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(
        loss_fn(p, y),
        F.balanced_mse(
            p, y, method="bni", prior_centers=[0.0, 1.0], prior_weights=[0.5, 0.5], reduction="sum"
        ),
    )
    with pytest.raises(TypeError, match=r"^BalancedMSE: noise_sigma expected no value"):
        BalancedMSE(noise_sigma=1.0)
    with pytest.raises(ValueError, match=r"^BalancedMSE: init_noise_sigma expected"):
        BalancedMSE(init_noise_sigma=0.0)
    assert isinstance(loss_fn.loss, losslab.BalancedMSELoss)


def test_module_docstring_example_runs():
    import doctest

    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(BalancedMSE, "BalancedMSE", globs={}):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
