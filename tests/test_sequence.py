"""EMO, EISL and DCO against their official formulations and the papers' oracle values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import losslab
from losslab import functional as F
from losslab.functional import _sequence_ops
from tests.reference import REFERENCE

F64 = torch.float64


def batch(seed: int, b: int = 3, t: int = 5, v: int = 7, scale: float = 2.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, t, v, generator=g, dtype=F64) * scale
    return z.to(dtype), torch.randint(v, (b, t), generator=g)


def embedding(seed: int, v: int = 7, d: int = 3) -> torch.Tensor:
    return torch.randn(v, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few rows, so that every loop of the chunked functions runs many times."""
    monkeypatch.setattr(_sequence_ops, "CHUNK_ELEMENTS", 16)


# ----------------------------------------------------------------------------- chunked ops


@pytest.mark.parametrize("chunked", [False, True])
def test_gathered_log_softmax_equals_plain(chunked, request):
    if chunked:
        request.getfixturevalue("small_chunks")
    z, y = batch(0, t=6)
    idx = y[:, None, :].expand(3, 6, 6)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    got = _sequence_ops.gathered_log_softmax(a, idx)
    want = torch.log_softmax(b, dim=-1).gather(-1, idx)
    torch.testing.assert_close(got, want)
    g = torch.randn(got.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.autograd.gradcheck(
        lambda x: _sequence_ops.gathered_log_softmax(x, idx[:1]), (z[:1].clone().requires_grad_(),)
    )


@pytest.mark.parametrize("chunked", [False, True])
def test_emo_terms_equal_plain(chunked, request):
    if chunked:
        request.getfixturevalue("small_chunks")
    z, y = batch(1)
    e = embedding(2)
    e = e / e.norm(dim=1, keepdim=True)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    nll, demd = _sequence_ops.emo_terms(a, y, e)
    logp = torch.log_softmax(b, dim=-1)
    cost = 1 - e[y] @ e.t()
    want_nll = -logp.gather(-1, y[..., None]).squeeze(-1)
    want_demd = (logp.exp() * cost).sum(-1)
    torch.testing.assert_close(nll, want_nll)
    torch.testing.assert_close(demd, want_demd)
    (nll * 0.3 + demd * 1.7).sum().backward()
    (want_nll * 0.3 + want_demd * 1.7).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


# ----------------------------------------------------------------------------- EMO


def official_emo(logits, labels, cost_embedding, mode):
    """EMOLoss 0.0.3 (PyPI) per token, without its next-token shift: the formula written out."""
    v = logits.shape[-1]
    flat = logits.reshape(-1, v)
    mle = torch.nn.functional.cross_entropy(flat, labels.reshape(-1), reduction="none")
    onehot = torch.nn.functional.one_hot(labels.reshape(-1), v).to(logits.dtype)
    emb = cost_embedding / cost_embedding.norm(dim=1, keepdim=True)
    q = torch.softmax(logits.reshape(-1, v), dim=-1)
    emo = 1 - ((onehot @ emb) * (q @ emb)).sum(-1)
    if mode == 1:
        ratio = torch.clamp((mle / (emo + 1e-10)).detach(), max=3.0)
        return ((ratio * emo + mle) * 0.5).mean()
    return ((emo / (mle + 1e-10)).detach() * mle + emo).mean()


@pytest.mark.parametrize("mode", [1, 2])
def test_emo_matches_the_official_package(mode):
    z, y = batch(3)
    e = embedding(4)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    got = F.emo(a, y, embedding=e, mode=mode)
    want = official_emo(b, y, e, mode)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    "cfg",
    [
        {"mode": 0},
        {"mode": 1},
        {"mode": 2},
        {"mode": 1, "max_ratio": None, "exclude_target": True},
        {"mode": 0, "exclude_target": True},
    ],
)
def test_emo_oracle_with_an_embedding(cfg):
    spec = losslab.loss_info("emo")
    z, y = batch(5)
    e = embedding(6)
    full = spec.config(**cfg, embedding=e)
    got = F.emo(z, y, **full, reduction="none")
    oracle_cfg = {**full, "embedding": e.tolist()}
    want = torch.tensor(
        [REFERENCE["emo"](z[i].tolist(), y[i].tolist(), [True] * 5, oracle_cfg) for i in range(3)],
        dtype=F64,
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_exclude_target_changes_the_value_not_the_gradient():
    z, y = batch(7)
    e = embedding(8)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    plain = F.emo(a, y, embedding=e)
    adaptive = F.emo(b, y, embedding=e, exclude_target=True)
    p_y = torch.softmax(z, -1).gather(-1, y[..., None]).squeeze(-1)
    torch.testing.assert_close(adaptive - plain, p_y.mean())
    plain.backward()
    adaptive.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_emo_mode1_equals_nll_in_value_below_the_cap():
    z, y = batch(9, scale=0.5)
    e = embedding(10)
    nll = torch.nn.functional.cross_entropy(z.transpose(1, 2), y, reduction="none")
    out = F.emo(z, y, embedding=e, mode=1, max_ratio=None, reduction="none")
    torch.testing.assert_close(out, nll)


def test_emo_orthonormal_embedding_is_one_minus_p_target():
    z, y = batch(11)
    p_y = torch.softmax(z, -1).gather(-1, y[..., None]).squeeze(-1)
    for emb in (None, torch.eye(7, dtype=F64) * 3.0):
        torch.testing.assert_close(F.emo(z, y, embedding=emb, reduction="none"), 1 - p_y)


def test_emo_is_zero_at_the_target_distribution():
    y = torch.tensor([[0, 3, 6]])
    z = torch.full((1, 3, 7), -1e4, dtype=F64).scatter(2, y[..., None], 1e4)
    assert F.emo(z, y, embedding=embedding(12)).abs().item() < 1e-12


def test_emo_cost_depends_on_the_embedding_geometry():
    # Mass on a token close to the target costs less than mass on a distant one.
    e = torch.tensor([[1.0, 0.0], [0.99, 0.14], [-1.0, 0.0]], dtype=F64)
    y = torch.tensor([[0]])
    near = torch.tensor([[[0.0, 2.0, -9.0]]], dtype=F64)
    far = torch.tensor([[[0.0, -9.0, 2.0]]], dtype=F64)
    assert F.emo(near, y, embedding=e) < 0.1 * F.emo(far, y, embedding=e)
    # Cross-entropy cannot tell them apart.
    ce_near, ce_far = F.ce(near.transpose(1, 2), y), F.ce(far.transpose(1, 2), y)
    assert ce_near.item() == pytest.approx(ce_far.item())


def test_emo_embedding_path_gradcheck_compile_and_half():
    z, y = batch(13, b=2, t=3, v=5)
    e = embedding(14, v=5)
    x = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: F.emo(a, y, embedding=e, reduction="none"), (x,))
    z32, e32 = z.float(), e.float()
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda a: F.emo(a, y, embedding=e32), fullgraph=True, backend="aot_eager"
    )
    torch.testing.assert_close(compiled(z32), F.emo(z32, y, embedding=e32))
    for dtype in (torch.float16, torch.bfloat16):
        out = F.emo(z.to(dtype), y, embedding=e.to(dtype), reduction="none")
        ref = F.emo(z.to(dtype).to(F64), y, embedding=e.to(dtype).to(F64), reduction="none")
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.to(F64), ref, rtol=2e-4, atol=2e-5)


