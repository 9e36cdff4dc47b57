"""Noise and imbalance generators: rates, transition matrices, determinism, bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losslab.data.corrupt import (
    KINDS,
    LDR_PAIR_MAPS,
    CorruptionResult,
    CorruptionSpec,
    corrupt,
    expected_transition,
    pair_map,
    parse_corruption,
)

K = 5
N_PER_CLASS = 4000
Y = np.repeat(np.arange(K), N_PER_CLASS)
N = len(Y)


def _tol(p: float, n: int) -> float:
    """Five binomial standard deviations (plus a floor) for a measured rate."""
    return 5 * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-3


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_uniform_flip_rate_and_transition(rate: float) -> None:
    res = corrupt(Y, CorruptionSpec("uniform", rate), num_classes=K, seed=0)
    assert np.array_equal(res.indices, np.arange(N))
    assert abs(res.actual_noise_rate - rate) < _tol(rate, N)
    expected = expected_transition(CorruptionSpec("uniform", rate), K)
    assert np.allclose(np.diag(expected), 1 - rate)
    assert np.abs(res.transition - expected).max() < _tol(0.25, N_PER_CLASS)
    assert np.allclose(res.transition.sum(1), 1.0)


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.9])
def test_uniform_redraw_is_the_ldr_convention(rate: float) -> None:
    res = corrupt(Y, CorruptionSpec("uniform_redraw", rate), num_classes=K, seed=1)
    flip = rate * (K - 1) / K
    assert abs(res.actual_noise_rate - flip) < _tol(flip, N)
    expected = expected_transition(CorruptionSpec("uniform_redraw", rate), K)
    assert np.allclose(np.diag(expected), 1 - rate + rate / K)
    assert np.abs(res.transition - expected).max() < _tol(0.25, N_PER_CLASS)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_class_dependent_default_is_next_class(rate: float) -> None:
    spec = CorruptionSpec("class_dependent", rate)
    res = corrupt(Y, spec, num_classes=K, seed=2)
    assert abs(res.actual_noise_rate - rate) < _tol(rate, N)
    changed = res.labels != Y
    assert np.array_equal(res.labels[changed], (Y[changed] + 1) % K)
    assert np.abs(res.transition - expected_transition(spec, K)).max() < _tol(0.25, N_PER_CLASS)


def test_ldr_letter_and_vowel_maps() -> None:
    letter = LDR_PAIR_MAPS["letter"]
    names = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    swaps = {names[a] + names[b] for a, b in enumerate(letter) if a < b}
    assert swaps == {"BD", "CG", "EF", "HN", "IL", "KX", "MW", "OQ", "PR", "UV"}
    assert all(letter[letter[c]] == c for c in range(26))  # pair swaps are involutions
    assert LDR_PAIR_MAPS["vowel"] == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 10)
    assert np.array_equal(pair_map(11, dataset="vowel"), LDR_PAIR_MAPS["vowel"])
    assert np.array_equal(pair_map(4, dataset="digits"), [1, 2, 3, 0])


def test_class_dependent_letter_map_rate() -> None:
    y = np.repeat(np.arange(26), 500)
    spec = CorruptionSpec("class_dependent", 0.4)
    res = corrupt(y, spec, num_classes=26, seed=3, dataset="letter")
    movable = np.array(LDR_PAIR_MAPS["letter"]) != np.arange(26)
    expected_rate = 0.4 * movable.mean()  # 20 of 26 letters have a partner
    assert abs(res.actual_noise_rate - expected_rate) < _tol(expected_rate, len(y))
    assert np.all(res.transition[~movable] == np.eye(26)[~movable])
    assert np.abs(res.transition - expected_transition(spec, 26, dataset="letter")).max() < 0.1
    with pytest.raises(ValueError, match="num_classes expected 26 for the LDR pair map"):
        corrupt(Y, spec, num_classes=K, seed=0, dataset="letter")


def test_class_dependent_user_map() -> None:
    spec = parse_corruption("class_dependent:0.5:4,3,2,1,0")
    res = corrupt(Y, spec, num_classes=K, seed=4)
    assert abs(res.transition[0, 4] - 0.5) < _tol(0.25, N_PER_CLASS)
    assert res.transition[2, 2] == 1.0  # 2 maps to itself
    with pytest.raises(ValueError, match=r"mapping expected 5 class indices in \[0, 5\)"):
        corrupt(Y, CorruptionSpec("class_dependent", 0.3, (1, 0)), num_classes=K, seed=0)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_instance_dependent_rate_and_feature_dependence(rate: float) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 12)) + Y[:, None]
    res = corrupt(Y, CorruptionSpec("instance", rate), num_classes=K, seed=5, X=X)
    assert abs(res.actual_noise_rate - rate) < _tol(rate, N) + 0.01
    # the wrong class a sample flips to depends on its features: not uniform per class
    wrong = res.transition[0, 1:] / res.transition[0, 1:].sum()
    assert wrong.max() - wrong.min() > 0.05
    again = corrupt(Y, CorruptionSpec("instance", rate), num_classes=K, seed=5, X=X)
    assert np.array_equal(res.labels, again.labels)


def test_instance_dependent_high_dimensional_many_classes() -> None:
    y = np.repeat(np.arange(50), 20)
    X = np.random.default_rng(1).random((len(y), 784)).astype(np.float32)
    res = corrupt(y, parse_corruption("instance:0.4"), num_classes=50, seed=0, X=X)
    assert abs(res.actual_noise_rate - 0.4) < 0.06
    assert res.labels.min() >= 0 and res.labels.max() < 50


def test_instance_needs_features() -> None:
    with pytest.raises(ValueError, match=r"X expected the .* features for kind 'instance'"):
        corrupt(Y, CorruptionSpec("instance", 0.2), num_classes=K, seed=0)
    with pytest.raises(ValueError, match=f"X expected {N} rows"):
        corrupt(Y, CorruptionSpec("instance", 0.2), num_classes=K, seed=0, X=np.zeros((3, 2)))


@pytest.mark.parametrize("ratio", [1.0, 10.0, 100.0])
def test_long_tail_profile(ratio: float) -> None:
    res = corrupt(Y, CorruptionSpec("long_tail", ratio), num_classes=K, seed=6)
    counts = np.bincount(Y[res.indices], minlength=K)
    expected = [math.floor(N_PER_CLASS * ratio ** (-c / (K - 1))) for c in range(K)]
    assert counts.tolist() == expected
    assert counts[0] / counts[-1] == pytest.approx(ratio, rel=0.01)
    assert np.array_equal(res.labels, Y[res.indices])  # labels stay clean
    assert res.actual_noise_rate == 0.0 and np.allclose(res.transition, np.eye(K))
    assert np.all(np.diff(res.indices) > 0)


def test_step_profile() -> None:
    res = corrupt(Y, CorruptionSpec("step", 20.0), num_classes=K, seed=7)
    counts = np.bincount(Y[res.indices], minlength=K)
    assert counts.tolist() == [4000, 4000, 4000, 200, 200]


def test_imbalance_of_an_unbalanced_input_uses_the_smallest_class() -> None:
    y = np.repeat(np.arange(3), [500, 300, 100])
    res = corrupt(y, CorruptionSpec("long_tail", 4.0), num_classes=3, seed=0)
    assert np.bincount(y[res.indices]).tolist() == [100, 50, 25]


def test_imbalance_then_noise_composes() -> None:
    """``long_tail:R+uniform:r`` keeps exactly the rows of ``long_tail:R`` (subsampled by
    the clean labels) and flips about ``r`` of them, with uniform noise's transitions."""
    spec = parse_corruption("long_tail:10+uniform:0.3")
    assert spec == CorruptionSpec("long_tail", 10.0, then=CorruptionSpec("uniform", 0.3))
    assert parse_corruption(str(spec)) == spec and str(spec) == "long_tail:10+uniform:0.3"
    res = corrupt(Y, spec, num_classes=K, seed=6)
    alone = corrupt(Y, CorruptionSpec("long_tail", 10.0), num_classes=K, seed=6)
    assert np.array_equal(res.indices, alone.indices)
    clean = Y[res.indices]
    n = len(clean)
    assert res.actual_noise_rate == pytest.approx(0.3, abs=_tol(0.3, n))
    assert res.actual_noise_rate == pytest.approx(float((res.labels != clean).mean()))
    # every class flips at the same rate to the other classes, as uniform noise alone
    flipped = res.labels != clean
    for c in range(K):
        assert flipped[clean == c].mean() == pytest.approx(0.3, abs=_tol(0.3, (clean == c).sum()))
    assert np.array_equal(expected_transition(spec, K), expected_transition(spec.then, K))
    again = corrupt(Y, spec, num_classes=K, seed=6)
    assert np.array_equal(again.labels, res.labels)


