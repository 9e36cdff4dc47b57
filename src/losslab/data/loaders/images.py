"""Image datasets: scikit-learn ``digits`` (bundled) and Fashion-MNIST (Debian package)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..catalog import PackageRef, RawData
from ..sources import obtain
from ..split import train_val_split

FASHION_PKG = PackageRef("debian", "dataset-fashion-mnist", "0.0~git20200523.55506a9-1")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def build_digits(root: Path) -> RawData:
    """UCI optical digits as bundled in scikit-learn (``load_digits``; BSD-3 / UCI).

    1,797 8x8 images with intensities 0..16, 10 classes. There is no official split:
    a stratified 25 % test split with seed 0 (:func:`train_val_split`) is fixed here.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data.astype(np.uint8)
    y = d.target.astype(np.int64)
    tr, te = train_val_split(y, val_fraction=0.25, seed=0)
    return RawData(
        X[tr], y[tr], X[te], y[te],
        class_names=tuple(str(i) for i in range(10)),
        meta={"pixel_max": 16},
    )  # fmt: skip


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file (the MNIST format: magic, dims, big-endian sizes, data)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(
            f"read_idx: path expected an unsigned-byte IDX file, got header {raw[:4]!r}"
        )
    nd = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(shape)


def build_fashion_mnist(root: Path) -> RawData:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT) from Debian ``dataset-fashion-mnist``.

    Official split: 60,000 train / 10,000 test 28x28 grey images, 10 balanced classes.
    Uses the installed package when present, else ``apt-get download`` + unpack.
    """
    meta: dict = {"pixel_max": 255}
    if (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        folder = FASHION_SYSTEM_DIR
        meta["packages"] = {str(FASHION_PKG): "installed system-wide"}
    else:
        tree, sha = obtain(FASHION_PKG, root)
        folder = tree / "usr/share/datasets/fashion-mnist"
        meta["packages"] = {str(FASHION_PKG): sha}

    def part(stem: str) -> np.ndarray:
        return read_idx(folder / f"{stem}.gz")

    Xtr, ytr = part("train-images-idx3-ubyte"), part("train-labels-idx1-ubyte")
    Xte, yte = part("t10k-images-idx3-ubyte"), part("t10k-labels-idx1-ubyte")
    return RawData(
        Xtr.reshape(len(Xtr), -1), ytr.astype(np.int64),
        Xte.reshape(len(Xte), -1), yte.astype(np.int64),
        class_names=FASHION_CLASSES, meta=meta,
    )  # fmt: skip
