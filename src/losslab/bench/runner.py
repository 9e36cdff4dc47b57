"""Execute a :class:`~losslab.bench.plan.Plan` on a backend: tuning and fixed cells,
selection, then the selected finals. Stored cells are never re-run, and cells are
claimed with expiring leases, so re-running resumes and several processes on one store
split the work."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from losslab.bench.fingerprint import changed_parts
from losslab.bench.grid import Cell, GridSpec, validate_grid
from losslab.bench.plan import Plan, Selection
from losslab.bench.store import ResultStore, StoreError, claimer_id

__all__ = ["DEFAULT_LEASE_S", "GridRun", "StaleRow", "execute", "run_grid", "stale_rows"]

#: a claimer renews its leases every third of this; a dead claimer's cells are free
#: again at most this long after it died
DEFAULT_LEASE_S = 120.0


@dataclass
class GridRun:
    """Outcome of a run: cells trained here, stored before the run started, trained
    by other processes meanwhile, and the selected configuration per group."""

    grid_id: str
    total: int
    ran: int
    skipped: int
    by_others: int = 0
    selection: Selection = field(default_factory=dict)
    #: members of the grid dropped because they ran other code (their rows stay stored)
    retired: int = 0


@dataclass(frozen=True)
class StaleRow:
    """A stored member of a grid that ran other code than the grid would run now:
    ``label`` names the cell, ``changed`` the fingerprint parts that differ."""

    key: str
    label: str
    changed: tuple[str, ...]


def stale_rows(store: ResultStore, plan: Plan) -> list[StaleRow]:
    """The grid's stored members whose key the current code would not produce (see
    :meth:`Plan.possible_keys`); ``bench run`` trains their cells again under new keys
    and drops them from the grid, leaving the rows stored."""
    possible = plan.possible_keys()
    out = []
    for r in store.member_results(plan.grid.grid_id):
        if r["key"] in possible:
            continue
        cfg = ",".join(f"{k}={v}" for k, v in sorted((r["loss_config"] or {}).items()))
        label = f"{r['dataset']}/{r['corruption']}/{r['loss']}({cfg})/lr={r['lr']:g}/s{r['seed']}"
        try:
            protocol = plan.grid.protocol  # every member of a grid trains under its protocol
            changed = tuple(changed_parts(r["code"], r["loss"], r["dataset"], protocol))
        except ValueError:  # a loss or dataset that no longer exists
            changed = ("loss",)
        out.append(StaleRow(r["key"], label, changed))
    return out


class _Claims:
    """Draws the cells of one wave by claiming them one at a time (an iterator for a
    backend), renews the leases of drawn cells until they finish, and releases what
    is left when closed."""

    def __init__(self, store: ResultStore, cells: Sequence[Cell], owner: str, lease_s: float):
        self.store, self.owner, self.lease_s = store, owner, lease_s
        self.cells = {c.key: c for c in cells}
        self.order = [c.key for c in cells]
        self.drawn: set[str] = set()
        self.in_flight: set[str] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="lease-renewer", daemon=True)

    def __enter__(self) -> _Claims:
        self._renewer.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._stop.set()
        self._renewer.join()
        try:
            self.store.release(self.owner)
        except StoreError:
            # the error that ended the wave matters more; the leases expire anyway
            if exc_type is None:
                raise

    def __iter__(self) -> Iterator[Cell]:
        while True:
            keys = [k for k in self.order if k not in self.drawn]
            got = self.store.claim(keys, self.owner, self.lease_s)
            if not got:
                return
            with self._guard:
                self.drawn.add(got[0])
                self.in_flight.add(got[0])
            yield self.cells[got[0]]

    def finished(self, key: str) -> None:
        with self._guard:
            self.in_flight.discard(key)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._guard:
                keys = list(self.in_flight)
            # a store fault shows in the main thread's next access; here it would only
            # end the renewals
            with contextlib.suppress(StoreError):
                self.store.renew(self.owner, keys, self.lease_s)


def execute(
    plan: Plan,
    store: ResultStore | str | os.PathLike[str],
    backend: Any,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[Mapping[str, Any]], None] | None = None,
    on_wait: Callable[[int], None] | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    poll_s: float = 1.0,
) -> GridRun:
    """Run the plan's tuning and fixed cells, select per group, run the finals.

    ``on_start(total, already_done)`` is called once, ``on_result(row)`` for each cell
    finished here (in completion order), ``on_wait(cells_left)`` while this process
    waits for cells that other processes are training.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    grid = plan.grid
    owner = claimer_id()
    store.add_grid(grid.grid_id, grid.name, grid.to_dict())
    # members that ran other code leave the grid; their cells train again under new keys
    retired = store.retire_members(grid.grid_id, plan.possible_keys())
    store.add_members(grid.grid_id, plan.tuning, "tune")
    store.add_members(grid.grid_id, plan.fixed, "final")
    done_before = store.done_keys()
    ran = 0

    def finished(claims: _Claims) -> Callable[[Mapping[str, Any]], None]:
        def hook(row: Mapping[str, Any]) -> None:
            nonlocal ran
            ran += 1
            claims.finished(row["key"])
            if on_result is not None:
                on_result(row)

        return hook

    def wave(cells: Sequence[Cell]) -> None:
        while True:
            with _Claims(store, cells, owner, lease_s) as claims:
                backend.run(claims, store, finished(claims))
            done = store.done_keys()
            left = [c for c in cells if c.key not in done]
            if not left:
                return
            # the rest is claimed by other processes: wait for them, or for their
            # leases to expire if they died
            if on_wait is not None:
                on_wait(len(left))
            time.sleep(poll_s)

    if on_start is not None:
        members = {c.key for c in (*plan.tuning, *plan.fixed)}
        on_start(plan.total, len(members & done_before))
    wave([*plan.tuning, *plan.fixed])
    selection: Selection = {}
    if plan.tuning:
        rows = {r["key"]: r for r in store.rows([c.key for c in plan.tuning])}
        selection = plan.select(rows)
    finals = plan.finals(selection)
    store.add_members(grid.grid_id, finals, "final")
    wave(finals)
    planned = {c.key for c in (*plan.tuning, *finals)}
    skipped = len(planned & done_before)
    return GridRun(
        grid_id=grid.grid_id,
        total=plan.total,
        ran=ran,
        skipped=skipped,
        by_others=plan.total - ran - skipped,
        selection=selection,
        retired=retired,
    )


def run_grid(
    grid: GridSpec, store: ResultStore | str | os.PathLike[str], backend: Any, **kwargs: Any
) -> GridRun:
    """Validate ``grid`` (names, configs, data), then :func:`execute` its plan on
    ``backend`` (see ``losslab.bench.backends``). Cells already stored are never re-run,
    so re-running the same call after a crash resumes."""
    validate_grid(grid)
    return execute(Plan.of(grid), store, backend, **kwargs)
