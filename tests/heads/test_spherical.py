"""SphericalOutput: O(D^2) loss / gradient / factored update == naive O(D V) computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslab.heads.spherical import SphericalOutput


def naive_loss(w, h, c, loss, a=1.0, b=0.0, eps=1e-6, reduction="mean"):
    """Dense definitions on o = W h (O(V D)), independent of the statistics formulas."""
    o = h @ w.T
    oc = o.gather(1, c[:, None]).squeeze(1)
    if loss == "squared_error":
        rows = ((o - F.one_hot(c, w.shape[0]).to(o.dtype)) ** 2).sum(1)
    elif loss == "spherical_softmax":
        p = (o * o + eps) / (o * o + eps).sum(1, keepdim=True)
        rows = -torch.log(p.gather(1, c[:, None]).squeeze(1))
    else:
        z = (oc - o.mean(1)) / o.std(1, unbiased=False)
        rows = F.softplus(a * (b - z)) / a
    return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]


@pytest.mark.parametrize("loss", ["z_loss", "squared_error", "spherical_softmax"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_grad_and_k_updates_match_naive(loss, reduction):
    torch.manual_seed(0)
    D, V, m, k, lr = 6, 40, 5, 4, 0.05
    w0 = torch.randn(V, D, dtype=torch.float64) / D**0.5
    head = SphericalOutput.from_weight(
        w0, loss=loss, a=2.0 if loss == "z_loss" else 1.0, b=0.5, reduction=reduction
    )
    w = w0.clone().requires_grad_()
    for step in range(k):
        h = torch.randn(m, D, dtype=torch.float64)
        c = torch.randint(0, V, (m,))
        c[1] = c[0]  # a repeated class in the batch
        go = (
            torch.rand(m, dtype=torch.float64)
            if reduction == "none"
            else torch.tensor(0.7, dtype=torch.float64)
        )
        hh = h.clone().requires_grad_()
        got = head(hh, c)
        got.backward(go)
        h2 = h.clone().requires_grad_()
        ref = naive_loss(w, h2, c, loss, a=head.a, b=0.5, reduction=reduction)
        ref.backward(go)
        torch.testing.assert_close(got, ref.detach(), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(hh.grad, h2.grad, rtol=1e-9, atol=1e-10)
        head.step(lr)
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
        # parameters after each update: W, and the O(D^2) statistics Q = W^T W, wbar = W^T 1
        torch.testing.assert_close(head.weight, w.detach(), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(head.Q, w.detach().T @ w.detach(), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(head.wbar, w.detach().sum(0), rtol=1e-9, atol=1e-10)
        if step == 1:
            head.renormalize()  # W unchanged by the upkeep
            torch.testing.assert_close(head.weight, w.detach(), rtol=1e-9, atol=1e-10)


def test_float32_training_tracks_naive_and_logits():
    torch.manual_seed(1)
    D, V, m = 16, 300, 32
    w0 = torch.randn(V, D) / D**0.5
    head = SphericalOutput.from_weight(w0, loss="z_loss")
    w = w0.clone().requires_grad_()
    for _ in range(10):
        h = torch.randn(m, D)
        c = torch.randint(0, V, (m,))
        head(h, c).backward()  # h without requires_grad: the update is still recorded
        head.step(0.1)
        naive_loss(w, h, c, "z_loss").backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
        w.grad = None
    torch.testing.assert_close(head.weight, w.detach(), rtol=1e-4, atol=1e-5)
    h = torch.randn(3, D)
    torch.testing.assert_close(head.logits(h), h @ w.detach().T, rtol=1e-4, atol=1e-4)


def test_bad_inputs():
    head = SphericalOutput(4, 10)
    with pytest.raises(
        ValueError,
        match=r"SphericalOutput: target expected class indices in \[0, 9\] \(10 classes\), "
        "got class 10",
    ):
        head(torch.randn(2, 4), torch.tensor([1, 10]))
    with pytest.raises(ValueError, match=r"h expected shape \(m, 4\)"):
        head(torch.randn(2, 5), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="target expected a tensor of integer class indices"):
        head(torch.randn(2, 4), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="SphericalOutput: loss expected one of"):
        SphericalOutput(4, 10, loss="softmax")
    with pytest.raises(ValueError, match="SphericalOutput: reduction expected one of"):
        SphericalOutput(4, 10, reduction="avg")
