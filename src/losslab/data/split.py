"""Stratified, seeded index splits (used for fixed test splits and train/validation)."""

from __future__ import annotations

import numpy as np


def check_labels(y: np.ndarray, name: str = "y", where: str = "train_val_split") -> np.ndarray:
    """Return ``y`` as a 1-D int64 array, or raise naming the argument."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{where}: {name} expected a 1-D label array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} expected integer labels, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{where}: {name} expected labels >= 0, got minimum {arr.min()}")
    return arr.astype(np.int64, copy=False)


def train_val_split(
    y: np.ndarray, *, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``range(len(y))`` into sorted (train, validation) index arrays.

    Each class with ``n >= 2`` samples puts ``round(val_fraction * n)`` of them (at least 1,
    at most ``n - 1``) into validation; a class with a single sample stays in training.
    Deterministic for a given ``seed`` (``numpy.random.default_rng``).
    """
    labels = check_labels(y)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(
            f"train_val_split: val_fraction expected a float in (0, 1), got {val_fraction!r}"
        )
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(
            f"train_val_split: val_fraction expected a float in (0, 1), got {val_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"train_val_split: seed expected an int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            continue
        k = min(max(round(val_fraction * len(idx)), 1), len(idx) - 1)
        held.append(idx[:k])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.int64), val.astype(np.int64)


def class_split(
    num_classes: int, *, unseen_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split the class ids ``range(num_classes)`` into sorted (seen, unseen) arrays.

    Zero-shot retrieval trains on the seen classes and retrieves among the unseen ones.
    ``round(unseen_fraction * num_classes)`` classes, at least 1 and leaving at least 2
    seen (a pair loss needs negatives), are drawn by a seeded permutation
    (``numpy.random.default_rng(seed)``), so the split does not follow the class order.

    Example:
        >>> from losslab.data.split import class_split
        >>> seen, unseen = class_split(10, seed=0)
        >>> len(seen), len(unseen), sorted([*seen, *unseen]) == list(range(10))
        (5, 5, True)
    """
    where = "class_split"
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"{where}: num_classes expected an int >= 3, got {num_classes!r}")
    if num_classes < 3:
        raise ValueError(f"{where}: num_classes expected an int >= 3, got {num_classes!r}")
    if isinstance(unseen_fraction, bool) or not isinstance(unseen_fraction, (int, float)):
        raise TypeError(
            f"{where}: unseen_fraction expected a float in (0, 1), got {unseen_fraction!r}"
        )
    if not 0.0 < float(unseen_fraction) < 1.0:
        raise ValueError(
            f"{where}: unseen_fraction expected a float in (0, 1), got {unseen_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: seed expected an int, got {seed!r}")
    k = min(max(round(unseen_fraction * num_classes), 1), int(num_classes) - 2)
    order = np.random.default_rng(int(seed)).permutation(int(num_classes))
    return np.sort(order[k:]).astype(np.int64), np.sort(order[:k]).astype(np.int64)
