"""Stateful metrics: any split of the batches gives the full-batch value; state is
fixed-size, serialisable, and unchanged by a batch that raises."""

from __future__ import annotations

import copy
import itertools
import math
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losslab.metrics import (
    AdaptiveECE,
    CalibrationMetrics,
    adaptive_ece,
    brier_score,
    classwise_ece,
    ece,
    mce,
    nll,
    reliability,
    smooth_ece,
)

F64 = torch.float64
FUNCTIONAL = {
    "ece": ece,
    "mce": mce,
    "classwise_ece": classwise_ece,
    "smooth_ece": smooth_ece,
    "brier": brier_score,
    "nll": nll,
}


def _data(seed, n=60, c=4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=F64) * 2.5
    return z, torch.randint(c, (n,), generator=g)


def full_batch(z, y):
    out = {name: fn(z, y) for name, fn in FUNCTIONAL.items()}
    out["accuracy"] = float((z.argmax(1) == y).double().mean())
    out["n"] = float(len(y))
    return out


def assert_same(got, want):
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), key


@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 60), max_size=5))
def test_any_batch_split_equals_the_full_batch(seed, cuts):
    z, y = _data(seed)
    edges = sorted([0, 60, *cuts])
    m = CalibrationMetrics(4)
    for a, b in itertools.pairwise(edges):
        m.update(z[a:b], y[a:b])  # empty slices included
    assert_same(m.compute(), full_batch(z, y))


def test_merged_workers_equal_the_full_batch():
    z, y = _data(1)
    parts = [CalibrationMetrics(4) for _ in range(3)]
    for i, part in enumerate(parts):
        part.update(z[i::3], y[i::3])
    merged = parts[0] + parts[1] + parts[2]
    assert_same(merged.compute(), full_batch(z, y))
    in_place = copy.deepcopy(parts[0]).merge(parts[1]).merge(parts[2])
    assert_same(in_place.compute(), full_batch(z, y))
    assert parts[0].count == len(y[0::3])  # `+` left its operands alone


def test_reliability_of_the_state_equals_the_functional_bins():
    z, y = _data(2)
    m = CalibrationMetrics(4)
    m.update(z[:20], y[:20])
    m.update(z[20:], y[20:])
    got, want = m.reliability(), reliability(z, y)
    assert got.count.tolist() == want.count.tolist()
    assert got.sum_correct.tolist() == want.sum_correct.tolist()
    assert got.sum_confidence == pytest.approx(want.sum_confidence, rel=1e-13)


def test_probabilities_and_spatial_inputs():
    z, y = _data(3, n=24)
    m = CalibrationMetrics(4, input="probs")
    m.update(torch.softmax(z, 1).numpy(), y.numpy())
    ref = full_batch(z, y)
    for key, value in m.compute().items():
        assert value == pytest.approx(ref[key], rel=1e-9), key
    spatial = CalibrationMetrics(4)
    spatial.update(z.reshape(6, 4, 4).transpose(1, 2).reshape(6, 4, 4), y.reshape(6, 4))
    assert spatial.compute()["n"] == 24


def test_state_is_fixed_size_and_round_trips():
    m = CalibrationMetrics(4, n_bins=10)
    sizes = {k: v.numel() for k, v in m.state_dict().items()}
    for seed in range(3):
        m.update(*_data(seed, n=200))
    assert {k: v.numel() for k, v in m.state_dict().items()} == sizes
    assert all(v.dtype == F64 for v in m.state_dict().values())
    restored = CalibrationMetrics(4, n_bins=10)
    restored.load_state_dict(m.state_dict())
    assert_same(restored.compute(), m.compute())
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert_same(clone.compute(), m.compute())


def test_a_batch_that_raises_changes_nothing():
    m = CalibrationMetrics(4)
    m.update(*_data(4))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    z, y = _data(5)
    bad = [
        (z[:, :3], y),
        (z, y[:5]),
        (torch.full_like(z, float("nan")), y),
        (z, torch.full_like(y, 7)),
    ]
    for scores, target in bad:
        with pytest.raises((ValueError, TypeError), match=r"^CalibrationMetrics\.update: "):
            m.update(scores, target)
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_empty_state_reset_and_incompatible_merge():
    m = CalibrationMetrics(3)
    assert all(math.isnan(v) for k, v in m.compute().items() if k != "n")
    m.update(*_data(6, c=3))
    m.reset()
    assert m.compute()["n"] == 0.0
    with pytest.raises(ValueError, match=r"^CalibrationMetrics\.merge: other expected"):
        m.merge(CalibrationMetrics(3, n_bins=10))
    with pytest.raises(ValueError, match=r"^CalibrationMetrics: num_classes expected"):
        CalibrationMetrics(0)
    with pytest.raises(ValueError, match=r"^CalibrationMetrics: input expected"):
        CalibrationMetrics(3, input="softmax")
    with pytest.raises(RuntimeError, match=r"^CalibrationMetrics\.synced: group expected"):
        m.synced()


def test_adaptive_ece_keeps_samples_and_merges():
    z, y = _data(7, n=50)
    a, b = AdaptiveECE(), AdaptiveECE()
    a.update(z[:17], y[:17])
    b.update(z[17:], y[17:])
    assert len(a) == 17 and a.nbytes == 17 * 9
    assert a.merge(b).compute() == pytest.approx(adaptive_ece(z, y), rel=1e-12)
    restored = AdaptiveECE()
    restored.load_state_dict(a.state_dict())
    assert restored.compute() == a.compute()
    assert math.isnan(AdaptiveECE().compute())
    with pytest.raises(ValueError, match=r"^AdaptiveECE\.merge: other expected"):
        a.merge(AdaptiveECE(n_bins=3))
