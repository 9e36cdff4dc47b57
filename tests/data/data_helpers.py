"""Shared helpers of the data tests (a uniquely named module, imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslab.data import Dataset, data_root, get_info


def require_fetched(name: str) -> Path:
    """The real cache root, or skip when ``name`` has not been fetched there."""
    root = data_root()
    if not get_info(name).is_available(root):
        pytest.skip(
            f"dataset {name!r} is not fetched under {root}: run `losslab data fetch {name}` "
            "(or `make data`) to test it"
        )
    return root


def check_dataset(ds: Dataset) -> None:
    info = get_info(ds.name)
    assert ds.X_train.dtype == np.float32 and ds.X_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.X_train.ndim == 2 and ds.X_test.ndim == 2
    assert ds.X_train.shape[1] == ds.X_test.shape[1] == int(np.prod(ds.meta["input_shape"]))
    assert len(ds.X_train) == len(ds.y_train) and len(ds.X_test) == len(ds.y_test)
    assert ds.num_classes == info.num_classes == len(ds.class_names)
    assert set(np.unique(ds.y_train)) == set(range(ds.num_classes))
    assert set(np.unique(ds.y_test)) <= set(range(ds.num_classes))
    assert np.isfinite(ds.X_train).all() and np.isfinite(ds.X_test).all()
    for key in ("source", "licence", "split", "checksum", "input_shape", "modality"):
        assert key in ds.meta, key
    assert ds.meta["modality"] == info.modality
    assert ds.meta["checksum"].startswith("sha256:")
    if info.expected_sha256 is not None:
        assert ds.meta["checksum"] == info.expected_sha256
    if info.modality == "image":
        assert ds.X_train.min() >= 0.0 and ds.X_train.max() <= 1.0
