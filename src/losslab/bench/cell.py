"""One cell end to end: dataset -> corruption -> split -> model -> trainer -> result row.

Backends import :func:`run_cell`; nothing here knows about grids, stores or backends.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import losslab
from losslab.bench.cell_metrics import nc_columns
from losslab.bench.fingerprint import code_parts
from losslab.bench.grid import Cell, corruption_rate
from losslab.bench.loss_config import resolve_loss_config
from losslab.bench.models import build_model, resolve_model_kind
from losslab.bench.protocol import get_protocol, problem
from losslab.bench.trainer import SplitData, train
from losslab.data import load_dataset
from losslab.data.corrupt import corrupt, parse_corruption

__all__ = ["CellError", "build_split", "library_versions", "run_cell"]

#: the flat metric columns of a row: column -> (split, metric)
METRIC_COLUMNS = {
    "test_acc": ("test", "acc"),
    "test_balanced_acc": ("test", "balanced_acc"),
    "test_macro_f1": ("test", "macro_f1"),
    "test_nll": ("test", "nll"),
    "test_ece": ("test", "ece"),
    "test_worst_recall": ("test", "worst_recall"),
    "test_ece_ts": ("ts", "test_ece"),
    "test_nll_ts": ("ts", "test_nll"),
    "ts_temperature": ("ts", "temperature"),
    "val_acc": ("val", "acc"),
    "val_balanced_acc": ("val", "balanced_acc"),
    "val_nll": ("val", "nll"),
    "train_clean_acc": ("train_clean", "acc"),
    "train_noisy_acc": ("train_noisy", "acc"),
}


class CellError(ValueError):
    """A cell that could not train, named by its label."""


@functools.lru_cache(maxsize=8)
def _load(name: str) -> Any:
    return load_dataset(name)


def build_split(cell: Cell) -> tuple[SplitData, dict[str, Any]]:
    """Corrupt the training labels, split off the (equally noisy) validation set (the
    protocol's split of this repetition) and scale features with training statistics.
    Returns the tensors and metadata."""
    protocol = get_protocol(cell.protocol)
    ds = _load(cell.dataset)
    K = int(ds.num_classes)
    X = np.asarray(ds.X_train, dtype=np.float32)
    y = np.asarray(ds.y_train, dtype=np.int64)
    spec = parse_corruption(cell.corruption).map_kinds(protocol.noise_kind)
    given = getattr(ds, "y_train_noisy", None)
    res = corrupt(
        y,
        spec,
        num_classes=K,
        seed=protocol.noise_seed(cell.seed),
        dataset=cell.dataset,
        X=X,
        noisy_labels=given,
    )
    idx = np.asarray(res.indices, dtype=np.int64)
    noisy = np.asarray(res.labels, dtype=np.int64)
    X, clean = X[idx], y[idx]
    tr, va = protocol.split(noisy, cell.val_fraction, cell.seed)
    Xte = np.asarray(ds.X_test, dtype=np.float32)
    lo, scale = protocol.feature_scaling(X[tr])

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a - lo) / scale).astype(np.float32)

    t = torch.from_numpy
    data = SplitData(
        X_train=t(norm(X[tr])),
        y_train=t(noisy[tr]),
        y_train_clean=t(clean[tr]),
        X_val=t(norm(X[va])),
        y_val=t(noisy[va]),
        X_test=t(norm(Xte)),
        y_test=t(np.asarray(ds.y_test, dtype=np.int64)),
        num_classes=K,
    )
    meta = dict(getattr(ds, "meta", {}) or {})
    info = {
        "actual_noise_rate": float(res.actual_noise_rate),
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(Xte),
        "num_classes": K,
        "modality": meta.get("modality", "tabular"),
        "input_shape": list(meta.get("input_shape") or X.shape[1:]),
    }
    return data, info


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    import duckdb
    import sklearn

    return {
        "losslab": getattr(losslab, "__version__", "unknown"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "duckdb": duckdb.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def _device_label(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(dev)})"
    return device


def run_cell(cell: Cell | Mapping[str, Any], *, device: str = "cpu") -> dict[str, Any]:
    """Train and evaluate one cell; returns the row for ``ResultStore.insert``.

    ``device`` (``"cpu"``, ``"cuda"``, ``"mps"``) is where it trains; it is recorded with
    the library versions (``versions["device"]``, the GPU's name included) and is no part
    of the cell's key. Retrieval (embedding) cells train on the CPU.

    Torch runs on one thread inside the cell so that results do not depend on how many
    cores the process was given (thread count changes float reduction order). A cell
    that diverges is a finished row (``diverged``, ``diverged_epoch``, the metrics of its
    best finite epoch or NULL); any other failure raises :class:`CellError`.
    """
    if not isinstance(cell, Cell):
        cell = Cell.from_dict(cell)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    columns = METRIC_COLUMNS
    try:
        # the code that trains is the code fingerprinted: taken before training starts
        code = {"key": cell.key, "config_key": cell.config_key, "fingerprint": cell.fingerprint}
        parts = code_parts(cell.loss, cell.dataset, cell.protocol)
        if get_protocol(cell.protocol).task == "retrieval":
            from losslab.bench import embedding

            result, info, kind = embedding.retrieval_cell(cell)
            device = "cpu"  # the embedding trainer has no device option
            columns = embedding.METRIC_COLUMNS
        else:
            data, info = build_split(cell)
            torch.manual_seed(cell.seed)
            kind = resolve_model_kind(cell.model, info["modality"], info["input_shape"])
            model = build_model(
                kind, info["input_shape"], data.num_classes, modality=info["modality"]
            )
            loss_config = resolve_loss_config(cell.loss_config, data.y_train, data.num_classes)
            loss_fn = losslab.loss_info(cell.loss).build(
                num_samples=len(data.X_train), **loss_config
            )
            result = train(model, loss_fn, data, replace(cell.train_config(), device=device))
    except (ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CellError(
            problem("bench", f"cell {cell.label()}", "to train", f"{type(exc).__name__}: {first}")
        ) from exc
    finally:
        torch.set_num_threads(threads)
    f = result.final
    noise_kind, noise_rate = corruption_rate(cell.corruption)
    metrics = {c: None if f is None else f[s][m] for c, (s, m) in columns.items()}
    if f is not None and "acc" in f["test"]:
        metrics["test_top5"] = f["test"].get("top5", f["test"]["acc"])
    metrics.update(nc_columns(f))
    return {
        "key": code["key"],
        "dataset": cell.dataset,
        "corruption": cell.corruption,
        "noise_kind": noise_kind,
        "noise_rate": noise_rate,
        "loss": cell.loss,
        "loss_config": dict(cell.loss_config),
        "model": kind,
        "seed": cell.seed,
        "lr": cell.lr,
        "protocol": cell.protocol,
        "test_top5": None,
        **metrics,
        "actual_noise_rate": info["actual_noise_rate"],
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "diverged": result.diverged,
        "diverged_epoch": result.diverged_epoch,
        "wall_time_s": time.perf_counter() - t0,
        "config": {**cell.to_dict(), "data": info},
        "metrics": f,
        "curves": result.curves,
        "reliability": result.test_reliability,
        "versions": {**library_versions(), "device": _device_label(device)},
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "config_key": code["config_key"],
        "fingerprint": code["fingerprint"],
        "code": parts,
    }
