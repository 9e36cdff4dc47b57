"""Balanced softmax, logit adjustment and their helpers: identities, the balanced-error
calibration of logit adjustment, and clear errors for bad priors and counts."""

from __future__ import annotations

import pytest
import torch

import losslab
from losslab import functional as F

F64 = torch.float64


def logits_and_targets(seed: int, n: int = 12, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=F64) * 2, torch.randint(c, (n,), generator=g)


def test_uniform_counts_and_priors_give_cross_entropy():
    z, y = logits_and_targets(0)
    ce = F.ce(z, y, reduction="none")
    torch.testing.assert_close(
        F.balanced_softmax(z, y, class_counts=torch.full((5,), 7.0)), ce.mean()
    )
    uniform = torch.full((5,), 0.2, dtype=F64)
    torch.testing.assert_close(F.logit_adjusted(z, y, priors=uniform, reduction="none"), ce)
    torch.testing.assert_close(
        F.logit_adjusted(z, y, priors=torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1]), tau=0.0), ce.mean()
    )


def test_balanced_softmax_is_ce_of_shifted_logits_and_equals_logit_adjustment():
    z, y = logits_and_targets(1)
    counts = torch.tensor([900.0, 300.0, 60.0, 30.0, 10.0], dtype=F64)
    bs = F.balanced_softmax(z, y, class_counts=counts, reduction="none")
    torch.testing.assert_close(bs, F.ce(z + counts.log(), y, reduction="none"))
    la = F.logit_adjusted(z, y, priors=counts / counts.sum(), tau=1.0, reduction="none")
    torch.testing.assert_close(bs, la)
    torch.testing.assert_close(
        F.logit_adjusted(z, y, priors=counts / counts.sum(), tau=0.5, reduction="none"),
        F.ce(z + 0.5 * (counts / counts.sum()).log(), y, reduction="none"),
    )


def test_token_logits_take_the_adjustment_on_the_class_axis():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 4, 6, generator=g, dtype=F64)
    y = torch.randint(4, (3, 6), generator=g)
    priors = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64)
    torch.testing.assert_close(
        F.logit_adjusted(z, y, priors=priors, reduction="none"),
        F.ce(z + priors.log()[None, :, None], y, reduction="none"),
    )


def _minimise_expected_loss(loss, eta: torch.Tensor, steps: int = 800) -> torch.Tensor:
    """argmin_z sum_k eta_k loss(z, k), one row per row of ``eta``."""
    trials, c = eta.shape
    z = torch.zeros(trials, c, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    labels = torch.arange(c).repeat(trials)
    for _ in range(steps):
        opt.zero_grad()
        rows = z.repeat_interleave(c, dim=0)
        (loss(rows, labels).view(trials, c) * eta).sum().backward()
        opt.step()
    return z.detach()


def test_logit_adjustment_is_calibrated_for_the_balanced_error():
    # With priors pi, the Bayes rule of the balanced error predicts argmax eta_k / pi_k.
    # Each eta below has a different argmax under that rule than under eta itself, so a
    # loss calibrated for the standard error (CE) picks the other class.
    priors = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=F64)
    eta = torch.tensor(
        [[0.5, 0.3, 0.15, 0.05], [0.45, 0.2, 0.1, 0.25], [0.4, 0.35, 0.2, 0.05]], dtype=F64
    )
    balanced = (eta / priors).argmax(1)
    assert not torch.equal(balanced, eta.argmax(1))

    def la(z, k):
        return F.logit_adjusted(z, k, priors=priors, reduction="none")

    def ce(z, k):
        return F.ce(z, k, reduction="none")

    z = _minimise_expected_loss(la, eta)
    assert torch.equal(z.argmax(1), balanced)
    # The minimiser is the balanced posterior: softmax(z + log pi) = eta.
    torch.testing.assert_close(torch.softmax(z + priors.log(), 1), eta, atol=2e-3, rtol=0)
    assert torch.equal(_minimise_expected_loss(ce, eta).argmax(1), eta.argmax(1))


def test_post_hoc_adjustment():
    z, _ = logits_and_targets(3)
    priors = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=F64)
    torch.testing.assert_close(F.post_hoc_logit_adjust(z, priors), z - priors.log())
    torch.testing.assert_close(F.post_hoc_logit_adjust(z, priors.tolist(), tau=0.0), z)
    out = F.post_hoc_logit_adjust(z.float(), priors, tau=2.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (z - 2 * priors.log()).float())


@pytest.mark.parametrize(
    ("priors", "error", "message"),
    [
        ([0.5, 0.3, 0.1, 0.05, 0.06], ValueError, r"priors expected .*summing to 1, got values"),
        ([0.6, 0.3, 0.1, 0.0, 0.0], ValueError, r"priors expected .*got 0\.0 at index 3"),
        ([0.5, 0.5], ValueError, r"priors expected shape \(5,\)"),
        (0.2, TypeError, r"priors expected a 1-D float tensor"),
        ([[0.5, 0.5]], TypeError, r"priors expected a 1-D float tensor"),
    ],
)
def test_bad_priors_raise_one_clear_error(priors, error, message):
    z, y = logits_and_targets(4)
    value = torch.tensor(priors, dtype=F64) if isinstance(priors, list) else priors
    with pytest.raises(error, match=rf"^logit_adjusted: {message}"):
        F.logit_adjusted(z, y, priors=value)
    with pytest.raises(error, match=rf"^post_hoc_logit_adjust: {message}"):
        F.post_hoc_logit_adjust(z, value)


