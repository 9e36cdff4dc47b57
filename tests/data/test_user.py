"""Your own data: register_dataset, data files, the corruption 'given', identities."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import losslab.data.user
from losslab.data import (
    dataset_identity,
    get_info,
    has_given_labels,
    list_datasets,
    load_dataset,
    read_data_file,
    register_dataset,
    register_file,
    unavailable,
)
from losslab.data.corrupt import CorruptionSpec, corrupt, parse_corruption


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data cache, also as $LOSSLAB_DATA (what the grid code reads)."""
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def arrays(n: int = 60, k: int = 3, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + y[:, None], y


# ------------------------------------------------------------------------- register


def test_register_and_load_round_trip(root: Path) -> None:
    X, y = arrays()
    noisy = (y + 1) % 3
    ident = register_dataset("mine", X, y, y_noisy=noisy, class_names=["a", "b", "c"])
    assert ident == dataset_identity("mine") and ident.startswith("mine@") and len(ident) == 17
    for name in ("mine", ident):
        ds = load_dataset(name)
        assert ds.name == "mine" and ds.num_classes == 3 and ds.class_names == ("a", "b", "c")
        assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
        # the stratified 25 % test split of the catalogued sets: 5 of each class's 20 rows
        assert len(ds.y_test) == 15 and np.bincount(ds.y_test).tolist() == [5, 5, 5]
        # the given noisy labels follow their rows into the training split
        assert ds.y_train_noisy is not None
        assert np.array_equal(ds.y_train_noisy, (ds.y_train + 1) % 3)
    rows = {tuple(np.round(r, 5)) for r in np.vstack([ds.X_train, ds.X_test])}
    assert rows == {tuple(np.round(r, 5)) for r in X.astype(np.float32)}
    info = get_info("mine")
    assert info.user and info.cache_dir() == root / "user" / "mine"
    assert "mine" in [i.name for i in list_datasets()] and has_given_labels("mine") is True
    assert has_given_labels("digits") is False and has_given_labels("nope") is None


def test_given_test_split_and_images(root: Path) -> None:
    X, y = arrays(n=40, d=16)
    Xt, yt = arrays(n=9, d=16, seed=1)
    register_dataset("img", X.reshape(40, 1, 4, 4), y, X_test=Xt, y_test=yt, modality="image")
    ds = load_dataset("img")
    assert ds.X_train.shape == (40, 16) and ds.meta["input_shape"] == (1, 4, 4)
    assert np.allclose(ds.X_test, Xt.astype(np.float32)) and np.array_equal(ds.y_test, yt)
    assert ds.y_train_noisy is None and has_given_labels("img") is False


def test_identity_follows_the_content(root: Path) -> None:
    X, y = arrays()
    first = register_dataset("mine", X, y)
    assert register_dataset("mine", X.copy(), y.copy()) == first  # same data, same identity
    X2 = X.copy()
    X2[0, 0] += 1e-3
    second = register_dataset("mine", X2, y)
    assert second != first and dataset_identity("mine") == second
    # an identity planned with the old data no longer loads
    assert unavailable(second) is None
    assert "registered again with other data" in str(unavailable(first))
    with pytest.raises(ValueError, match=r"expected a registered dataset, got one registered"):
        load_dataset(first)
    assert dataset_identity("digits") == "digits" and dataset_identity("nope") == "nope"


BAD_ARRAYS = [
    ({"name": "has space"}, "name expected letters"),
    ({"name": "digits"}, "name expected a name that is not a catalogued"),
    ({"name": 3}, "name expected a dataset name"),
    ({"X": np.zeros(60)}, "X expected an (n, features...) array"),
    ({"X": np.array([["a"] * 4] * 60)}, "X expected numeric features, got dtype <U1"),
    ({"X": np.where(np.eye(60, 4) > 0, np.nan, 1.0)}, "X expected finite values, got 4 NaN"),
    ({"y": np.arange(60) % 3 + 0.5}, "y expected integer class labels, got np.float64(0.5)"),
    ({"y": np.array(["a", "b", "c"] * 20)}, "y expected integer class labels, got 'a'"),
    ({"y": np.arange(59) % 3}, "y expected 60 labels (one per row of the features), got 59"),
    ({"y": np.arange(60) % 3 - 1}, "y expected labels >= 0, got minimum -1"),
    ({"y": np.zeros(60, int)}, "y expected at least 2 classes in the training rows"),
    ({"X_test": np.zeros((5, 4))}, "y_test expected a value when the other test array"),
    ({"X_test": np.zeros((5, 3)), "y_test": np.zeros(5, int)}, "X_test expected rows of 4"),
    ({"y_noisy": np.arange(60) % 3 * 1.5}, "y_noisy expected integer class labels"),
    ({"class_names": ["a"]}, "class_names expected 3 names, got 1"),
    ({"modality": "audio"}, "modality expected one of"),
]


@pytest.mark.parametrize(("change", "needle"), BAD_ARRAYS)
def test_bad_arrays_are_one_line_and_change_nothing(root: Path, change: dict, needle: str) -> None:
    X, y = arrays()
    before = register_dataset("mine", X, y)
    kwargs = {"name": "mine", "X": X, "y": y, **change}
    with pytest.raises((TypeError, ValueError)) as info:
        register_dataset(kwargs.pop("name"), kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    text = str(info.value)
    assert "\n" not in text and text.startswith("register_dataset: ") and ", got " in text
    assert needle in text, text
    assert dataset_identity("mine") == before  # the registered data is untouched


# ---------------------------------------------------------------------------- files


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def table_text(n: int = 40, split: bool = False, noisy: bool = True) -> str:
    lines = ["f1,f2,label" + (",noisy" if noisy else "") + (",part" if split else "")]
    for i in range(n):
        row = f"{i * 0.5},{(i % 4) * 2.0},{i % 4}"
        row += f",{(i + 1) % 4 if i % 5 == 0 else i % 4}" if noisy else ""
        row += f",{'test' if i % 4 == i % 8 and i >= 32 else 'train'}" if split else ""
        lines.append(row)
    return "\n".join(lines) + "\n"


def test_csv_with_noisy_and_split_columns(root: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "my data.csv", table_text(split=True))
    ident = register_file(path, noisy_column="noisy", split_column="part")
    assert ident.startswith("my_data@")
    ds = load_dataset(ident)
    assert len(ds.y_test) == 4 and len(ds.y_train) == 36 and ds.num_classes == 4
    assert ds.X_train.shape == (36, 2)
    assert ds.y_train_noisy is not None
    rate = float((ds.y_train_noisy != ds.y_train).mean())
    assert rate == pytest.approx(7 / 36)  # training rows 0, 5, ..., 30 carry a flipped label


def test_npz_and_parquet(root: Path, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    X, y = arrays()
    np.savez(tmp_path / "a.npz", X=X, y=y, y_noisy=(y + 1) % 3, X_test=X[:6], y_test=y[:6])
    ds = load_dataset(register_file(tmp_path / "a.npz"))
    assert len(ds.y_train) == 60 and len(ds.y_test) == 6
    assert np.array_equal(ds.y_train_noisy, (ds.y_train + 1) % 3)
    csv = write_csv(tmp_path / "t.csv", table_text(noisy=False))
    duckdb.sql(f"COPY (SELECT * FROM read_csv_auto('{csv}')) TO '{tmp_path / 'b.parquet'}'")
    from_parquet = read_data_file(tmp_path / "b.parquet")
    from_csv = read_data_file(csv)
    assert np.array_equal(from_parquet["X"], from_csv["X"])
    assert np.array_equal(from_parquet["y"], from_csv["y"])


def test_whole_number_float_labels_pass(root: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", "a,label\n1,0.0\n2,1.0\n3,0.0\n4,1.0\n")
    assert read_data_file(path)["y"].tolist() == [0, 1, 0, 1]


BAD_FILES = [
    ("x.txt", "a,label\n1,0\n", {}, "data file expected a .npz, .csv or .parquet file"),
    ("t.csv", "a,b\n1,0\n2,1\n", {}, "--label-column expected a column of the file (a, b)"),
    ("t.csv", "a,y\n1,0\n2,1\n", {"noisy_column": "yn", "label_column": "y"}, "--noisy-column"),
    ("t.csv", "a,c,label\n1,red,0\n2,blue,1\n", {}, "features expected numeric columns, got 'c'"),
    ("t.csv", "a,label\n1,0\n,1\n3,0\n", {}, "column 'a' expected numbers in every row, got 1"),
    ("t.csv", "a,label\n1,0\n2,1.5\n", {}, "--label-column 'label' expected integer class labels"),
    ("t.csv", "a,label\n1,cat\n2,dog\n", {}, "expected integer class labels, got 'cat'"),
    ("t.csv", "a,label\n1,0\n2,\n", {}, "--label-column 'label' expected a label in every row"),
    ("t.csv", "a,label\n1,0\n2,0\n3,0\n", {}, "y expected at least 2 classes"),
    ("t.csv", "a,label,s\n1,0,train\n2,1,val\n", {"split_column": "s"}, "got 'val'"),
    ("t.csv", "a,label,s\n1,0,train\n2,1,train\n", {"split_column": "s"}, "got only train rows"),
    ("t.csv", "label\n0\n1\n", {}, "features expected at least one feature column, got none"),
    ("t.csv", "a,label\n", {}, "rows expected at least one row, got none"),
    ("t.csv", 'a,label\n1,"0\n', {}, "data file expected a readable .csv table"),
]


@pytest.mark.parametrize(("fname", "text", "kwargs", "needle"), BAD_FILES)
def test_bad_tables_are_one_line(
    root: Path, tmp_path: Path, fname: str, text: str, kwargs: dict, needle: str
) -> None:
    path = write_csv(tmp_path / fname, text)
    with pytest.raises((TypeError, ValueError)) as info:
        register_file(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and " expected " in msg, msg
    assert needle in msg, msg
    assert not (root / "user").exists()  # nothing registered


def test_bad_npz_files_are_one_line(root: Path, tmp_path: Path) -> None:
    X, y = arrays()
    cases = {
        "keys.npz": ({"X": X, "Y": y}, "arrays expected X, y and optionally", "unknown ['Y']"),
        "objects.npz": ({"X": np.array([{}, []], dtype=object), "y": y}, "expected numeric", ""),
    }
    for fname, (content, needle, more) in cases.items():
        np.savez(tmp_path / fname, **content)
        with pytest.raises(ValueError, match=needle) as info:
            register_file(tmp_path / fname)
        assert more in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"data file expected a \.npz archive"):
        register_file(tmp_path / "junk.npz")
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    with pytest.raises(ValueError, match=r"--split-column expected no value for a \.npz"):
        register_file(tmp_path / "ok.npz", split_column="s")
    with pytest.raises(ValueError, match="data file expected an existing file, got none"):
        register_file(tmp_path / "missing.csv")


# ---------------------------------------------------------------------- corruption


def test_corruption_given_uses_the_given_labels() -> None:
    spec = parse_corruption("given")
    assert spec == CorruptionSpec("given") and str(spec) == "given" and spec.key() == "given"
    y = np.array([0, 1, 2, 0, 1, 2])
    given = np.array([0, 2, 2, 1, 1, 2])
    res = corrupt(y, spec, num_classes=3, seed=0, noisy_labels=given)
    assert np.array_equal(res.labels, given) and res.actual_noise_rate == pytest.approx(2 / 6)
    again = corrupt(y, spec, num_classes=3, seed=99, noisy_labels=given)
    assert np.array_equal(again.labels, given)  # nothing is drawn
    with pytest.raises(ValueError, match="noisy_labels expected the dataset's given noisy"):
        corrupt(y, spec, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="noisy_labels expected labels in \\[0, 3\\), got max 5"):
        corrupt(y, spec, num_classes=3, seed=0, noisy_labels=given + 3)
    with pytest.raises(ValueError, match="rate expected 0 for kind 'given'"):
        CorruptionSpec("given", 0.2)


def test_docstring_examples_run() -> None:
    for module in (losslab.data.user,):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 2 and result.failed == 0
