"""Loaders of the fetched datasets on the real cache; skipped when a set is not fetched."""

from __future__ import annotations

import numpy as np
import pytest

from losslab.data import load_dataset
from tests.data.data_helpers import check_dataset, require_fetched

EXPECTED = {
    # name: (n_train, n_test, d, num_classes)
    "vowel": (528, 462, 10, 11),
    "letter": (16000, 4000, 16, 26),
    "shuttle": (43500, 14500, 9, 7),
    "fashion_mnist": (60000, 10000, 784, 10),
    "brown_genre": (4712, 1246, 2048, 15),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fetched_loader(name: str) -> None:
    root = require_fetched(name)
    ds = load_dataset(name, root=root)
    n_train, n_test, d, k = EXPECTED[name]
    assert ds.X_train.shape == (n_train, d) and ds.X_test.shape == (n_test, d)
    assert ds.num_classes == k
    check_dataset(ds)
    sl = ds.X_train[:100]
    assert sl.std() > 0 and np.isfinite(sl).all()
    if name == "vowel":
        assert np.bincount(ds.y_train).tolist() == [48] * 11
    if name == "letter":
        assert ds.class_names[ds.y_train[0]] == "T"
        assert ds.X_train[0].tolist() == [2, 8, 3, 5, 1, 8, 13, 0, 6, 6, 10, 8, 0, 8, 0, 8]
    if name == "shuttle":
        assert ds.X_test[0].tolist() == [55, 0, 81, 0, -6, 11, 25, 88, 64]
        assert np.bincount(ds.y_train).max() / np.bincount(ds.y_train).min() > 1000
    if name == "fashion_mnist":
        assert np.bincount(ds.y_test).tolist() == [1000] * 10
