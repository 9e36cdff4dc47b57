"""Every declared property is verified for every loss that declares it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import losslab
from losslab.properties import PROPERTIES, PropertyViolation, verify

CLAIMS = [(n, p) for n in losslab.list_losses() for p in losslab.loss_info(n).properties]


@pytest.mark.parametrize(("name", "prop"), CLAIMS, ids=[f"{n}-{p}" for n, p in CLAIMS])
def test_declared_property_holds(name, prop):
    verify(name, prop, seed=0)


@pytest.mark.parametrize(
    ("name", "prop"),
    [c for c in CLAIMS if c[1] != "classification_calibrated"],
    ids=[f"{n}-{p}" for n, p in CLAIMS if p != "classification_calibrated"],
)
@given(seed=st.integers(1, 100_000))
def test_declared_property_holds_random_seeds(name, prop, seed):
    verify(name, prop, seed=seed)


def test_vocabulary_is_covered_by_checks():
    from losslab.properties import _CHECKS

    assert set(PROPERTIES) == set(_CHECKS) | {"bounded", "reduces_to_ce"}


def test_checks_catch_false_claims():
    # CE is not bounded, focal is not convex at gamma=2, CE is not symmetric:
    # the checks must reject such claims, or a declared property would mean nothing.
    import torch

    from losslab.properties import (
        check_bounded,
        check_classification_calibrated,
        check_convex,
        check_symmetric,
    )

    g = torch.Generator().manual_seed(0)
    with pytest.raises(PropertyViolation):
        check_bounded("ce", {}, g, bound=10.0)
    with pytest.raises(PropertyViolation):
        check_symmetric("ce", {}, g)
    with pytest.raises(PropertyViolation):
        check_convex("mae", {}, g)
    # Crammer-Singer is the textbook non-calibrated multi-class hinge.
    with pytest.raises(PropertyViolation):
        check_classification_calibrated("cs_svm", {}, g)


def test_verify_rejects_undeclared_property():
    with pytest.raises(ValueError, match="does not declare"):
        verify("ce", "symmetric")
