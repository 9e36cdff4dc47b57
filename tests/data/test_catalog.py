"""Catalogue, CI-safe loaders, cache and split behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from losslab.data import (
    DataNotAvailableError,
    fetch_dataset,
    get_info,
    list_datasets,
    load_dataset,
    standardize,
    train_val_split,
)
from losslab.data.catalog import MODALITIES, array_checksum, data_root
from tests.data.data_helpers import check_dataset

REQUIRED = {"digits", "vowel", "letter", "shuttle", "fashion_mnist", "brown_genre", "glyphs"}


def test_catalogue_lists_required_datasets() -> None:
    # datasets a user registered in the same cache are listed too; the catalogue's are not user
    infos = [i for i in list_datasets() if not i.user]
    names = [i.name for i in infos]
    assert set(names) >= REQUIRED
    assert len(names) == len(set(names))
    for info in infos:
        assert info.modality in MODALITIES
        assert info.num_classes >= 2
        assert info.source and info.licence and info.split
        assert info.ci_safe == (not info.packages)
        assert all(p.registry in ("pypi", "npm", "debian") for p in info.packages)
    assert get_info("glyphs").num_classes >= 500
    assert {i.name for i in infos if i.ci_safe} >= {"digits", "glyphs", "synthetic"}


def test_data_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("LOSSLAB_DATA")
    assert data_root() == Path("~/.cache/losslab").expanduser()


def test_digits_fully(ci_root: Path) -> None:
    ds = load_dataset("digits", root=ci_root)
    check_dataset(ds)
    assert ds.X_train.shape == (1347, 64) and ds.X_test.shape == (450, 64)
    assert ds.meta["input_shape"] == (1, 8, 8)
    counts = np.bincount(ds.y_test)
    assert counts.min() >= 44 and counts.max() <= 46  # stratified 25 % test split
    assert (ci_root / "digits" / "data.npz").is_file()
    again = load_dataset("digits", root=ci_root)  # from the cache now
    assert np.array_equal(again.X_train, ds.X_train)
    assert again.meta["checksum"] == ds.meta["checksum"]


def test_synthetic_fully(ci_root: Path) -> None:
    ds = load_dataset("synthetic", root=ci_root)
    check_dataset(ds)
    assert ds.X_train.shape == (2000, 20) and ds.X_test.shape == (1000, 20)


def test_unknown_dataset_names_argument() -> None:
    with pytest.raises(ValueError, match=r"name expected one of \[.*'digits'.*got 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="got 'nope'"):
        fetch_dataset("nope")
    with pytest.raises(TypeError, match="name expected a dataset name"):
        load_dataset(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["letter", "vowel", "fashion_mnist", "brown_genre", "shuttle"])
def test_unfetched_dataset_says_how_to_fetch(name: str, tmp_path: Path) -> None:
    assert not get_info(name).is_available(tmp_path)
    with pytest.raises(DataNotAvailableError, match=f"losslab data fetch {name}") as err:
        load_dataset(name, root=tmp_path)
    assert isinstance(err.value, ValueError)


def test_corrupted_cache_is_detected(tmp_path: Path) -> None:
    load_dataset("synthetic", root=tmp_path)
    meta_path = tmp_path / "synthetic" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["checksum"] = "sha256:" + "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="expected checksum sha256:0000"):
        load_dataset("synthetic", root=tmp_path)


def test_array_checksum_sensitive_to_content_dtype_and_shape() -> None:
    a = np.arange(6, dtype=np.int64)
    assert array_checksum(a) == array_checksum(a.copy())
    assert array_checksum(a) != array_checksum(a.reshape(2, 3))
    assert array_checksum(a) != array_checksum(a.astype(np.int32))
    b = a.copy()
    b[0] = 9
    assert array_checksum(a) != array_checksum(b)


def test_train_val_split_is_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(4), [100, 50, 10, 1])
    tr, va = train_val_split(y, val_fraction=0.2, seed=3)
    assert len(np.intersect1d(tr, va)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    assert np.bincount(y[va], minlength=4).tolist() == [20, 10, 2, 0]
    tr2, va2 = train_val_split(y, val_fraction=0.2, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    _, va3 = train_val_split(y, val_fraction=0.2, seed=4)
    assert not np.array_equal(va, va3)
    _, tiny = train_val_split(np.array([0, 0, 1, 1]), val_fraction=0.01, seed=0)
    assert sorted(np.array([0, 0, 1, 1])[tiny].tolist()) == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"val_fraction": 1.0, "seed": 0},
            ValueError,
            r"val_fraction expected a float in \(0, 1\)",
        ),
        ({"val_fraction": 0.0, "seed": 0}, ValueError, "got 0.0"),
        ({"val_fraction": "0.2", "seed": 0}, TypeError, "val_fraction"),
        ({"val_fraction": 0.2, "seed": 1.5}, TypeError, "seed expected an int"),
    ],
)
def test_train_val_split_bad_args(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        train_val_split(np.array([0, 1, 0, 1]), **kwargs)


def test_train_val_split_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"y expected a 1-D label array, got shape \(2, 2\)"):
        train_val_split(np.zeros((2, 2), int), val_fraction=0.5, seed=0)
    with pytest.raises(TypeError, match="y expected integer labels"):
        train_val_split(np.array([0.5, 1.0]), val_fraction=0.5, seed=0)


def test_standardize_uses_training_statistics() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 2, (200, 3)), rng.normal(3, 2, (50, 3))
    a[:, 2] = 1.0  # constant column must not divide by zero
    sa, sb = standardize(a, b)
    assert np.allclose(sa[:, :2].mean(0), 0, atol=1e-5) and np.allclose(sa[:, :2].std(0), 1)
    assert np.isfinite(sb).all() and sa.dtype == np.float32
