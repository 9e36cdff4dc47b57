"""``losslab bench``: label-noise and imbalance benchmark (grids, trainer, store, report).

Data flows one way: dataset -> corruption -> model -> trainer -> metrics -> result store
-> report. See docs/bench.md.
"""

from losslab.bench.grid import Cell, GridSpec, grid_from_file, preset, validate_grid
from losslab.bench.runner import run_cell, run_grid
from losslab.bench.store import ResultStore

__all__ = [
    "Cell",
    "GridSpec",
    "ResultStore",
    "grid_from_file",
    "preset",
    "run_cell",
    "run_grid",
    "validate_grid",
]
