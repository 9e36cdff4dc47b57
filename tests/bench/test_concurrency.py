"""Processes around a grid: several runs on one store split it, and a killed parallel
run leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from losslab.bench.store import ResultStore

CLI = [sys.executable, "-m", "losslab.bench.cli"]


def _grid_file(tmp_path: Path, extra: str = "") -> Path:
    g = tmp_path / "g.yaml"
    g.write_text(
        "datasets: [digits]\ncorruptions: [clean, 'uniform:0.3']\nlosses: [ce]\n"
        "seeds: 2\nepochs: 2\nbatch_size: 256\n" + extra
    )
    return g


@pytest.mark.distributed
def test_three_runs_on_one_store_train_each_cell_once(tmp_path):
    g = _grid_file(tmp_path, "lr: [0.003, 0.03]\n")
    db = tmp_path / "r.duckdb"
    procs = [
        subprocess.Popen(
            [*CLI, "bench", "run", "-c", str(g), "--store", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    ran = []
    for out, _ in outs:
        summary = next(line for line in out.splitlines() if " cells run, " in line)
        ran.append(int(summary.split()[0]))
    # 2 corruptions x 2 lrs tuned on seed 0 + the selected lr for seed 1
    assert sum(ran) == 6, outs
    rows = ResultStore(db).rows()
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


DRIVER = """
import bench_helpers
from losslab.bench.backends import PoolBackend
from losslab.bench.grid import grid_from_file
from losslab.bench.runner import run_grid
run_grid(grid_from_file({g!r}), {db!r}, PoolBackend(2, worker_init=bench_helpers.mark_worker_up))
"""


@pytest.mark.distributed
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_pool_workers_die_with_their_parent(tmp_path):
    g = _grid_file(tmp_path, "epochs: 300\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    code = DRIVER.format(g=str(g), db=str(tmp_path / "r.duckdb"))
    parent = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "LOSSLAB_TEST_MARKS": str(marks)}
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(marks.iterdir())) < 2:
        time.sleep(0.2)
    workers = {int(p.stem) for p in marks.iterdir()}
    assert len(workers) == 2 and workers <= _children(parent.pid)
    kids = _children(parent.pid)  # the workers and, if started, the resource tracker
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    time.sleep(5)
    assert [k for k in kids if _alive(k)] == []
