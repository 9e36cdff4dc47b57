"""Execution backends. Each trains the cells it draws from an iterable (the runner's
claims, drawn lazily as capacity frees up) and stores every finished row before
reporting it, so whatever finished survives a crash of the driver or of a worker.

- ``InProcessBackend``: one cell after another in this process (the default).
- ``PoolBackend``: local worker processes (``spawn``); workers write to the store
  themselves, serialised by the store's file lock, and exit when their parent dies.
- ``RayBackend``: Ray tasks (local or ``address=`` of a running cluster); tasks return
  their rows and the driver stores them, so cluster nodes need no shared filesystem.

Every cell seeds itself and runs torch on one thread, so the backend never changes a
result.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import torch

from losslab.bench.cell import run_cell
from losslab.bench.grid import Cell
from losslab.bench.protocol import problem
from losslab.bench.store import ResultStore

__all__ = [
    "BACKENDS",
    "Backend",
    "InProcessBackend",
    "PoolBackend",
    "RayBackend",
    "WorkerDiedError",
    "make_backend",
]

BACKENDS = ("inprocess", "pool", "ray")
OnResult = Callable[[Mapping[str, Any]], None]
WorkerInit = Callable[[], None] | None


class WorkerDiedError(RuntimeError):
    """A worker process was killed; finished cells are stored."""


class Backend(Protocol):
    def run(self, cells: Iterable[Cell], store: ResultStore, on_result: OnResult) -> None: ...


class InProcessBackend:
    """Run cells sequentially in the calling process (on ``device``)."""

    def __init__(self, device: str = "cpu"):
        self.device = device

    def run(self, cells: Iterable[Cell], store: ResultStore, on_result: OnResult) -> None:
        for cell in cells:
            row = run_cell(cell, device=self.device)
            store.insert(row)
            on_result(row)


def _exit_with_parent() -> None:
    # the parent's end of this pipe closes when it dies, however it dies (kill -9
    # included); without this a worker blocked on the task queue would live on
    parent = mp.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)


def _kill_with_parent() -> None:
    # Linux: the kernel kills the worker the moment its parent dies, even while a
    # loaded machine would leave the watching thread unscheduled for seconds
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _init_worker(worker_init: WorkerInit) -> None:
    _kill_with_parent()
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    torch.set_num_threads(1)
    if worker_init is not None:
        worker_init()


def _run_and_store(cell: dict[str, Any], store: ResultStore, device: str) -> dict[str, Any]:
    row = run_cell(cell, device=device)
    store.insert(row)
    return row


class PoolBackend:
    """``workers`` local processes. ``worker_init`` (a picklable, module-level function)
    runs once in each worker, e.g. to register user-defined losses."""

    def __init__(self, workers: int = 2, worker_init: WorkerInit = None, device: str = "cpu"):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(problem("PoolBackend", "workers", "a positive int", repr(workers)))
        self.workers = workers
        self.worker_init = worker_init
        self.device = device

    def run(self, cells: Iterable[Cell], store: ResultStore, on_result: OnResult) -> None:
        todo = iter(cells)
        first = next(todo, None)
        if first is None:
            return
        # spawn, not fork: forking a process whose torch thread pool is initialised can
        # deadlock, and spawn behaves the same on every OS
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.worker_init,),
        )
        try:
            pending: set[Future[dict[str, Any]]] = {
                pool.submit(_run_and_store, first.to_dict(), store, self.device)
            }
            while pending:
                # draw only as many cells as there are workers, so unstarted cells stay
                # free for other processes on the same store
                while len(pending) < self.workers and (cell := next(todo, None)) is not None:
                    pending.add(pool.submit(_run_and_store, cell.to_dict(), store, self.device))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_result(fut.result())
        except BrokenProcessPool:
            raise WorkerDiedError(
                problem(
                    "bench",
                    "worker processes",
                    "to finish their cells",
                    "a worker that died (killed or out of memory); finished cells are "
                    "stored, re-run the same command to resume",
                )
            ) from None
        finally:
            # on Ctrl-C or an error, drop queued cells instead of finishing the grid
            pool.shutdown(wait=True, cancel_futures=True)


def _ray_task(cell: dict[str, Any], worker_init: WorkerInit, device: str) -> dict[str, Any]:
    torch.set_num_threads(1)
    if worker_init is not None:
        worker_init()
    return run_cell(cell, device=device)


class RayBackend:
    """Ray tasks of one CPU each. Without ``address`` a local Ray instance is started
    with ``num_cpus`` CPUs (all cores if None); with it, the running cluster is used
    (``"auto"`` for the one this machine belongs to). The driver stores each row."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        worker_init: WorkerInit = None,
        device: str = "cpu",
    ):
        self.address = address
        self.num_cpus = num_cpus
        self.worker_init = worker_init
        self.device = device

    def _ensure_ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ValueError(
                problem(
                    "bench",
                    "backend 'ray'",
                    "the ray package (pip install 'losslab[ray]')",
                    "it not installed",
                )
            ) from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(**kwargs)
        return ray

    def run(self, cells: Iterable[Cell], store: ResultStore, on_result: OnResult) -> None:
        todo = iter(cells)
        first = next(todo, None)
        if first is None:
            return
        ray = self._ensure_ray()
        task = ray.remote(num_cpus=1)(_ray_task)
        limit = max(int(ray.cluster_resources().get("CPU", 1)), 1)
        pending = [task.remote(first.to_dict(), self.worker_init, self.device)]
        while pending:
            while len(pending) < limit and (cell := next(todo, None)) is not None:
                pending.append(task.remote(cell.to_dict(), self.worker_init, self.device))
            done, pending = ray.wait(pending, num_returns=1)
            row = ray.get(done[0])
            store.insert(row)
            on_result(row)


def make_backend(
    name: str = "inprocess",
    *,
    workers: int = 1,
    address: str | None = None,
    worker_init: WorkerInit = None,
    device: str = "cpu",
) -> Backend:
    """Backend by name; ``workers > 1`` with ``inprocess`` means a local pool. ``device``:
    where every cell trains (no part of the cell keys)."""
    if name not in BACKENDS:
        raise ValueError(problem("bench", "backend", f"one of {list(BACKENDS)}", repr(name)))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(problem("bench", "workers", "a positive int", repr(workers)))
    if name == "ray":
        # --workers caps a local Ray instance's CPUs; the default (1) means all cores
        cpus = workers if workers > 1 and not address else None
        return RayBackend(address=address, num_cpus=cpus, worker_init=worker_init, device=device)
    if name == "pool" or workers > 1:
        return PoolBackend(workers=workers, worker_init=worker_init, device=device)
    return InProcessBackend(device=device)
