"""A small synthetic tabular set (scikit-learn ``make_classification``; CI-safe).

2,000 train + 1,000 test samples, 20 features (10 informative), 5 classes, two Gaussian
clusters per class (Guyon 2003 "Design of experiments for the NIPS 2003 variable selection
benchmark", as implemented by scikit-learn). Generated with ``random_state=0``; the last
1,000 rows are the test split. For tests and smoke runs, not for conclusions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..catalog import RawData


def build_synthetic(root: Path) -> RawData:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=3000, n_features=20, n_informative=10, n_redundant=4, n_classes=5,
        n_clusters_per_class=2, class_sep=1.0, random_state=0,
    )  # fmt: skip
    X = X.astype(np.float32)
    y = y.astype(np.int64)
    return RawData(X[:2000], y[:2000], X[2000:], y[2000:], tuple(f"c{i}" for i in range(5)))