def test_emo_module_keeps_the_embedding_as_a_buffer():
    e = embedding(15)
    mod = losslab.EMOLoss(embedding=e, mode=1)
    assert "embedding" in dict(mod.named_buffers())
    z, y = batch(16)
    torch.testing.assert_close(mod(z, y), F.emo(z, y, embedding=e, mode=1))
    rebuilt = losslab.EMOLoss.from_config(mod.get_config())
    torch.testing.assert_close(rebuilt.to(F64)(z, y), mod(z, y))


def test_emo_embedding_errors():
    z, y = batch(17)
    cases = [
        (torch.ones(6, 3), ValueError, r"embedding expected shape \(7, D\)"),
        (torch.ones(7, 3, dtype=torch.long), TypeError, r"embedding expected a float tensor"),
        (torch.full((7, 3), float("nan")), ValueError, r"embedding expected finite values"),
        ([[1.0]] * 7, TypeError, r"embedding expected a float tensor"),
    ]
    for emb, exc, msg in cases:
        with pytest.raises(exc, match=rf"^emo: {msg}"):
            F.emo(z, y, embedding=emb)


# ----------------------------------------------------------------------------- EISL


def official_eisl(logits, target, ngrams, gumbel):
    """EISL.py's batch_log_EISL_cnn written out (device-agnostic; softmax without noise
    unless ``gumbel``)."""
    lp = torch.log_softmax(logits, dim=-1)
    b, t, _ = lp.shape
    lp = torch.relu(lp + 20) - 20
    cost = lp.gather(2, target[:, None, :].expand(b, t, t)).unsqueeze(1)
    total = torch.zeros((), dtype=lp.dtype)
    for n in ngrams:
        eye = torch.eye(n, dtype=lp.dtype).view(1, 1, n, n)
        term = torch.nn.functional.conv2d(cost, eye) / n
        term = term.squeeze(1)
        if gumbel:
            w = torch.nn.functional.gumbel_softmax(term, tau=1, dim=1)
        else:
            w = torch.softmax(term, dim=1)
        total = total + term.mul(w).sum(1).mean(1).sum() / len(ngrams)
    return -total / b


