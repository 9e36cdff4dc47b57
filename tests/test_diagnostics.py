"""Neural-collapse diagnostics: ~0 on an exact simplex-ETF construction, the research
notes' 1-D oracle, an independent numpy oracle, large on random features, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.diagnostics import etf_distance, neural_collapse, simplex_etf

F64 = torch.float64
ALL = [
    "nc1",
    "nc2_norms_means",
    "nc2_angles_means",
    "nc2_angles_std_means",
    "etf_distance_means",
    "nc2_norms_weights",
    "nc2_angles_weights",
    "nc2_angles_std_weights",
    "etf_distance_weights",
    "nc3",
    "nc3_wm_etf",
    "nc4",
]


def collapsed(k=4, d=6, per_class=5, seed=0, noise=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    means = simplex_etf(k, d, generator=g).T * scale  # (K, d), centred: balanced classes
    y = torch.arange(k).repeat(per_class)
    h = means[y] + noise * torch.randn(len(y), d, generator=g, dtype=F64)
    return h, y, 2 * means


@pytest.mark.parametrize(("k", "d"), [(2, 2), (4, 6), (10, 10), (10, 32)])
def test_exact_collapse_gives_zero(k, d):
    h, y, w = collapsed(k, d, seed=k + d)
    nc = neural_collapse(h, y, w, torch.zeros(k, dtype=F64))
    for name in ALL:
        assert getattr(nc, name) <= 1e-12, name
    assert nc.accuracy == 1.0
    assert (nc.num_classes, nc.num_samples, nc.dim) == (k, 5 * k, d)


def test_one_dimensional_oracle():
    # Features {-1-δ, -1+δ, 1-δ, 1+δ}, two classes: NC1 = δ²/2 (research notes).
    delta = 0.1
    h = torch.tensor([[-1 - delta], [-1 + delta], [1 - delta], [1 + delta]], dtype=F64)
    nc = neural_collapse(h, torch.tensor([0, 0, 1, 1]))
    assert nc.nc1 == pytest.approx(delta**2 / 2, rel=1e-12)
    assert nc.nc2_norms_means == pytest.approx(0.0, abs=1e-15)
    assert nc.nc3 is None and nc.nc4 is None


def numpy_oracle(h, y, w, b):
    """NC measures written out in numpy (loops over classes, scipy-style pinv)."""
    h, y, w, b = (np.asarray(a, dtype=np.float64) for a in (h, y, w, b))
    y = y.astype(int)
    k = w.shape[0]
    mu_g = h.mean(0)
    mu = np.stack([h[y == c].mean(0) for c in range(k)])
    sw = sum(np.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(len(h))) / len(h)
    sb = sum(np.outer(mu[c] - mu_g, mu[c] - mu_g) for c in range(k)) / k
    m = (mu - mu_g).T  # d x K

    def cos_stats(v):  # v: K x d rows
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        c = (u @ u.T)[~np.eye(k, dtype=bool)]
        return np.abs(c + 1 / (k - 1)).mean(), c.std(ddof=1)

    def etf(a):
        gram = a @ a.T
        target = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
        return np.linalg.norm(gram / np.linalg.norm(gram) - target)

    norms = np.linalg.norm(m, axis=0)
    wn = np.linalg.norm(w, axis=1)
    wm = w @ m
    pred = (h @ w.T + b).argmax(1)
    ncc = np.stack([np.linalg.norm(h - mu[c], axis=1) for c in range(k)], 1).argmin(1)
    return {
        "nc1": np.trace(sw @ np.linalg.pinv(sb)) / k,
        "nc2_norms_means": norms.std(ddof=1) / norms.mean(),
        "nc2_angles_means": cos_stats(m.T)[0],
        "nc2_angles_std_means": cos_stats(m.T)[1],
        "etf_distance_means": etf(m.T),
        "nc2_norms_weights": wn.std(ddof=1) / wn.mean(),
        "nc2_angles_weights": cos_stats(w)[0],
        "nc2_angles_std_weights": cos_stats(w)[1],
        "etf_distance_weights": etf(w),
        "nc3": np.linalg.norm(w / np.linalg.norm(w) - m.T / np.linalg.norm(m)) ** 2,
        "nc3_wm_etf": np.linalg.norm(
            wm / np.linalg.norm(wm) - (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
        ),
        "nc4": float((pred != ncc).mean()),
        "accuracy": float((pred == y).mean()),
    }


@pytest.mark.parametrize(("n", "d", "k"), [(60, 3, 4), (120, 8, 5), (90, 20, 3)])
def test_matches_a_numpy_oracle(n, d, k):
    g = torch.Generator().manual_seed(n)
    y = torch.randint(k, (n,), generator=g)
    y[:k] = torch.arange(k)
    h = torch.randn(n, d, generator=g, dtype=F64) + 2 * torch.randn(k, d, generator=g)[y]
    w = torch.randn(k, d, generator=g, dtype=F64)
    b = torch.randn(k, generator=g, dtype=F64)
    got = neural_collapse(h, y, w, b).to_dict()
    for key, value in numpy_oracle(h, y, w, b).items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_random_features_are_far_from_collapse():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(1000, 64, generator=g, dtype=F64)
    y = torch.arange(1000) % 10
    nc = neural_collapse(h, y, torch.randn(10, 64, generator=g, dtype=F64))
    assert nc.nc1 > 5
    assert nc.etf_distance_means > 0.3 and nc.etf_distance_weights > 0.3
    assert nc.nc3 > 1 and nc.nc4 > 0.5


def test_more_noise_more_nc1_and_invariances():
    values = [neural_collapse(*collapsed(noise=s, seed=3)[:2]).nc1 for s in (0.01, 0.1, 1.0)]
    assert 0 < values[0] < values[1] < values[2]
    h, y, w = collapsed(noise=0.2, seed=4)
    base = neural_collapse(h, y, w)
    scaled = neural_collapse(3.0 * h, y, 5.0 * w)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    permuted = neural_collapse(h[perm], y[perm], w)
    for name in ALL:
        assert getattr(scaled, name) == pytest.approx(getattr(base, name), rel=1e-9, abs=1e-12)
        assert getattr(permuted, name) == pytest.approx(getattr(base, name), rel=1e-9, abs=1e-12)


def test_simplex_etf_properties():
    for k, d in [(2, None), (5, None), (5, 9)]:
        m = simplex_etf(k, d, generator=torch.Generator().manual_seed(k))
        assert m.shape == (d or k, k)
        gram = m.T @ m
        want = torch.full((k, k), -1.0 / (k - 1), dtype=F64).fill_diagonal_(1.0)
        torch.testing.assert_close(gram, want)
        torch.testing.assert_close(m.sum(1), torch.zeros(d or k, dtype=F64))
        assert int(torch.linalg.matrix_rank(m)) == k - 1
        assert etf_distance(m.T) < 1e-12
    assert simplex_etf(3, dtype=torch.float32).dtype == torch.float32
    assert etf_distance(torch.eye(4)) == pytest.approx(
        math.sqrt(2 - 2 * math.sqrt(3) / 2), rel=1e-12
    )


def test_unbalanced_classes_use_the_sample_mean():
    h, y, w = collapsed(per_class=3, seed=5)
    extra = torch.cat([y, torch.zeros(4, dtype=torch.long)])
    feats = torch.cat([h, h[:1].repeat(4, 1)])
    nc = neural_collapse(feats, extra, w)
    assert nc.nc1 == pytest.approx(0.0, abs=1e-12) and nc.nc4 == 0.0
    # The global mean moves towards class 0, so the centred means are no longer an ETF.
    assert nc.etf_distance_means > 1e-3


BAD = [
    ({"labels": torch.zeros(6, dtype=torch.long)}, "labels expected at least 2 classes"),
    ({"labels": torch.tensor([0, 0, 2, 2, 0, 2])}, "labels expected every class 0..2"),
    ({"labels": torch.zeros(5, dtype=torch.long)}, r"labels expected integer class indices"),
    ({"labels": torch.zeros(6)}, "labels expected integer class indices"),
    ({"features": torch.zeros(6)}, "features expected a 2-D float array"),
    ({"features": torch.full((6, 2), float("nan"))}, "features expected finite values"),
    ({"features": torch.ones(6, 2, dtype=F64)}, "features expected class means that differ"),
    ({"weight": torch.zeros(3, 5, dtype=F64)}, r"weight expected shape \(K, 2\)"),
    ({"weight": torch.ones(4, 2, dtype=F64)}, "labels expected every class"),
    ({"bias": torch.zeros(3, dtype=F64)}, "bias expected a classifier weight"),
    ({"weight": torch.ones(3, 2, dtype=F64), "bias": torch.zeros(2)}, r"bias expected .* \(3,\)"),
]


@pytest.mark.parametrize(("change", "match"), BAD)
def test_bad_input_is_one_clear_error(change, match):
    g = torch.Generator().manual_seed(0)
    kw = {
        "features": torch.randn(6, 2, generator=g, dtype=F64),
        "labels": torch.tensor([0, 1, 2, 0, 1, 2]),
        **change,
    }
    with pytest.raises((ValueError, TypeError), match=rf"^neural_collapse: {match}"):
        neural_collapse(kw.pop("features"), kw.pop("labels"), **kw)


def test_numpy_inputs():
    h, y, w = collapsed(noise=0.1, seed=6)
    nc = neural_collapse(h.numpy(), y.numpy(), w.numpy())
    assert nc.nc1 == pytest.approx(neural_collapse(h, y, w).nc1, rel=1e-12)
