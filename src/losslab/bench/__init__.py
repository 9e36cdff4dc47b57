"""``losslab bench``: label-noise and imbalance benchmark.

One direction: configuration (:mod:`~losslab.bench.protocol`, :mod:`~losslab.bench.grid`)
-> :class:`~losslab.bench.plan.Plan` -> execution (:mod:`~losslab.bench.cell`,
:mod:`~losslab.bench.backends`, :mod:`~losslab.bench.runner`) -> result store -> report.
See docs/bench.md.
"""

from losslab.bench.cell import run_cell
from losslab.bench.grid import Cell, GridError, GridSpec, grid_from_file, preset, validate_grid
from losslab.bench.plan import Plan
from losslab.bench.protocol import PROTOCOLS, Protocol, TrainConfig
from losslab.bench.runner import execute, run_grid
from losslab.bench.store import ResultStore, StoreError

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
