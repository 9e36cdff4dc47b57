"""Re-run the issue-9 categories against a losslab source tree and print the counts.

    python tests/bench/hostile_check.py [SRC]   # SRC: a src/ folder (default: this checkout's)

Only the command line is used (``python -m losslab.bench.cli`` with ``PYTHONPATH=SRC``),
so the same script measures any version of the engine. Counts: tracebacks over every
store fault x command and every bad grid file or option; grids stopped by a diverging
cell; trainings beyond one per cell with three runs on one store; workers (and their
resource tracker) alive 5 s after ``kill -9`` of a running ``--workers 2`` run (its
workers started up); runs killed by
an outside read-only reader; reads of a store in a read-only location that failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "300"}
CLI = [sys.executable, "-m", "losslab.bench.cli"]
TINY = (
    "datasets: [digits]\ncorruptions: [clean, 'uniform:0.3']\nlosses: [ce]\nseeds: 2\n"
    "epochs: 2\nbatch_size: 256\n"
)


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def traceback_count(work: Path) -> tuple[int, int]:
    """(tracebacks, cases) over store faults x commands and bad grid files/options."""
    g = work / "g.yaml"
    g.write_text(TINY)
    ok = work / "ok.duckdb"
    assert cli("bench", "run", "-c", str(g), "--store", str(ok)).returncode == 0
    cases: list[list[str]] = []
    faults = work / "faults"
    faults.mkdir()
    for kind in ("truncated", "garbage", "empty", "directory", "lock_dir", "under_file"):
        d = faults / kind
        d.mkdir()
        store = d / "r.duckdb"
        if kind == "truncated":
            shutil.copy(ok, store)
            os.truncate(store, 4096)
        elif kind == "garbage":
            store.write_bytes(os.urandom(3000))
        elif kind == "empty":
            store.write_bytes(b"")
        elif kind == "directory":
            store.mkdir()
        elif kind == "lock_dir":
            shutil.copy(ok, store)
            (d / "r.duckdb.lock").mkdir()
        else:
            (d / "plain").write_text("x")
            store = d / "plain" / "r.duckdb"
        for cmd in (
            ["bench", "run", "-c", str(g)],
            ["bench", "status"],
            ["report", "--out", str(d / "rep")],
        ):
            cases.append([*cmd, "--store", str(store)])
    bad = {
        "patience": TINY + "patience: soon\n",
        "gce_scalar": TINY.replace("losses: [ce]", "losses: {gce: 0.7}"),
        "gce_list": TINY.replace("losses: [ce]", "losses: {gce: [1, 2]}"),
        "syntax": TINY + "oops: [\n",
        "lr": TINY + "lr: fast\n",
    }
    for name, text in bad.items():
        f = work / f"{name}.yaml"
        f.write_text(text)
        cases.append(["bench", "run", "-c", str(f), "--store", str(work / "x.duckdb")])
    base = ["bench", "run", "-d", "digits", "--corruption", "clean", "--store", str(work / "y")]
    cases += [base, [*base, "-l", "ce", "--workers", "0"], [*base, "-l", "ce", "--workers", "-2"]]
    tracebacks = 0
    for argv in cases:
        res = cli(*argv)
        bad_exit = argv[-1] == "0" or argv[-1] == "-2"
        if "Traceback" in res.stderr or (bad_exit and res.returncode == 0):
            tracebacks += 1
    return tracebacks, len(cases)


def diverged_stops(work: Path) -> int:
    g = work / "div.yaml"
    g.write_text(TINY + "optimizer: sgd\nlr: [1.0e+8, 0.01]\n")
    db = str(work / "div.duckdb")
    first, again = cli("bench", "run", "-c", str(g), "--store", db), None
    again = cli("bench", "run", "-c", str(g), "--store", db)
    return int(first.returncode != 0) + int(again.returncode != 0)


def duplicated_trainings(work: Path) -> tuple[int, int]:
    g = work / "three.yaml"
    g.write_text(TINY + "lr: [0.003, 0.01, 0.03]\n")
    db = str(work / "three.duckdb")
    procs = [
        subprocess.Popen(
            [*CLI, "bench", "run", "-c", str(g), "--store", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(3)
    ]
    ran = 0
    for p in procs:
        out, _ = p.communicate(timeout=900)
        line = next((ln for ln in out.splitlines() if " cells run, " in ln), "0 cells run")
        ran += int(line.split()[0])
    total = 2 * 3 + 2  # 2 corruptions x 3 lrs on seed 0, the selected lr on seed 1
    return ran - total, total


def orphans(work: Path) -> tuple[int, int, float]:
    g = work / "orphan.yaml"
    g.write_text(TINY.replace("epochs: 2", "epochs: 300"))
    parent = subprocess.Popen(
        [
            *CLI,
            "bench",
            "run",
            "-c",
            str(g),
            "--store",
            str(work / "orphan.duckdb"),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    # kill a running pool: both workers started up (torch loaded) and a few seconds on
    kids: set[int] = set()
    for _ in range(1200):
        time.sleep(0.5)
        kids = descendants(parent.pid)
        if len([k for k in kids if loaded_torch(k)]) >= 2:
            break
    time.sleep(5)
    kids = descendants(parent.pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    killed = time.time()
    time.sleep(5)
    at_5s = len([k for k in kids if is_alive(k)])
    # a worker still starting up exits when its start-up ends: how long that took
    while any(is_alive(k) for k in kids) and time.time() - killed < 120:
        time.sleep(0.5)
    alive = [k for k in kids if is_alive(k)]
    for k in alive:  # clean up after a failing engine
        os.kill(k, signal.SIGKILL)
    return at_5s, len(alive), time.time() - killed


def descendants(pid: int) -> set[int]:
    parents = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{e}/stat").read_text()
                parents[int(e)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def loaded_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reader_kills(work: Path) -> int:
    g = work / "reader.yaml"
    g.write_text(TINY.replace("epochs: 2", "epochs: 30"))
    db = work / "reader.duckdb"
    run = subprocess.Popen(
        [*CLI, "bench", "run", "-c", str(g), "--store", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    while run.poll() is None and not db.exists():
        time.sleep(0.1)
    time.sleep(3)  # mid-grid
    code = (
        "import duckdb, sys, time\nwhile True:\n    try:\n        c = duckdb.connect("
        "sys.argv[1], read_only=True); break\n    except duckdb.IOException:\n"
        "        time.sleep(0.01)\ntime.sleep(15)\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", code, str(db)])
    _, err = run.communicate(timeout=600)
    reader.wait()
    return int(run.returncode != 0 or "Traceback" in err)


def read_only_failures(work: Path) -> int:
    folder = work / "ro"
    folder.mkdir()
    g = work / "g.yaml"
    assert cli("bench", "run", "-c", str(g), "--store", str(folder / "r.duckdb")).returncode == 0
    for extra in folder.iterdir():
        if extra.name != "r.duckdb":
            extra.unlink()
    fails = 0
    for argv in (["bench", "status"], ["report", "--out", str(work / "rorep")]):
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        res = subprocess.run(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(folder),
                *CLI,
                *argv,
                "--store",
                str(folder / "r.duckdb"),
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
        fails += int(res.returncode != 0)
    return fails


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tb, cases = traceback_count(work)
        print(f"tracebacks: {tb} of {cases} fault and bad-input cases", flush=True)
        print(f"diverged cells stopping a grid (run + re-run): {diverged_stops(work)}", flush=True)
        dup, total = duplicated_trainings(work)
        print(f"duplicated trainings with 3 concurrent runs: {dup} (grid of {total})", flush=True)
        at_5s, at_120s, took = orphans(work)
        print(
            f"orphan workers after kill -9: {at_5s} at 5 s, {at_120s} at 120 s "
            f"(all gone after {took:.0f} s)",
            flush=True,
        )
        print(f"runs killed by an outside read-only reader: {reader_kills(work)}", flush=True)
        print(f"failed reads of a store in a read-only location: {read_only_failures(work)}")
