"""Run one cell (dataset -> corruption -> split -> model -> trainer -> metrics row) and
whole grids (tune, select, run finals) on any backend, skipping stored cells."""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from losslab.bench.grid import (
    Cell,
    GridSpec,
    corruption_rate,
    count_cells,
    final_cells,
    tuning_cells,
    validate_grid,
)
from losslab.bench.models import build_model, resolve_model_kind
from losslab.bench.store import ResultStore
from losslab.bench.trainer import SplitData, train

__all__ = [
    "GridRun",
    "build_split",
    "library_versions",
    "run_cell",
    "run_grid",
    "select_configs",
]


@functools.lru_cache(maxsize=8)
def _load(name: str) -> Any:
    from losslab.data import load_dataset

    return load_dataset(name)


def _input_scaling(X: np.ndarray, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature offset and scale from training rows: z-scores for the tuned protocol;
    for ``ldr-faithful`` a min-max map to [-1, 1], the scaling of the LIBSVM files that
    the LDR code reads."""
    if cell.standardize:
        lo, scale = X.mean(0), X.std(0)
    else:
        lo = (X.max(0) + X.min(0)) / 2
        scale = (X.max(0) - X.min(0)) / 2
    return lo, np.where(scale > 1e-8, scale, 1.0)


def build_split(cell: Cell) -> tuple[SplitData, dict[str, Any]]:
    """Corrupt the training labels, split off the (equally noisy) validation set and
    scale features with training statistics. Returns the tensors and metadata."""
    from losslab.data import train_val_split
    from losslab.data.corrupt import CorruptionSpec, corrupt, parse_corruption

    ds = _load(cell.dataset)
    K = int(ds.num_classes)
    X = np.asarray(ds.X_train, dtype=np.float32)
    y = np.asarray(ds.y_train, dtype=np.int64)
    spec = parse_corruption(cell.corruption)
    if cell.protocol == "ldr-faithful" and spec.kind == "uniform":
        # the LDR code redraws a noisy label from all K classes (it may redraw itself)
        spec = CorruptionSpec("uniform_redraw", spec.rate)
    res = corrupt(y, spec, num_classes=K, seed=cell.seed, dataset=cell.dataset, X=X)
    idx = np.asarray(res.indices, dtype=np.int64)
    noisy = np.asarray(res.labels, dtype=np.int64)
    X, clean = X[idx], y[idx]
    tr, va = train_val_split(noisy, val_fraction=cell.val_fraction, seed=cell.seed)
    Xte = np.asarray(ds.X_test, dtype=np.float32)
    lo, scale = _input_scaling(X[tr], cell)

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

    import losslab

    return {
        "losslab": getattr(losslab, "__version__", "unknown"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "duckdb": duckdb.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def run_cell(cell: Cell | Mapping[str, Any]) -> dict[str, Any]:
    """Train and evaluate one cell; returns the row for ``ResultStore.insert``.

    Torch runs on one thread inside the cell so that results do not depend on how many
    cores the process was given (thread count changes float reduction order).
    """
    import losslab

    if not isinstance(cell, Cell):
        cell = Cell.from_dict(cell)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, info = build_split(cell)
        torch.manual_seed(cell.seed)
        kind = resolve_model_kind(cell.model, info["modality"], info["input_shape"])
        model = build_model(kind, info["input_shape"], data.num_classes,
                            modality=info["modality"])  # fmt: skip
        stateful = bool(getattr(losslab.loss_info(cell.loss), "stateful", False))
        extra = {"num_samples": len(data.X_train)} if stateful else {}
        loss_fn = losslab.build_loss(cell.loss, **cell.loss_config, **extra)
        result = train(model, loss_fn, data, cell.train_config(), stateful=stateful)
    finally:
        torch.set_num_threads(threads)
    f = result.final
    noise_kind, noise_rate = corruption_rate(cell.corruption)
    return {
        "key": cell.key,
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
        "test_acc": f["test"]["acc"],
        "test_top5": f["test"].get("top5", f["test"]["acc"]),
        "test_balanced_acc": f["test"]["balanced_acc"],
        "test_macro_f1": f["test"]["macro_f1"],
        "test_nll": f["test"]["nll"],
        "test_ece": f["test"]["ece"],
        "val_acc": f["val"]["acc"],
        "val_nll": f["val"]["nll"],
        "train_clean_acc": f["train_clean"]["acc"],
        "train_noisy_acc": f["train_noisy"]["acc"],
        "actual_noise_rate": info["actual_noise_rate"],
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "diverged": result.diverged,
        "wall_time_s": time.perf_counter() - t0,
        "config": {**cell.to_dict(), "data": info},
        "metrics": f,
        "curves": result.curves,
        "reliability": result.test_reliability,
        "versions": library_versions(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }


def _score(row: Mapping[str, Any]) -> tuple[float, float]:
    """Higher is better: noisy-validation accuracy, then lower validation NLL."""
    acc = row.get("val_acc")
    nll = row.get("val_nll")
    acc = -np.inf if acc is None or not np.isfinite(acc) else float(acc)
    nll = np.inf if nll is None or not np.isfinite(nll) else float(nll)
    return acc, -nll


def select_configs(
    grid: GridSpec, rows_by_key: Mapping[str, Mapping[str, Any]]
) -> dict[tuple[str, str, str], tuple[dict[str, Any], float]]:
    """Per (dataset, corruption, loss), the tuning candidate with the best noisy-validation
    accuracy (ties: lower validation NLL, then grid order). Needs every tuning row."""
    best: dict[tuple[str, str, str], tuple[tuple[float, float], dict[str, Any], float]] = {}
    for cell in tuning_cells(grid):
        row = rows_by_key.get(cell.key)
        if row is None:
            raise ValueError(f"selection: tuning cell {cell.label()} has no stored result")
        group = (cell.dataset, cell.corruption, cell.loss)
        score = _score(row)
        if group not in best or score > best[group][0]:
            best[group] = (score, dict(cell.loss_config), cell.lr)
    return {g: (cfg, lr) for g, (_, cfg, lr) in best.items()}


@dataclass
class GridRun:
    """Outcome of ``run_grid``: cell counts and the selected configuration per group."""

    grid_id: str
    total: int
    ran: int
    skipped: int
    selection: dict[tuple[str, str, str], tuple[dict[str, Any], float]] = field(
        default_factory=dict
    )
    wall_time_s: float = 0.0


def run_grid(
    grid: GridSpec,
    store: ResultStore | str | os.PathLike[str],
    backend: Any = None,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[Mapping[str, Any]], None] | None = None,
    validate: bool = True,
) -> GridRun:
    """Validate the grid, run the tuning cells, select per group, run the final cells.

    Cells already in ``store`` are never re-run, so re-running the same command after a
    crash resumes. ``on_start(total, already_done)`` is called once, ``on_result(row)``
    for each newly finished cell (in completion order).
    """
    from losslab.bench.backends import InProcessBackend

    t0 = time.perf_counter()
    if validate:
        validate_grid(grid)
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    backend = backend or InProcessBackend()
    store.add_grid(grid.grid_id, grid.name, grid.to_dict())
    # phase 1: tuning candidates, plus the finals of groups with a single candidate
    # (they need no selection, so they share the first wave)
    tune = tuning_cells(grid)
    untuned = [g for g in grid.groups() if len(grid.configs(g[2])) * len(grid.lrs) == 1]
    fixed = [
        grid.cell(*g, grid.configs(g[2])[0], grid.lrs[0], s) for g in untuned for s in grid.seeds
    ]
    store.add_members(grid.grid_id, tune, "tune")
    store.add_members(grid.grid_id, fixed, "final")
    known = {m["key"] for m in store.members(grid.grid_id)}
    done = store.done_keys()
    total = count_cells(grid)
    wave1 = [c for c in [*tune, *fixed] if c.key not in done]
    ran = 0

    def finished(row: Mapping[str, Any]) -> None:
        nonlocal ran
        ran += 1
        if on_result is not None:
            on_result(row)

    if on_start is not None:
        on_start(total, len(known & done))
    backend.run(wave1, store, finished)
    selection: dict[tuple[str, str, str], tuple[dict[str, Any], float]] = {}
    if tune:
        rows = {r["key"]: r for r in store.rows([c.key for c in tune], parse_json=False)}
        selection = select_configs(grid, rows)
    finals = final_cells(grid, selection)
    store.add_members(grid.grid_id, finals, "final")
    done = store.done_keys()
    backend.run([c for c in finals if c.key not in done], store, finished)
    return GridRun(
        grid_id=grid.grid_id,
        total=total,
        ran=ran,
        skipped=total - ran,
        selection=selection,
        wall_time_s=time.perf_counter() - t0,
    )
