"""A grid survives what users do to it: a diverging cell, and an outside reader holding
the store open (read through `bench export` instead)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from losslab.bench.cli import main
from losslab.bench.store import ResultStore, claimer_id

runner = CliRunner()
CLI = [sys.executable, "-m", "losslab.bench.cli"]


def _grid_file(tmp_path: Path, extra: str = "", name: str = "g.yaml") -> Path:
    g = tmp_path / name
    g.write_text(
        "datasets: [digits]\ncorruptions: [clean, 'uniform:0.3']\nlosses: [ce]\n"
        "seeds: 2\nepochs: 2\nbatch_size: 256\n" + extra
    )
    return g


def test_diverging_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    g = _grid_file(tmp_path, "optimizer: sgd\nlr: [1.0e+8, 0.01]\n")
    db, out = tmp_path / "r.duckdb", tmp_path / "rep"
    res = runner.invoke(main, ["bench", "run", "-c", str(g), "--store", str(db)])
    assert res.exit_code == 0, res.output
    rows = ResultStore(db).rows()
    # 2 corruptions x 2 lrs tuned on seed 0, then the selected lr for seed 1
    assert len(rows) == 6
    diverged = [r for r in rows if r["diverged"]]
    assert len(diverged) == 2 and all(r["lr"] == 1e8 for r in diverged)
    assert all(r["diverged_epoch"] == 0 and r["test_acc"] is None for r in diverged)
    # selection never picks the diverged candidate
    finals = [r for r in rows if r["seed"] == 1]
    assert len(finals) == 2 and all(r["lr"] == 0.01 for r in finals)
    again = runner.invoke(main, ["bench", "run", "-c", str(g), "--store", str(db)])
    assert again.exit_code == 0 and "0 cells run, 6 already stored" in " ".join(
        again.output.split()
    )
    status = runner.invoke(main, ["bench", "status", "--store", str(db)])
    assert status.exit_code == 0 and "6/6" in status.output
    rep = runner.invoke(main, ["report", "--store", str(db), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    md = (out / "report.md").read_text()
    assert "2 diverged cells (0 of them final)" in md and "## Diverged cells" in md
    assert md.count("| tune |") == 2


def _hold_open(db: Path, seconds: float) -> subprocess.Popen:
    """An outside program (not losslab) holding the store open read-only, for
    ``seconds`` or, with ``seconds=0``, until its stdin closes."""
    code = (
        "import duckdb, sys, time\n"
        "while True:\n"
        "    try:\n"
        "        c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "        break\n"
        "    except duckdb.IOException:\n"
        "        time.sleep(0.01)\n"
        "print('open', flush=True)\n"
        "time.sleep(float(sys.argv[2])) if float(sys.argv[2]) else sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_outside_reader_delays_a_run_instead_of_killing_it(tmp_path):
    g = _grid_file(tmp_path, "epochs: 20\n")
    db = tmp_path / "r.duckdb"
    run = subprocess.Popen(
        [*CLI, "bench", "run", "-c", str(g), "--store", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = ResultStore(db)
    while run.poll() is None and not (db.exists() and store.count() >= 1):
        time.sleep(0.2)
    reader = _hold_open(db, 0)  # mid-grid, until the run says it is waiting for it
    assert run.stderr is not None
    told = run.stderr.readline()
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(30)
    rest = run.stderr.read()
    run.wait(300)
    assert run.returncode == 0, told + rest
    assert "held open by" in told and "PID" in told
    assert "Traceback" not in rest
    assert store.count() == 4


def test_outside_reader_past_the_timeout_is_one_line(tmp_path):
    g = _grid_file(tmp_path)
    db = tmp_path / "r.duckdb"
    ResultStore(db).add_grid("x", "x", {})
    reader = _hold_open(db, 0)  # until the run has given up
    try:
        run = subprocess.run(
            [*CLI, "bench", "run", "-c", str(g), "--store", str(db), "--lock-timeout", "2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        reader.kill()
        reader.wait()
    assert run.returncode == 2 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"store: {str(db)!r} expected no other program holding it open")
    assert "PID" in last and "losslab bench export" in last


def test_export_gives_a_snapshot_outside_programs_can_read(tmp_path):
    import duckdb

    g = _grid_file(tmp_path)
    db, snap = tmp_path / "r.duckdb", tmp_path / "snap"
    assert runner.invoke(main, ["bench", "run", "-c", str(g), "--store", str(db)]).exit_code == 0
    res = runner.invoke(main, ["bench", "export", "--store", str(db), "--out", str(snap)])
    assert res.exit_code == 0, res.output
    con = duckdb.connect()
    (n,) = con.execute(f"SELECT count(*) FROM '{snap / 'results.parquet'}'").fetchone()
    assert n == 4
    # the snapshot is not the store: a writer is not blocked by a reader of it
    reader = duckdb.connect()
    reader.execute(f"SELECT * FROM '{snap / 'grids.parquet'}'").fetchall()
    ResultStore(db).add_grid("y", "y", {})


def test_leases_expire_and_dead_local_claimers_free_their_cells(tmp_path):
    store = ResultStore(tmp_path / "r.duckdb")
    keys = ["a", "b", "c"]
    remote = "elsewhere.invalid:1:ffff"
    assert store.claim(keys, remote, lease_s=600) == ["a"]
    me = claimer_id()
    assert store.claim(keys, me, lease_s=60, limit=5) == ["b", "c"]
    assert store.claim(keys, me, lease_s=60) == []
    store.renew(remote, ["a"], lease_s=-1)  # the remote claimer stopped renewing: expired
    assert store.claim(keys, me, lease_s=60) == ["a"]
    store.release(me)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    host = claimer_id().split(":")[0]
    assert store.claim(keys, f"{host}:{dead}:0000", lease_s=600, limit=3) == keys
    # that process has exited: its claims are free at once, not after 600 s
    assert store.claim(keys, me, lease_s=60, limit=3) == keys
    store.insert({"key": "a", "dataset": "d", "loss": "ce"})
    assert store.claimed() == {"b": me, "c": me}
