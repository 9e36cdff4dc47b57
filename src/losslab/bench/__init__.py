"""``losslab bench``: label-noise and imbalance benchmark.

One direction: configuration (:mod:`~losslab.bench.protocol`, :mod:`~losslab.bench.grid`)
-> :class:`~losslab.bench.plan.Plan` -> execution (:mod:`~losslab.bench.cell`,
:mod:`~losslab.bench.backends`, :mod:`~losslab.bench.runner`) -> result store -> report.
See docs/bench.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from losslab._lazy import lazy_attributes

if TYPE_CHECKING:
    from losslab.bench.cell import run_cell
    from losslab.bench.grid import Cell, GridError, GridSpec, grid_from_file, preset, validate_grid
    from losslab.bench.plan import Plan
    from losslab.bench.protocol import PROTOCOLS, Protocol, TrainConfig
    from losslab.bench.runner import execute, run_grid
    from losslab.bench.store import ResultStore, StoreError

# name -> module; imported on first use, so that `losslab bench --help` (which imports
# losslab.bench.cli, and with it this package) does not load torch
_FROM = {
    "run_cell": "cell",
    "Cell": "grid",
    "GridError": "grid",
    "GridSpec": "grid",
    "grid_from_file": "grid",
    "preset": "grid",
    "validate_grid": "grid",
    "Plan": "plan",
    "PROTOCOLS": "protocol",
    "Protocol": "protocol",
    "TrainConfig": "protocol",
    "execute": "runner",
    "run_grid": "runner",
    "ResultStore": "store",
    "StoreError": "store",
}


__getattr__, __dir__ = lazy_attributes(__name__, _FROM, globals())


__all__ = [
    "PROTOCOLS",
    "Cell",
    "GridError",
    "GridSpec",
    "Plan",
    "Protocol",
    "ResultStore",
    "StoreError",
    "TrainConfig",
    "execute",
    "grid_from_file",
    "preset",
    "run_cell",
    "run_grid",
    "validate_grid",
]