@pytest.mark.parametrize("ngrams", [(1, 2), (1, 2, 3, 4), (3,)])
def test_eisl_matches_the_official_convolution(ngrams):
    z, y = batch(20, b=4, t=7)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    got = F.eisl(a, y, ngrams=ngrams, reduction="sum") / 4
    want = official_eisl(b, y, ngrams, gumbel=False)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_eisl_gumbel_noise_matches_the_official_draws():
    z, y = batch(21, b=2, t=6)
    torch.manual_seed(5)
    got = F.eisl(z, y, ngrams=(2,), gumbel=True, reduction="sum") / 2
    torch.manual_seed(5)
    want = official_eisl(z, y, (2,), gumbel=True)
    torch.testing.assert_close(got, want)
    torch.manual_seed(6)
    assert F.eisl(z, y, ngrams=(2,), gumbel=True, reduction="sum") / 2 != want


def test_eisl_full_length_ngram_is_aligned_nll():
    z, y = batch(22, t=5)
    nll = torch.nn.functional.cross_entropy(z.transpose(1, 2), y, reduction="none").mean(1)
    torch.testing.assert_close(F.eisl(z, y, ngrams=(5,), reduction="sum"), nll.sum())
    # Sizes longer than the sequence fall back to the same quantity.
    torch.testing.assert_close(F.eisl(z, y, ngrams=(9,), reduction="sum"), nll.sum())


def test_eisl_is_more_edit_invariant_than_cross_entropy():
    # A model that predicts the target one position late: EISL barely changes, CE jumps.
    g = torch.Generator().manual_seed(23)
    y = torch.randint(8, (1, 10), generator=g)
    late = torch.cat([y[:, :1], y[:, :-1]], dim=1)
    z = torch.full((1, 10, 8), -3.0, dtype=F64).scatter(2, late[..., None], 3.0)
    ce_aligned = F.ce(z.transpose(1, 2), late).item()
    ce_shifted = F.ce(z.transpose(1, 2), y).item()
    eisl_aligned = F.eisl(z, late, reduction="sum").item()
    eisl_shifted = F.eisl(z, y, reduction="sum").item()
    assert ce_shifted - ce_aligned > 4.0
    assert eisl_shifted - eisl_aligned < 0.3 * (ce_shifted - ce_aligned)


def test_eisl_ngram_errors():
    z, y = batch(24)
    for bad in ((), (0, 1), (1.5,), 2, (True,)):
        with pytest.raises(ValueError, match=r"^eisl: ngrams expected a non-empty tuple"):
            F.eisl(z, y, ngrams=bad)


# ----------------------------------------------------------------------------- DCO


