"""The command line answers help without loading torch, pandas, duckdb or matplotlib;
flags show no value placeholder; a usage error is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from losslab.cli import app

runner = CliRunner()
HEAVY = ("torch", "numpy", "pandas", "duckdb", "matplotlib", "sklearn")

# runs the console script's entry with argv, then reports which heavy modules it loaded
PROBE = (
    "import sys, atexit\n"
    "atexit.register(lambda: print('LOADED', [m for m in {heavy} if m in sys.modules]))\n"
    "sys.argv = ['losslab', *sys.argv[1:]]\n"
    "from losslab._entry import main\n"
    "main()\n"
)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["bench", "--help"], ["data", "--help"], ["bench", "run", "--help"], ["bench"]],
    ids=" ".join,
)
def test_help_loads_no_heavy_module(argv: list[str]) -> None:
    code = PROBE.format(heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Usage" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []", proc.stdout[-300:]


def _all_commands() -> list[list[str]]:
    out = [[]]
    top = runner.invoke(app, ["--help"], terminal_width=200).output
    for name in ("list", "info", "data", "bench", "report", "calibrate", "diagnose"):
        assert f" {name} " in top, name
        out.append([name])
    out += [["data", c] for c in ("list", "fetch", "register")]
    out += [["bench", c] for c in ("run", "status", "export")]
    return out


@pytest.mark.parametrize("argv", _all_commands(), ids=lambda a: " ".join(a) or "losslab")
def test_flags_show_no_value_placeholder(argv: list[str]) -> None:
    res = runner.invoke(app, [*argv, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    flag_lines = [line for line in res.output.splitlines() if "--help" in line]
    assert flag_lines and all("<" not in line for line in flag_lines)


def one_line(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert " expected " in lines[0] and ", got " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["bench", "run", "--losse", "ce"], ["losslab bench run: option", "'--losse'", "'--loss'"]),
        (
            [
                "bench",
                "run",
                "-d",
                "digits",
                "--corruption",
                "clean",
                "-l",
                "ce",
                "--dry-run",
                "true",
            ],
            ["losslab bench run: arguments", "extra 'true'", "--dry-run take none"],
        ),
        (["bench", "run", "--epochs", "x"], ["--epochs expected an integer, got 'x'"]),
        (["bench", "run", "--lr=fast"], ["--lr expected", "got 'fast'"]),
        (["bench", "run", "--seeds"], ["--seeds expected a value after it, got none"]),
        (["info"], ["losslab info: NAME expected a value, got none"]),
        (["bench", "statu"], ["losslab bench: command", "'status'", "got 'statu'"]),
        (["data", "fetch"], ["losslab data fetch: NAME expected a value"]),
        (["data", "list", "--nope"], ["losslab data list: option", "'--nope'"]),
        (
            ["calibrate", "--bins", "many"],
            ["losslab calibrate: --bins expected an integer, got 'many'"],
        ),
        (["nope"], ["losslab: command expected one of the listed commands", "got 'nope'"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0] != "losslab" else None,
)
def test_usage_errors_are_one_line(argv: list[str], needles: list[str]) -> None:
    res = runner.invoke(app, argv)
    assert "Traceback" not in res.output and "╭" not in res.output
    one_line(res, *needles)


def test_help_names_every_protocol() -> None:
    # bench/cli.py lists them without importing the protocol module
    from losslab.bench.cli import PROTOCOL_NAMES
    from losslab.bench.protocol import DEFAULT_PROTOCOL, PROTOCOLS

    assert list(PROTOCOL_NAMES) == list(PROTOCOLS) and PROTOCOL_NAMES[0] == DEFAULT_PROTOCOL
