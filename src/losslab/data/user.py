"""Your own data: arrays or a file registered as a benchmark dataset.

:func:`register_dataset` checks the arrays, fixes a train/test split (the given one, or a
stratified split made like the catalogued sets'), and caches them under
``<root>/user/<name>/`` like a fetched dataset, so ``losslab bench run --dataset NAME``,
the Python grid API and pool or Ray workers on the same cache all find it.
:func:`register_file` reads a ``.npz``, ``.csv`` or ``.parquet`` file first
(``losslab bench run --data PATH``).

A registered dataset's *identity* is ``name@<12 hex digits of the arrays' sha256>``
(:func:`dataset_identity`). Grids record the identity, not the bare name, so a cell's key
depends on the data's content: registering changed data under the same name gives new
cells and never reuses the results of the old data.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import (
    MODALITIES,
    USER_DIR,
    DataNotAvailableError,
    DatasetInfo,
    RawData,
    array_checksum,
    data_root,
    save_cache,
)
from .split import train_val_split

__all__ = [
    "DATA_SUFFIXES",
    "dataset_identity",
    "has_given_labels",
    "read_data_file",
    "register_dataset",
    "register_file",
    "split_identity",
    "user_info",
    "user_infos",
]

#: the file formats :func:`register_file` reads
DATA_SUFFIXES = (".npz", ".csv", ".parquet")
NPZ_KEYS = ("X", "y", "y_noisy", "X_test", "y_test")
SPLIT_VALUES = ("train", "test")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_DIGITS = 12


def _fail(where: str, arg: str, expected: str, got: object, exc: type[Exception] = ValueError):
    # the library's one error format (losslab._validate.fail); imported here without
    # torch so that the data package stays numpy-only
    return exc(f"{where}: {arg} expected {expected}, got {got}")


def split_identity(name: str) -> tuple[str, str]:
    """``("name", "hexdigits")`` of ``name@hexdigits``; ``(name, "")`` without ``@``."""
    base, _, digest = name.partition("@")
    return base, digest


def _meta_path(name: str, root: str | Path | None) -> Path:
    return data_root(root) / USER_DIR / name / "meta.json"


def _read_meta(name: str, root: str | Path | None) -> dict[str, Any] | None:
    if not _NAME.match(name):
        return None
    path = _meta_path(name, root)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _info_from_meta(meta: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        name=meta["name"],
        num_classes=int(meta["num_classes"]),
        modality=meta["modality"],
        source=meta["source"],
        licence="user data",
        ci_safe=False,
        split=meta["split"],
        input_shape=tuple(meta["input_shape"]),
        description=f"registered, {meta['checksum'][:19]}...",
        user=True,
    )


def user_info(name: str, root: str | Path | None = None) -> DatasetInfo | None:
    """Catalogue entry of the registered dataset ``name`` (or ``name@digest``), or None."""
    meta = _read_meta(split_identity(name)[0], root)
    return None if meta is None else _info_from_meta(meta)


def user_infos(root: str | Path | None = None) -> list[DatasetInfo]:
    """Every registered dataset in the cache, by name."""
    folder = data_root(root) / USER_DIR
    if not folder.is_dir():
        return []
    infos = (user_info(p.name, root) for p in sorted(folder.iterdir()) if p.is_dir())
    return [i for i in infos if i is not None]


def _digest(meta: dict[str, Any]) -> str:
    return str(meta["checksum"]).removeprefix("sha256:")[:_DIGITS]


def dataset_identity(name: str, root: str | Path | None = None) -> str:
    """The name grids record for a dataset: a catalogued name as it is, a registered
    dataset as ``name@<first 12 hex digits of its checksum>``. Unknown names and names
    that already carry ``@`` come back unchanged (the grid's checks report them).

    Example:
        >>> import numpy as np, tempfile
        >>> from losslab.data import dataset_identity, register_dataset
        >>> root = tempfile.mkdtemp()
        >>> X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
        >>> ident = register_dataset("toy", X, y, root=root)
        >>> dataset_identity("toy", root=root) == ident, dataset_identity("digits")
        (True, 'digits')
    """
    if not isinstance(name, str) or "@" in name:
        return name
    from .registry import INFOS

    if name in INFOS:
        return name
    meta = _read_meta(name, root)
    return name if meta is None else f"{name}@{_digest(meta)}"


def has_given_labels(name: str, root: str | Path | None = None) -> bool | None:
    """Whether dataset ``name`` came with noisy labels (the corruption ``given``): False
    for catalogued sets, the registered data's answer, None for an unknown name."""
    from .registry import INFOS

    base, _ = split_identity(name)
    if base in INFOS:
        return False
    meta = _read_meta(base, root)
    return None if meta is None else bool(meta.get("noisy_labels"))


def unavailable_reason(name: str, root: str | Path | None = None) -> str | None:
    """Why the registered dataset ``name`` (``name@digest``) cannot be loaded, or None."""
    base, digest = split_identity(name)
    meta = _read_meta(base, root)
    if meta is None:
        return "not registered (losslab.data.register_dataset or bench run --data)"
    if digest and _digest(meta) != digest:
        return (
            f"registered again with other data since (now {base}@{_digest(meta)}); "
            "run the grid again to plan it with the current data"
        )
    return None


def load_user(name: str, root: str | Path | None = None) -> tuple[RawData, dict[str, Any]]:
    """Cached arrays of a registered dataset; ``name@digest`` must match the data."""
    from .catalog import read_cache

    why = unavailable_reason(name, root)
    if why is not None:
        raise DataNotAvailableError(
            f"losslab.data: dataset {name!r} expected a registered dataset, got one {why}"
        )
    base, _ = split_identity(name)
    return read_cache(_meta_path(base, root).parent)


# ---------------------------------------------------------------------------- checks


def _features(where: str, arg: str, X: Any) -> np.ndarray:
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise _fail(where, arg, "numeric features", f"dtype {arr.dtype}", TypeError)
    if arr.ndim < 2 or arr.shape[0] == 0 or 0 in arr.shape[1:]:
        raise _fail(where, arg, "an (n, features...) array with n >= 1", f"shape {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _fail(
                where, arg, "finite values", f"{int(bad.sum())} NaN or inf (first at {first})"
            )
    return arr


def _labels(where: str, arg: str, y: Any, n: int) -> np.ndarray:
    """Integer labels; whole numbers stored as floats (a CSV column with ``1.0``) pass."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise _fail(where, arg, "a 1-D label array", f"shape {arr.shape}")
    if arr.dtype.kind == "f":
        odd = arr[~np.isfinite(arr) | (arr != np.round(arr))]
        if odd.size:
            raise _fail(where, arg, "integer class labels", f"{odd[0]!r} ({arr.dtype})")
    elif arr.dtype.kind not in "iu":
        head = arr[0] if arr.size else None
        first = repr(getattr(head, "item", lambda: head)()) if arr.size else "no values"
        raise _fail(where, arg, "integer class labels", f"{first} ({arr.dtype})", TypeError)
    if len(arr) != n:
        raise _fail(where, arg, f"{n} labels (one per row of the features)", f"{len(arr)}")
    if arr.size and arr.min() < 0:
        raise _fail(where, arg, "labels >= 0", f"minimum {arr.min()}")
    return arr.astype(np.int64)


def register_dataset(
    name: str,
    X: Any,
    y: Any,
    *,
    X_test: Any = None,
    y_test: Any = None,
    y_noisy: Any = None,
    class_names: Sequence[str] | None = None,
    modality: str = "tabular",
    input_shape: Sequence[int] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    source: str = "register_dataset",
    root: str | Path | None = None,
) -> str:
    """Register your own arrays as a benchmark dataset; returns its identity.

    After ``register_dataset("mine", X, y)``, ``losslab bench run --dataset mine`` and
    the grid API (``GridSpec(datasets=["mine"], ...)``) train on it like on a catalogued
    set. The arrays are checked, split and cached under ``<root>/user/<name>/``
    (``root``: the data cache, ``$LOSSLAB_DATA``); registering the same name again
    replaces the data, and its identity (``name@<digest>``, what grids and cell keys
    record) changes with the content, so old results are never reused for new data.

    Args:
        name: letters, digits, ``_``, ``.``, ``-``; not a catalogued dataset's name.
        X: training features ``(n, d)`` or ``(n, *input_shape)`` (flattened), numeric and
            finite.
        y: clean training labels ``(n,)``, integers in ``[0, K)`` with at least 2
            classes; ``K`` is the largest label of any split plus one.
        X_test: features of a fixed (clean) test split; without ``X_test`` and
            ``y_test`` a stratified ``test_fraction`` of ``(X, y)`` with ``seed``
            becomes the test split, as for the catalogued ``digits``.
        y_test: clean labels of that test split.
        y_noisy: noisy training labels of the same rows (e.g. those an official
            implementation generated); the corruption ``given`` trains on them.
        class_names: ``K`` names (default ``"0"``, ``"1"``, ...).
        modality: ``tabular``, ``image`` or ``text``; images with ``input_shape``
            ``(C, H, W)`` of at least 16x16 get the CNN of the ``auto`` model.
        input_shape: per-sample shape (default ``X.shape[1:]``).

    Example:
        >>> import numpy as np, tempfile
        >>> from losslab.data import load_dataset, register_dataset
        >>> root = tempfile.mkdtemp()
        >>> rng = np.random.default_rng(0)
        >>> X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
        >>> ident = register_dataset("toy", X, y, y_noisy=1 - y, root=root)
        >>> ident.startswith("toy@"), load_dataset("toy", root=root).X_test.shape
        (True, (10, 3))
    """
    where = "register_dataset"
    if not isinstance(name, str):
        raise _fail(where, "name", "a dataset name (str)", repr(name), TypeError)
    from .registry import INFOS

    if not _NAME.match(name):
        raise _fail(
            where, "name", "letters, digits, '_', '.', '-' (starting with a letter or digit)",
            repr(name),
        )  # fmt: skip
    if name in INFOS:
        raise _fail(where, "name", "a name that is not a catalogued dataset's", repr(name))
    if modality not in MODALITIES:
        raise _fail(where, "modality", f"one of {list(MODALITIES)}", repr(modality))
    features = _features(where, "X", X)
    n = features.shape[0]
    labels = _labels(where, "y", y, n)
    noisy = None if y_noisy is None else _labels(where, "y_noisy", y_noisy, n)
    if (X_test is None) != (y_test is None):
        missing = "X_test" if X_test is None else "y_test"
        raise _fail(where, missing, "a value when the other test array is given", "None")
    if X_test is not None:
        test_x = _features(where, "X_test", X_test)
        if int(np.prod(test_x.shape[1:])) != int(np.prod(features.shape[1:])):
            raise _fail(
                where, "X_test", f"rows of {int(np.prod(features.shape[1:]))} values like X",
                f"shape {test_x.shape[1:]}",
            )  # fmt: skip
        test_y = _labels(where, "y_test", y_test, test_x.shape[0])
        train_rows = np.arange(n)
    else:
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
            raise _fail(where, "test_fraction", "a number in (0, 1)", repr(test_fraction))
        if not 0 < test_fraction < 1:
            raise _fail(where, "test_fraction", "a number in (0, 1)", repr(test_fraction))
        train_rows, test_rows = train_val_split(labels, val_fraction=test_fraction, seed=seed)
        if len(test_rows) == 0:
            raise _fail(
                where, "y", "a class with at least 2 rows for the stratified test split",
                "one row per class",
            )  # fmt: skip
        test_x, test_y = features[test_rows], labels[test_rows]
    classes = np.unique(labels[train_rows])
    if len(classes) < 2:
        raise _fail(where, "y", "at least 2 classes in the training rows", f"only class {classes}")
    num_classes = int(max(labels.max(), test_y.max(), -1 if noisy is None else noisy.max())) + 1
    shape = tuple(int(v) for v in (input_shape or features.shape[1:]))
    if int(np.prod(shape)) != int(np.prod(features.shape[1:])):
        raise _fail(
            where, "input_shape", f"{int(np.prod(features.shape[1:]))} values per sample",
            f"{shape}",
        )  # fmt: skip
    if class_names is None:
        names = tuple(str(i) for i in range(num_classes))
    else:
        names = tuple(str(c) for c in class_names)
        if len(names) != num_classes:
            raise _fail(where, "class_names", f"{num_classes} names", f"{len(names)}")
    raw = RawData(
        X_train=features[train_rows].reshape(len(train_rows), -1).astype(np.float32),
        y_train=labels[train_rows],
        X_test=test_x.reshape(len(test_x), -1).astype(np.float32),
        y_test=test_y,
        class_names=names,
        y_train_noisy=None if noisy is None else noisy[train_rows],
    )
    checksum = array_checksum(*raw.arrays().values())
    split = (
        "given test split"
        if X_test is not None
        else f"stratified {test_fraction:g} test split, seed {seed}"
    )
    meta = {
        "name": name,
        "source": source,
        "licence": "user data",
        "split": split,
        "modality": modality,
        "input_shape": list(shape),
        "num_classes": num_classes,
        "class_names": list(names),
        "checksum": checksum,
        "n_train": len(raw.y_train),
        "n_test": len(raw.y_test),
        "noisy_labels": noisy is not None,
        "user": True,
    }
    save_cache(data_root(root) / USER_DIR / name, raw, meta)
    return f"{name}@{_digest(meta)}"


# ----------------------------------------------------------------------------- files


def read_data_file(
    path: str | Path,
    *,
    label_column: str | None = None,
    noisy_column: str | None = None,
    split_column: str | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of a data file, as keyword arguments of :func:`register_dataset`.

    ``.npz``: arrays ``X``, ``y`` and optionally ``y_noisy`` and ``X_test`` + ``y_test``.
    ``.csv`` / ``.parquet``: one row per sample; ``label_column`` (default ``label``)
    holds integer labels, ``noisy_column`` optional given noisy labels, ``split_column``
    optional ``train`` / ``test`` values; every other column is a numeric feature.
    Every problem raises one line naming the file, the column and what was found.
    """
    p = Path(path)
    where = str(p)
    if p.suffix.lower() not in DATA_SUFFIXES:
        raise _fail(where, "data file", "a .npz, .csv or .parquet file", repr(p.name))
    if not p.is_file():
        raise _fail(where, "data file", "an existing file", "a directory" if p.is_dir() else "none")
    if p.suffix.lower() == ".npz":
        given = {
            "--label-column": label_column,
            "--noisy-column": noisy_column,
            "--split-column": split_column,
        }
        for flag, value in given.items():
            if value is not None:
                raise _fail(where, flag, "no value for a .npz file (its arrays are named)", value)
        return _read_npz(p)
    return _read_table(p, label_column or "label", noisy_column, split_column)


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    where = str(p)
    if not zipfile.is_zipfile(p):
        raise _fail(where, "data file", "a .npz archive of arrays", "a file that is not one")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        # object arrays need pickle, which is never allowed for data files
        raise _fail(where, "arrays", "numeric arrays", f"an unreadable array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise _fail(where, "data file", "a .npz archive of arrays", f"{exc}") from None
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    missing = [k for k in ("X", "y") if k not in arrays]
    if unknown or missing:
        got = f"{sorted(arrays)}" + (f" (unknown {unknown})" if unknown else "")
        raise _fail(where, "arrays", f"X, y and optionally {', '.join(NPZ_KEYS[2:])}", got)
    out = {"X": arrays["X"], "y": arrays["y"]}
    for key, arg in (("y_noisy", "y_noisy"), ("X_test", "X_test"), ("y_test", "y_test")):
        if key in arrays:
            out[arg] = arrays[key]
    return out


def _read_table(
    p: Path, label_column: str, noisy_column: str | None, split_column: str | None
) -> dict[str, np.ndarray]:
    import pandas as pd

    where = str(p)
    try:
        if p.suffix.lower() == ".csv":
            frame = pd.read_csv(p)
        else:
            import duckdb

            frame = duckdb.read_parquet(str(p)).df()
    except Exception as exc:  # every reader's own error type: one line, the reason kept
        reason = " ".join(str(exc).split())[:200]
        raise _fail(where, "data file", f"a readable {p.suffix} table", reason) from None
    if len(frame) == 0:
        raise _fail(where, "rows", "at least one row", "none")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    roles = {"--label-column": label_column, "--noisy-column": noisy_column}
    roles["--split-column"] = split_column
    for flag, col in roles.items():
        if col is not None and col not in columns:
            raise _fail(where, flag, f"a column of the file ({', '.join(columns)})", repr(col))
    feature_cols = [c for c in columns if c not in roles.values()]
    if not feature_cols:
        raise _fail(where, "features", "at least one feature column", "none")
    text = [c for c in feature_cols if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        shown = ", ".join(f"{c!r} ({frame[c].dtype})" for c in text[:5])
        raise _fail(where, "features", "numeric columns", shown, TypeError)
    out: dict[str, np.ndarray] = {}
    for flag, col in (("--label-column", label_column), ("--noisy-column", noisy_column)):
        if col is not None:
            out[col] = _label_column(where, flag, col, frame[col])
    X = frame[feature_cols].to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(X).sum(0)
    if missing.any():
        col = feature_cols[int(np.flatnonzero(missing)[0])]
        raise _fail(
            where, f"column {col!r}", "numbers in every row", f"{int(missing.max())} missing"
        )
    y = out[label_column]
    noisy = out.get(noisy_column) if noisy_column is not None else None
    result: dict[str, np.ndarray] = {}
    if split_column is None:
        result = {"X": X, "y": y}
        if noisy is not None:
            result["y_noisy"] = noisy
        return result
    split = frame[split_column].astype("string").str.strip().str.lower()
    bad = ~split.isin(SPLIT_VALUES)
    if bad.any():
        raise _fail(
            where, "--split-column", f"values {' or '.join(SPLIT_VALUES)} in {split_column!r}",
            repr(frame[split_column][bad].iloc[0]),
        )  # fmt: skip
    test = (split == "test").to_numpy()
    if test.all() or not test.any():
        got = "only test rows" if test.all() else "only train rows"
        raise _fail(where, "--split-column", "train and test rows", got)
    result = {"X": X[~test], "y": y[~test], "X_test": X[test], "y_test": y[test]}
    if noisy is not None:
        result["y_noisy"] = noisy[~test]
    return result


def _label_column(where: str, flag: str, col: str, values: Any) -> np.ndarray:
    n_missing = int(values.isna().sum())
    if n_missing:
        raise _fail(where, f"{flag} {col!r}", "a label in every row", f"{n_missing} missing")
    arr = values.to_numpy()
    if arr.dtype.kind not in "iuf":
        arr = arr.astype(object)  # strings and the like: reported by _labels
    return _labels(where, f"{flag} {col!r}", arr, len(arr))


def register_file(
    path: str | Path,
    *,
    name: str | None = None,
    label_column: str | None = None,
    noisy_column: str | None = None,
    split_column: str | None = None,
    root: str | Path | None = None,
) -> str:
    """Read a data file (:func:`read_data_file`) and register it (:func:`register_dataset`)
    under ``name`` (default: the file's stem); returns the dataset's identity."""
    p = Path(path)
    arrays = read_data_file(
        p, label_column=label_column, noisy_column=noisy_column, split_column=split_column
    )
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", p.stem).lstrip("_.-") or "data"
    try:
        return register_dataset(name, source=f"file {p.name}", root=root, **arrays)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        # name the file: its arrays are what failed the check
        raise type(exc)(f"{p}: {str(exc).removeprefix('register_dataset: ')}") from None