def test_instance_noise_after_imbalance_reads_the_kept_rows() -> None:
    X = np.random.default_rng(0).normal(size=(N, 4))
    res = corrupt(Y, parse_corruption("step:10+instance:0.2"), num_classes=K, seed=3, X=X)
    assert len(res.labels) == len(res.indices) < N
    assert res.actual_noise_rate == pytest.approx(0.2, abs=_tol(0.2, len(res.labels)))


@pytest.mark.parametrize(
    "text",
    [
        "uniform:0.3+long_tail:10",
        "long_tail:10+step:2",
        "long_tail:10+uniform:0.1+uniform:0.1",
        "clean+uniform:0.3",
        "long_tail:10+",
    ],
)
def test_bad_compositions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^parse_corruption: corruption expected"):
        parse_corruption(text)


def test_noise_only_follows_an_imbalance() -> None:
    with pytest.raises(ValueError, match=r"then expected None for kind 'uniform'"):
        CorruptionSpec("uniform", 0.2, then=CorruptionSpec("uniform", 0.1))
    with pytest.raises(ValueError, match=r"then expected a noise spec"):
        CorruptionSpec("long_tail", 10.0, then=CorruptionSpec("step", 2.0))


def test_clean_is_identity() -> None:
    res = corrupt(Y, parse_corruption("clean"), num_classes=K, seed=0)
    assert np.array_equal(res.labels, Y) and res.actual_noise_rate == 0.0
    assert isinstance(res, CorruptionResult) and res.labels.dtype == np.int64


