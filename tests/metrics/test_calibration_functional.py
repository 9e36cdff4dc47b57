"""The functional calibration metrics: naive oracles, official values, bin edges,
property tests (calibrated -> 0, order invariance), input formats and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losslab.metrics import (
    adaptive_ece,
    brier_score,
    classwise_ece,
    ece,
    mce,
    nll,
    reliability,
    reliability_bins,
    smooth_ece,
)
from losslab.metrics._smooth import smooth_ece_of

F64 = torch.float64
METRICS = {
    "ece": ece,
    "mce": mce,
    "adaptive_ece": adaptive_ece,
    "classwise_ece": classwise_ece,
    "brier_score": brier_score,
    "smooth_ece": smooth_ece,
    "nll": nll,
}


# ----------------------------------------------------------------------------- oracles
# Plain Python with math: a loop over bins with the edge rule written out.


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _in_bin(c, b, m):
    lo, hi = b / m, (b + 1) / m
    return lo < c <= hi or (b == 0 and c == 0.0)


def _binned_gap_sum(values, outcomes, m):
    total, gaps = 0.0, []
    for b in range(m):
        members = [i for i, c in enumerate(values) if _in_bin(c, b, m)]
        if members:
            gap = abs(sum(outcomes[i] for i in members) - sum(values[i] for i in members))
            total += gap
            gaps.append(gap / len(members))
    return total, gaps


def naive(name, probs, target, m):
    n, k = len(probs), len(probs[0])
    pred = [max(range(k), key=lambda j, r=r: (r[j], -j)) for r in probs]
    conf = [r[j] for r, j in zip(probs, pred, strict=True)]
    hit = [1.0 if j == y else 0.0 for j, y in zip(pred, target, strict=True)]
    if name == "ece":
        return _binned_gap_sum(conf, hit, m)[0] / n
    if name == "mce":
        return max(_binned_gap_sum(conf, hit, m)[1])
    if name == "classwise_ece":
        total = 0.0
        for c in range(k):
            col = [r[c] for r in probs]
            is_c = [1.0 if y == c else 0.0 for y in target]
            total += _binned_gap_sum(col, is_c, m)[0] / n
        return total / k
    if name == "adaptive_ece":
        s = sorted(conf)
        edges = []
        for b in range(m + 1):
            pos = b * (n - 1) / m
            lo = min(math.floor(pos), n - 1)
            hi = min(lo + 1, n - 1)
            edges.append(s[lo] + (s[hi] - s[lo]) * (pos - lo))
        total = 0.0
        for b in range(m):
            members = [
                i
                for i, c in enumerate(conf)
                if (b == 0 or c > edges[b]) and (b == m - 1 or c <= edges[b + 1])
            ]
            total += abs(sum(hit[i] for i in members) - sum(conf[i] for i in members))
        return total / n
    if name == "brier_score":
        return (
            sum(
                sum((p - (1.0 if j == y else 0.0)) ** 2 for j, p in enumerate(r))
                for r, y in zip(probs, target, strict=True)
            )
            / n
        )
    if name == "nll":
        return -sum(math.log(r[y]) for r, y in zip(probs, target, strict=True)) / n
    raise KeyError(name)


def _sample(seed, n=40, c=4, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=F64) * scale
    return z, torch.randint(c, (n,), generator=g)


@pytest.mark.parametrize(
    "name", ["ece", "mce", "classwise_ece", "adaptive_ece", "brier_score", "nll"]
)
@pytest.mark.parametrize("m", [1, 4, 15])
def test_naive_oracle(name, m):
    z, y = _sample(m)
    probs = [_softmax(row) for row in z.tolist()]
    kw = {} if name in ("brier_score", "nll") else {"n_bins": m}
    got = METRICS[name](z, y, **kw)
    assert got == pytest.approx(naive(name, probs, y.tolist(), m), rel=1e-12, abs=1e-14)


def test_research_oracle_values():
    # conf = [.95, .95, .55, .55], hits = [1, 0, 1, 1] -> ECE(15) = MCE = 0.45
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1])
    assert ece(probs, y, input="probs") == pytest.approx(0.45)
    assert mce(probs, y, input="probs") == pytest.approx(0.45)
    assert adaptive_ece(probs, y, n_bins=2, input="probs") == pytest.approx(0.45)


# relplot 1.0.3 (the authors' package), relplot.smECE(f, y) on the deterministic inputs
# of _quasi_random below; computed once in a scratch environment.
RELPLOT = [
    ((4, 1.0, 0.5), 0.13215133392270428, 1e-12),
    ((50, 1.5, 0.2), 0.08828296027691615, 1e-12),
    ((1000, 1.5, 0.2), 0.10881939758573066, 1e-12),
    ((1000, 1.0, 0.0), 0.01658498862578476, 1e-12),
    ((5000, 3.0, 0.5), 0.2807176564511034, 1e-12),
    # sigma* < 0.01: relplot deposits on round(20 / sigma) // 2 = 1137 intervals, we on 4000.
    ((20000, 1.0, 0.0), 0.007084890753406547, 6e-3),
]


def _quasi_random(n, power, lo):
    i = np.arange(1, n + 1)
    f = lo + (1 - lo) * np.modf(i * 0.6180339887498949)[0]
    u = np.modf(i * 1.4142135623730951)[0]
    return f, (u < f**power).astype(np.float64)


@pytest.mark.parametrize(("case", "official", "rel"), RELPLOT)
def test_smooth_ece_matches_relplot(case, official, rel):
    # relplot takes (prediction, outcome) pairs; the top-label path is tested below.
    f, hit = _quasi_random(*case)
    got, _ = smooth_ece_of(torch.from_numpy(f), torch.from_numpy(hit))
    assert got == pytest.approx(official, rel=rel)


def test_smooth_ece_toy_matches_relplot():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    got = smooth_ece(probs, np.array([0, 1, 0, 1]), input="probs")
    assert got == pytest.approx(0.24443697880668577, rel=1e-12)


# ----------------------------------------------------------------------------- bin edges


@pytest.mark.parametrize("m", [3, 7, 10, 15, 25, 100])
def test_a_confidence_on_an_edge_belongs_to_the_bin_it_closes(m):
    edges = [b / m for b in range(m + 1)]
    bins = reliability_bins(edges, [1.0] * (m + 1), n_bins=m)
    # 0 and 1/M land in the first bin; b/M closes bin b - 1; 1.0 is in the last bin.
    want = np.ones(m)
    want[0] = 2
    np.testing.assert_array_equal(bins.count, want)


def test_edge_values_that_ceil_would_misplace():
    # 0.28 * 25 = 7.000000000000001: ceil-based binning puts 0.28 into (0.28, 0.32].
    assert math.ceil(0.28 * 25) == 8
    bins = reliability_bins([0.28, 0.56, 0.3], [1, 1, 1], n_bins=25)
    assert bins.count[6] == 1 and bins.count[7] == 1  # 0.28 in (0.24, 0.28], 0.3 in (0.28, 0.32]
    assert bins.count[13] == 1  # 0.56 in (0.52, 0.56]


def test_confidence_zero_and_one_and_no_extra_bin():
    bins = reliability_bins([0.0, 1.0, 1.0, np.nextafter(0.0, 1.0)], [0, 1, 1, 0], n_bins=15)
    assert len(bins.count) == 15 and bins.count.sum() == 4
    assert bins.count[0] == 2 and bins.count[-1] == 2
    assert bins.ece == pytest.approx(np.nextafter(0.0, 1.0) / 4)


def test_one_hot_probabilities_are_confidence_one():
    probs = np.eye(3)[[0, 1, 2, 0]]
    y = np.array([0, 1, 2, 1])
    bins = reliability(probs, y, input="probs")
    assert bins.count[-1] == 4
    assert ece(probs, y, input="probs") == pytest.approx(0.25)
    # classwise: probabilities 0 join the first bin of each class
    assert classwise_ece(probs, y, input="probs") == pytest.approx(2 / (4 * 3))


def test_saturated_logits_give_confidence_one():
    z = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], dtype=torch.float32)
    bins = reliability(z, torch.tensor([0, 0]))
    assert bins.count[-1] == 2
    assert ece(z, torch.tensor([0, 0])) == pytest.approx(0.5)


def test_float32_confidence_is_binned_by_its_float64_value():
    c32 = np.float32(0.7)  # 0.699999988...: below the edge 0.7, so in (0.6, 0.7]
    assert float(c32) < 0.7
    assert reliability_bins(np.array([c32]), [1], n_bins=10).count[6] == 1


# ----------------------------------------------------------------------------- properties


def _calibrated(n, k, seed):
    # Probabilities from a Dirichlet and labels drawn from them: calibrated in every sense.
    g = torch.Generator().manual_seed(seed)
    p = torch.distributions.Dirichlet(torch.full((k,), 0.7, dtype=F64)).sample((n,))
    u = torch.rand(n, 1, generator=g, dtype=F64)
    y = (p.cumsum(1) < u).sum(1).clamp_(max=k - 1)
    return p, y


@pytest.mark.parametrize("name", ["ece", "classwise_ece", "adaptive_ece", "smooth_ece"])
def test_calibrated_predictions_tend_to_zero(name):
    torch.manual_seed(0)
    values = []
    for n in (1_000, 10_000, 100_000):
        p, y = _calibrated(n, 4, seed=n)
        values.append(METRICS[name](p, y, input="probs"))
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.012
    # Miscalibrated (sharpened) versions of the same predictions stay far from 0.
    sharp = torch.softmax(torch.log(p) * 3, dim=1)
    assert METRICS[name](sharp, y, input="probs") > 5 * values[2]


@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), ties=st.booleans())
def test_invariant_to_sample_order(seed, n, ties):
    z, y = _sample(seed, n=n, c=3)
    if ties:
        z = z.round()  # many tied confidences, also across bin edges of the adaptive ECE
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    for name, fn in METRICS.items():
        a, b = fn(z, y), fn(z[perm], y[perm])
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), name


def test_logits_equal_their_probabilities_and_numpy_equals_torch():
    z, y = _sample(3, n=25)
    p = torch.softmax(z, dim=1)
    for name, fn in METRICS.items():
        ref = fn(z, y)
        assert fn(p, y, input="probs") == pytest.approx(ref, rel=1e-9), name
        assert fn(z.numpy(), y.numpy()) == ref, name


def test_spatial_dims_equal_flattened():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 4, 5, 2, generator=g, dtype=F64)
    y = torch.randint(4, (3, 5, 2), generator=g)
    flat = z.movedim(1, -1).reshape(-1, 4)
    for name, fn in METRICS.items():
        assert fn(z, y) == fn(flat, y.reshape(-1)), name


def test_empty_input_is_nan():
    for name, fn in METRICS.items():
        assert math.isnan(fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))), name


def test_half_precision_logits():
    z, y = _sample(5)
    for name, fn in METRICS.items():
        assert fn(z.half(), y) == pytest.approx(fn(z.half().double(), y), rel=1e-12), name


def test_top_label_brier():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert brier_score(probs, np.array([0, 0]), input="probs", top_label=True) == pytest.approx(
        (0.1**2 + 0.8**2) / 2
    )


# ----------------------------------------------------------------------------- errors


I3 = np.zeros(3, dtype=int)
Z32 = np.zeros((3, 2))
BAD = [
    (np.zeros(3), I3, {}, ValueError, r"scores expected shape \(N, C\)"),
    (Z32, np.zeros(2, dtype=int), {}, ValueError, r"target expected class indices of shape \(3,\)"),
    (Z32, np.zeros(3), {}, TypeError, "target expected integer class indices"),
    (Z32, np.array([0, 1, 2]), {}, ValueError, r"target expected class indices in \[0, 1\]"),
    (Z32.astype(int), I3, {}, TypeError, "scores expected a floating-point"),
    (np.full((3, 2), np.nan), I3, {}, ValueError, "scores expected finite values"),
    (np.full((3, 2), -np.inf), I3, {}, ValueError, "scores expected at least one finite logit"),
    (
        np.full((3, 2), 0.3),
        I3,
        {"input": "probs"},
        ValueError,
        "scores expected probabilities that sum to 1",
    ),
    (
        np.array([[1.5, -0.5]]),
        I3[:1],
        {"input": "probs"},
        ValueError,
        r"scores expected probabilities in \[0, 1\]",
    ),
    (Z32, I3, {"input": "probas"}, ValueError, "input expected 'logits' or 'probs'"),
    ("text", I3, {}, TypeError, "scores expected a numpy array or torch tensor"),
]


@pytest.mark.parametrize(("scores", "target", "kw", "exc", "match"), BAD)
@pytest.mark.parametrize("name", sorted(METRICS))
def test_bad_input_is_one_clear_error(name, scores, target, kw, exc, match):
    with pytest.raises(exc, match=rf"^{name}: {match}") as err:
        METRICS[name](scores, target, **kw)
    assert "\n" not in str(err.value)


def test_n_bins_is_checked():
    for name in ("ece", "mce", "adaptive_ece", "classwise_ece"):
        with pytest.raises(ValueError, match=rf"^{name}: n_bins expected a positive int"):
            METRICS[name](np.zeros((2, 2)), np.zeros(2, dtype=int), n_bins=0)