def one_token(p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-token sequence whose target has probability ``p`` (two classes)."""
    z = torch.tensor([[[math.log(p), math.log1p(-p)]]], dtype=F64)
    return z, torch.tensor([[0]])


def factor(p: float, n: float) -> float:
    return n * (1 - p) ** (n - 1) * p / (1 - (1 - p) ** n)


def test_dco_paper_values():
    z, y = one_token(0.5)
    x = z.clone().requires_grad_(True)
    out = F.dco(x, y, n=4)
    assert out.item() == pytest.approx(0.064539, abs=1e-6)
    out.backward()
    ce_grad = torch.tensor([[[-0.5, 0.5]]], dtype=F64)  # d(-log p_0)/dz at p = 0.5
    torch.testing.assert_close(x.grad, factor(0.5, 4) * ce_grad)
    assert factor(0.5, 4) == pytest.approx(0.266667, abs=1e-6)


def test_dco_gradient_factor_vanishes_once_confident():
    z, y = one_token(0.9)
    x = z.clone().requires_grad_(True)
    F.dco(x, y, n=16).backward()
    assert x.grad.abs().max().item() == pytest.approx(0.1 * factor(0.9, 16), rel=1e-6)
    assert factor(0.9, 16) == pytest.approx(1.44e-14, rel=0.01)


def test_dco_n1_is_sequence_cross_entropy():
    z, y = batch(30)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    got = F.dco(a, y, n=1, reduction="sum")
    want = torch.nn.functional.cross_entropy(b.transpose(1, 2), y, reduction="sum")
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)
    # "mean" divides by the tokens, so it is the token-mean cross-entropy.
    torch.testing.assert_close(
        F.dco(z, y, n=1), torch.nn.functional.cross_entropy(z.transpose(1, 2), y)
    )


def test_dco_factor_in_unit_interval_and_decreasing():
    grads = []
    for p in (1e-30, 1e-6, 0.01, 0.1, 0.3, 0.6, 0.99):
        z, y = one_token(p)
        x = z.clone().requires_grad_(True)
        F.dco(x, y, n=8).backward()
        # d(-log p)/dz_0 = -(1 - p): the factor is the ratio.
        grads.append(-x.grad[0, 0, 0].item() / (1 - p))
    assert all(0 < g <= 1 + 1e-12 for g in grads)
    assert all(a > b for a, b in itertools.pairwise(grads))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dco_asymptote_for_tiny_sequence_probability(dtype):
    for log_p in (-30.0, -39.9, -40.1, -60.0, -5000.0):
        z = torch.tensor([[[log_p, 0.0]]], dtype=F64)
        z = (z - torch.logsumexp(z, -1, keepdim=True)).to(dtype)
        x = z.clone().requires_grad_(True)
        out = F.dco(x, torch.tensor([[0]]), n=10)
        out.backward()
        lp = torch.log_softmax(z.double(), -1)[0, 0, 0].item()
        # float32 holds the loss (about -log p) to a relative 1e-7
        tol = 1e-9 if dtype == F64 else 1e-6 * (1 - lp)
        assert out.item() + lp == pytest.approx(-math.log(10), abs=tol)
        assert x.grad[0, 0, 0].item() == pytest.approx(-1.0, abs=1e-5)


def test_dco_min_factor_drops_confident_sequences():
    z = torch.zeros(2, 1, 2, dtype=F64)
    z[0, 0, 0] = 4.0  # p = 0.98: factor 2e-13 at N = 8
    z[1, 0, 0] = -3.0  # p = 0.047: factor 0.84
    y = torch.zeros(2, 1, dtype=torch.long)
    both = F.dco(z, y, n=8, reduction="none")
    kept = F.dco(z, y, n=8, min_factor=0.1, reduction="none")
    assert kept[0, 0] == 0 and kept[1, 0] == both[1, 0]
    torch.testing.assert_close(F.dco(z, y, n=8, min_factor=0.1), both[1, 0])
    # All sequences dropped: an attached zero, not NaN.
    x = z[:1].clone().requires_grad_(True)
    out = F.dco(x, y[:1], n=8, min_factor=0.5)
    assert out.item() == 0.0 and out.requires_grad