@pytest.mark.parametrize("kind", ["uniform", "uniform_redraw", "class_dependent", "instance"])
def test_seeded(kind: str) -> None:
    X = np.random.default_rng(0).normal(size=(N, 4))
    a = corrupt(Y, CorruptionSpec(kind, 0.3), num_classes=K, seed=11, X=X)
    b = corrupt(Y, CorruptionSpec(kind, 0.3), num_classes=K, seed=11, X=X)
    c = corrupt(Y, CorruptionSpec(kind, 0.3), num_classes=K, seed=12, X=X)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


@settings(max_examples=40, deadline=None)
@given(
    y=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    kind=st.sampled_from(KINDS),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31),
)
def test_result_invariants(y: list[int], kind: str, rate: float, seed: int) -> None:
    labels = np.asarray(y, np.int64)
    k = 7
    if kind in ("none", "given"):
        rate = 0.0
    if kind in ("long_tail", "step"):
        rate = 1.0 + 50 * rate
    X = np.random.default_rng(0).normal(size=(len(labels), 3))
    given = np.random.default_rng(seed).permutation(labels)
    spec = CorruptionSpec(kind, rate)
    res = corrupt(labels, spec, num_classes=k, seed=seed, X=X, noisy_labels=given)
    assert res.labels.dtype == np.int64 and len(res.labels) == len(res.indices)
    assert np.all(np.diff(res.indices) > 0) and res.indices.max() < len(labels)
    assert res.labels.min() >= 0 and res.labels.max() < k
    assert 0.0 <= res.actual_noise_rate <= 1.0
    assert res.actual_noise_rate == pytest.approx(float((res.labels != labels[res.indices]).mean()))
    row_sums = res.transition.sum(1)
    present = np.bincount(labels[res.indices], minlength=k) > 0
    assert np.allclose(row_sums[present], 1.0) and np.all(row_sums[~present] == 0)


