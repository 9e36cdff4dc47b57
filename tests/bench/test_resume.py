"""kill -9 a real worker process mid-grid, re-run the same command, check the store."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from losslab.bench.grid import GridSpec
from losslab.bench.plan import Plan
from losslab.bench.store import ResultStore

DRIVER = """
from losslab.bench.backends import InProcessBackend, PoolBackend
from losslab.bench.grid import GridSpec
from losslab.bench.runner import run_grid
grid = GridSpec(**{spec!r})
backend = PoolBackend(2) if {pool!r} else InProcessBackend()
run_grid(grid, {db!r}, backend)
"""


def _grid() -> GridSpec:
    return GridSpec(
        name="resume",
        datasets=["digits"],
        corruptions=["clean", "uniform:0.3"],
        losses=["ce", "gce"],
        loss_grids={"gce": [{"q": 0.3}, {"q": 0.7}]},
        seeds=[0, 1],
        lrs=[1e-2],
        model="mlp",
        train={"epochs": 8, "batch_size": 64, "patience": None},
    )


def _run_driver(db: Path, pool: bool) -> subprocess.Popen:
    code = DRIVER.format(spec=_grid().to_dict(), db=str(db), pool=pool)
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)


def _kill_and_resume(tmp_path: Path, pool: bool) -> None:
    db = tmp_path / "r.duckdb"
    store = ResultStore(db)
    proc = _run_driver(db, pool)
    deadline = time.time() + 600  # generous: shared machines can be very loaded
    victim = None
    while time.time() < deadline and proc.poll() is None:
        if db.exists() and store.count() >= 2:
            victim = int(store.rows()[0]["worker"].rsplit(":", 1)[1])
            break
        time.sleep(0.2)
    assert victim is not None, f"no cell finished in time: {proc.poll()} {proc.stderr.read()}"
    os.kill(victim, signal.SIGKILL)  # the process training cells, mid-grid
    proc.wait(120)
    assert proc.returncode != 0, "the driver should fail when its worker dies"
    partial = store.done_keys()
    plan = Plan.of(_grid())
    total = plan.total
    assert 2 <= len(partial) < total

    proc = _run_driver(db, pool)  # the same command again
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = store.rows()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == total
    assert partial <= set(keys)
    # the resumed grid is exactly the grid run uninterrupted
    sel = plan.select({r["key"]: r for r in rows})
    expected = {c.key for c in plan.tuning} | {c.key for c in plan.finals(sel)}
    assert set(keys) == expected


def test_kill_inprocess_worker_then_resume(tmp_path):
    """The in-process backend: the killed process is the driver itself."""
    _kill_and_resume(tmp_path, pool=False)


@pytest.mark.distributed
@pytest.mark.slow
def test_kill_pool_worker_then_resume(tmp_path):
    """A pool worker dies; the driver fails cleanly and the re-run completes the grid."""
    _kill_and_resume(tmp_path, pool=True)
