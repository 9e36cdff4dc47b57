"""Nothing a user does to a grid file, a store or its location ends in a traceback: one
line per problem on stderr, naming the path or key, what was expected and what was
found, and exit status 2. A store in a read-only location can still be read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losslab.bench.cli import main

runner = CliRunner()

TINY_YAML = (
    "datasets: [digits]\ncorruptions: [clean]\nlosses: {ce: {}}\nseeds: 1\nlr: 0.01\n"
    "epochs: 1\nbatch_size: 512\n"
)


def cli(*args: str):
    res = runner.invoke(main, list(args))
    # a traceback would surface as an exception other than the exit
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res


def one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert " expected " in lines[0] and ", got " in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("finished")
    (d / "g.yaml").write_text(TINY_YAML)
    res = runner.invoke(
        main, ["bench", "run", "-c", str(d / "g.yaml"), "--store", str(d / "r.duckdb")]
    )
    assert res.exit_code == 0, res.output
    return d / "r.duckdb"


# ------------------------------------------------------------------------ grid files


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (TINY_YAML.replace("epochs: 1", "patience: soon"), ["patience", "'soon'"]),
        (TINY_YAML.replace("losses: {ce: {}}", "losses: {gce: 0.7}"), ["losses.gce", "0.7"]),
        (TINY_YAML.replace("losses: {ce: {}}", "losses: {gce: [1, 2]}"), ["losses.gce", "1 (int)"]),
        (TINY_YAML.replace("lr: 0.01", "lr: fast"), ["lr expected", "'fast'"]),
        (TINY_YAML.replace("seeds: 1", "seeds: 1\n  oops: [\n"), ["valid YAML", "line"]),
        (TINY_YAML + "epoch: 3\n", ["keys", "'epoch'", "did you mean 'epochs'"]),
        (TINY_YAML.replace("lr: 0.01", "lr: -1"), ["lr expected", "-1"]),
        (TINY_YAML.replace("seeds: 1", "seeds: [a]"), ["seeds", "'a'"]),
        ("- just\n- a list\n", ["grid file expected a mapping"]),
        (TINY_YAML.replace("epochs: 1", "epochs: 1.5"), ["epochs expected a positive int"]),
        (TINY_YAML.replace("epochs: 1", "optimizer: lion"), ["optimizer expected one of"]),
    ],
)
def test_grid_file_errors_are_one_line(tmp_path, text, needles):
    g = tmp_path / "g.yaml"
    g.write_text(text)
    res = cli("bench", "run", "-c", str(g), "--store", str(tmp_path / "r.duckdb"))
    line = one_line_error(res, *needles)
    assert str(g) in line or line.startswith("bench run")
    assert not (tmp_path / "r.duckdb").exists()


def test_every_grid_problem_is_listed_at_once(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text(
        "datasets: [digits, digitz]\ncorruptions: [clean, 'uniform:2', 'pair:-1']\n"
        "losses: {cee: {}, gce: {q: 7}}\nseeds: 1\npatience: soon\nlr: fast\n"
    )
    res = cli("bench", "run", "-c", str(g), "--store", str(tmp_path / "r.duckdb"))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    for needle in (
        "'uniform:2'",
        "'pair:-1'",
        "patience",
        "'fast'",
        "'cee'",
        "losses.gce[0]",
        "'digitz'",
    ):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert len(lines) == 7 and all(" expected " in line for line in lines)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-d", "digits", "--corruption", "clean"], ["--loss expected at least one value"]),
        (["-d", "digits", "--corruption", "clean", "-l", "ce", "--workers", "0"], ["workers", "0"]),
        (["-d", "digits", "--corruption", "clean", "-l", "ce", "--workers", "-2"], ["-2"]),
        (["-d", "digits", "--corruption", "clean", "-l", "ce", "--seeds", "x"], ["--seeds"]),
        (["-d", "digits", "--corruption", "clean", "-l", "ce", "--backend", "dask"], ["'dask'"]),
        (["-c", "."], ["grid file expected", "a directory"]),
        (["-c", "nope.yaml"], ["no such file"]),
    ],
)
def test_option_errors_are_one_line(tmp_path, args, needles):
    res = cli("bench", "run", *args, "--store", str(tmp_path / "r.duckdb"))
    line = one_line_error(res, *needles)
    assert "'--losse'" not in line


def test_dry_run_is_a_plain_flag(tmp_path):
    help_text = cli("bench", "run", "--help").output
    flag_line = next(line for line in help_text.splitlines() if "--dry-run" in line)
    assert "<bool>" not in flag_line
    res = cli(
        "bench",
        "run",
        "-d",
        "digits",
        "--corruption",
        "clean",
        "-l",
        "ce",
        "--dry-run",
        "--store",
        str(tmp_path / "r.duckdb"),
    )
    assert res.exit_code == 0 and not (tmp_path / "r.duckdb").exists()


# ---------------------------------------------------------------------- store faults


def _fault(kind: str, store: Path, finished: Path) -> Path:
    """Make ``store`` (in an empty folder) faulty in one way; returns the --store path."""
    if kind == "truncated":
        shutil.copy(finished, store)
        with open(store, "r+b") as f:
            f.truncate(4096)
    elif kind == "garbage":
        store.write_bytes(os.urandom(3000))
    elif kind == "empty":
        store.write_bytes(b"")
    elif kind == "directory":
        store.mkdir()
    elif kind == "lock_directory":
        shutil.copy(finished, store)
        (store.parent / (store.name + ".lock")).mkdir()
    elif kind == "under_a_file":
        (store.parent / "plain.txt").write_text("x")
        return store.parent / "plain.txt" / "r.duckdb"
    elif kind == "missing":
        pass
    return store


FAULTS = ["truncated", "garbage", "empty", "directory", "lock_directory", "under_a_file"]


@pytest.mark.parametrize("command", ["run", "status", "report", "export"])
@pytest.mark.parametrize("kind", [*FAULTS, "missing"])
def test_store_faults_are_one_line(tmp_path, finished_store, kind, command):
    if kind == "missing" and command == "run":
        pytest.skip("a missing store is created by run")
    store = _fault(kind, tmp_path / "r.duckdb", finished_store)
    g = tmp_path / "g.yaml"
    g.write_text(TINY_YAML)
    argv = {
        "run": ["bench", "run", "-c", str(g)],
        "status": ["bench", "status"],
        "report": ["report", "--out", str(tmp_path / "out")],
        "export": ["bench", "export", "--out", str(tmp_path / "out")],
    }[command]
    res = cli(*argv, "--store", str(store))
    one_line_error(res, "store: ")


def _readonly(folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI with ``folder`` read-only: a read-only bind mount in a private mount
    namespace when root (root ignores permission bits), else permission bits."""
    cmd = [sys.executable, "-m", "losslab.bench.cli", *argv]
    env = {**os.environ, "COLUMNS": "200"}
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare for a read-only bind mount")
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        full = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(folder), *cmd]
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("no mount namespace here for a read-only bind mount")
        return subprocess.run(full, capture_output=True, text=True, env=env, timeout=300)
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    finally:
        for p, m in modes.items():
            p.chmod(m)


def test_read_only_location_can_be_read_not_written(tmp_path, finished_store):
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(finished_store, folder / "r.duckdb")
    db = str(folder / "r.duckdb")
    status = _readonly(folder, ["bench", "status", "--store", db])
    assert status.returncode == 0, status.stderr
    assert "1/1" in status.stdout
    report = _readonly(folder, ["report", "--store", db, "--out", str(tmp_path / "rep")])
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "report.html").exists()
    export = _readonly(folder, ["bench", "export", "--store", db, "--out", str(tmp_path / "x")])
    assert export.returncode == 0, export.stderr
    g = tmp_path / "g.yaml"
    g.write_text(TINY_YAML)
    run = _readonly(folder, ["bench", "run", "-c", str(g), "--store", db])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "expected a writable directory" in line and str(folder) in line
    assert sorted(os.listdir(folder)) == ["r.duckdb"]  # nothing written beside it
