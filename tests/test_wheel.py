"""The built wheel installs into a fresh virtual environment with only its declared
dependencies, and its command line and losses work there."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, ROOT)
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("losslab-*.whl"))
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py, exe = env / "bin" / "python", env / "bin" / "losslab"
    # The CPU build of torch first, so that the wheel's torch>=2.1 is already satisfied.
    torch = _run(py, "-m", "pip", "install", "-q", "torch==2.13.0")
    assert torch.returncode == 0, torch.stderr
    core = _run(py, "-m", "pip", "install", "-q", wheel)
    assert core.returncode == 0, core.stderr
    # Without the cli extra the command says what to install, in one line, exit code 2.
    bare = _run(exe, "list")
    assert bare.returncode == 2 and "pip install 'losslab[cli]'" in bare.stderr
    assert bare.stderr.count("\n") == 1
    loss = _run(
        py,
        "-c",
        "import torch, losslab; print(float(losslab.functional.ce(torch.zeros(2, 3), "
        "torch.tensor([0, 1]))))",
        cwd=tmp_path,
    )
    assert loss.returncode == 0 and abs(float(loss.stdout) - 1.0986) < 1e-3, loss.stderr
    cli = _run(py, "-m", "pip", "install", "-q", f"{wheel}[cli]")
    assert cli.returncode == 0, cli.stderr
    listed = _run(exe, "list", cwd=tmp_path)
    assert listed.returncode == 0 and "ldr_kl" in listed.stdout, listed.stderr