@pytest.mark.parametrize(
    ("text", "kind", "rate", "key"),
    [
        ("clean", "none", 0.0, "clean"),
        ("none", "none", 0.0, "clean"),
        ("uniform:0.4", "uniform", 0.4, "uniform-0.4"),
        ("Uniform:0.40", "uniform", 0.4, "uniform-0.4"),
        ("uniform-0.4", "uniform", 0.4, "uniform-0.4"),
        ("symmetric:0.2", "uniform", 0.2, "uniform-0.2"),
        ("uniform_redraw:0.6", "uniform_redraw", 0.6, "uniform_redraw-0.6"),
        ("class_dependent:0.3", "class_dependent", 0.3, "class_dependent-0.3"),
        ("class-dependent:0.3", "class_dependent", 0.3, "class_dependent-0.3"),
        ("pair:0.1", "class_dependent", 0.1, "class_dependent-0.1"),
        ("instance:0.2", "instance", 0.2, "instance-0.2"),
        ("long_tail:100", "long_tail", 100.0, "long_tail-100"),
        ("step:10", "step", 10.0, "step-10"),
    ],
)
def test_parse_and_key(text: str, kind: str, rate: float, key: str) -> None:
    spec = parse_corruption(text)
    assert (spec.kind, spec.rate, spec.key()) == (kind, rate, key)
    assert parse_corruption(str(spec)) == spec
    assert parse_corruption(spec.key()) == spec


def test_user_map_key_and_round_trip() -> None:
    a = parse_corruption("class_dependent:0.3:1,0,2")
    assert a.mapping == (1, 0, 2) and a == parse_corruption("class_dependent:0.3,1,0,2")
    assert a.key().startswith("class_dependent-0.3-map") and parse_corruption(str(a)) == a
    assert a.key() != parse_corruption("class_dependent:0.3:0,2,1").key()


@pytest.mark.parametrize(
    ("text", "exc", "match"),
    [
        ("uniform:1.7", ValueError, r"rate expected a noise rate in \[0, 1\].*got 1.7"),
        ("uniform:-0.1", ValueError, "rate expected a noise rate"),
        ("long_tail:0.5", ValueError, "rate expected an imbalance ratio >= 1.*got 0.5"),
        ("bogus:0.1", ValueError, "corruption expected 'clean' or 'KIND:RATE'.*'bogus:0.1'"),
        ("uniform", ValueError, "RATE after 'uniform'"),
        ("uniform:abc", ValueError, "got 'uniform:abc'"),
        ("uniform:nan", ValueError, "rate expected a finite float"),
        ("uniform:0.2:1,0", ValueError, "mapping expected None for kind 'uniform'"),
        (3, TypeError, "corruption expected a string"),
    ],
)
def test_bad_specs(text: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        parse_corruption(text)  # type: ignore[arg-type]


def test_bad_spec_objects_and_arguments() -> None:
    with pytest.raises(ValueError, match=r"kind expected one of \['none'.*got 'gauss'"):
        CorruptionSpec("gauss", 0.1)
    with pytest.raises(TypeError, match=r"rate expected a float, got '0\.1'"):
        CorruptionSpec("uniform", "0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate expected 0 for kind 'none'"):
        CorruptionSpec("none", 0.2)
    with pytest.raises(TypeError, match="spec expected a CorruptionSpec"):
        corrupt(Y, "uniform:0.2", num_classes=K, seed=0)  # type: ignore[arg-type]
    spec = CorruptionSpec("uniform", 0.2)
    with pytest.raises(ValueError, match=r"y expected labels in \[0, 3\).*got max 4"):
        corrupt(Y, spec, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="num_classes expected an int >= 2, got 1"):
        corrupt(Y, spec, num_classes=1, seed=0)
    with pytest.raises(TypeError, match="seed expected an int"):
        corrupt(Y, spec, num_classes=K, seed=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"spec\.kind expected a kind with a fixed transition"):
        expected_transition(CorruptionSpec("instance", 0.2), K)