def test_bad_counts_and_construction_errors():
    z, y = logits_and_targets(5)
    with pytest.raises(ValueError, match=r"^balanced_softmax: class_counts expected .*index 1"):
        F.balanced_softmax(z, y, class_counts=torch.tensor([3.0, 0.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^logit_adjusted: priors expected"):
        losslab.LogitAdjustedLoss(priors=[0.5, 0.6])
    with pytest.raises(ValueError, match=r"^logit_adjusted: tau expected"):
        losslab.LogitAdjustedLoss(tau=-1.0)


def test_module_keeps_priors_as_a_buffer_and_round_trips():
    priors = [0.5, 0.25, 0.125, 0.0625, 0.0625]
    mod = losslab.LogitAdjustedLoss(priors=priors, tau=1.5)
    assert "priors" in dict(mod.named_buffers())
    z, y = logits_and_targets(6)
    torch.testing.assert_close(
        mod.double()(z, y), F.logit_adjusted(z, y, priors=torch.tensor(priors, dtype=F64), tau=1.5)
    )
    assert type(mod).from_config(mod.get_config()).get_config() == mod.get_config()


def test_class_balanced_weights_match_the_effective_number_formula():
    counts = torch.tensor([5000, 2000, 500, 50, 5])
    for beta in (0.9, 0.999, 0.9999):
        w = F.class_balanced_weights(counts, beta, dtype=F64)
        raw = [(1 - beta) / (1 - beta ** int(n)) for n in counts]
        want = torch.tensor(raw, dtype=F64) / sum(raw) * len(raw)
        torch.testing.assert_close(w, want)
        assert torch.all(w[1:] >= w[:-1])  # rarer classes never weigh less
    torch.testing.assert_close(F.class_balanced_weights([3.0, 30.0], 0.0), torch.ones(2))
    # beta -> 1: inverse class frequencies.
    w = F.class_balanced_weights(counts.double(), 1 - 1e-9, dtype=F64)
    inv = 1 / counts.double()
    torch.testing.assert_close(w, inv / inv.sum() * 5, rtol=1e-4, atol=0)
    assert F.class_balanced_weights(counts).dtype == torch.float32


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (([10, 0, 5],), ValueError, r"counts expected finite positive class counts, got 0\.0"),
        (([10, -1],), ValueError, r"counts expected finite positive"),
        (([],), ValueError, r"counts expected a non-empty 1-D tensor"),
        (("10",), TypeError, r"counts expected a 1-D tensor or sequence"),
        (([10, 5], 1.0), ValueError, r"beta expected a real number in \[0, 1\)"),
        (([10, 5], -0.1), ValueError, r"beta expected"),
    ],
)
def test_class_balanced_weights_errors(args, error, message):
    with pytest.raises(error, match=rf"^class_balanced_weights: {message}"):
        F.class_balanced_weights(*args)


def test_class_balanced_weights_feed_any_loss():
    z, y = logits_and_targets(7)
    w = F.class_balanced_weights(torch.bincount(y, minlength=5).clamp_min(1), 0.99, dtype=F64)
    torch.testing.assert_close(
        F.focal(z, y, weight=w, reduction="sum"),
        (F.focal(z, y, reduction="none") * w[y]).sum(),
    )


@pytest.mark.parametrize("helper", [F.class_balanced_weights, F.post_hoc_logit_adjust])
def test_helper_docstring_examples_run(helper):
    import doctest

    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(helper, helper.__name__, globs={}):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0


def test_class_balanced_ce_is_ce_weighted_by_the_effective_number_per_sample():
    z, y = logits_and_targets(8, n=40)
    counts = torch.tensor([900.0, 300.0, 60.0, 30.0, 10.0], dtype=F64)
    for beta in (0.0, 0.9, 0.999, 0.9999):
        w = F.class_balanced_weights(counts, beta, dtype=F64)
        ce = F.ce(z, y, reduction="none")
        got = F.class_balanced_ce(z, y, class_counts=counts, beta=beta, reduction="none")
        torch.testing.assert_close(got, w[y] * ce)
        # the mean is over samples (the official code), not over the weights
        torch.testing.assert_close(
            F.class_balanced_ce(z, y, class_counts=counts, beta=beta), (w[y] * ce).mean()
        )
    torch.testing.assert_close(F.class_balanced_ce(z, y), F.ce(z, y))
    with pytest.raises(ValueError, match=r"^class_balanced_ce: beta expected"):
        losslab.ClassBalancedCELoss(beta=1.0)
    with pytest.raises(ValueError, match=r"^class_balanced_ce: class_counts expected"):
        F.class_balanced_ce(z, y, class_counts=torch.tensor([3.0, 0.0, 1.0, 1.0, 1.0]))
