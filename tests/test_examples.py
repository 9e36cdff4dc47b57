"""The integration examples (examples/integrations/) train for a few steps and lower the
loss: each script runs as a user would run it, in its own process."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "integrations"
LINE = re.compile(r"loss before (\S+) after (\S+)$", re.M)

# script, its arguments, the packages it needs beyond the core dependencies
CASES = [
    ("plain_loop.py", ["--steps", "40"], []),
    ("plain_loop.py", ["--steps", "40", "--loss", "aldr_kl"], []),
    ("lightning_module.py", ["--steps", "30"], ["lightning"]),
    ("hf_trainer.py", ["--steps", "30"], ["transformers", "accelerate"]),
    ("compiled_training.py", ["--steps", "20"], []),
    ("ddp_gloo.py", ["--steps", "20"], []),
    ("lm_head.py", ["--steps", "30"], []),
]


def _missing(packages: list[str]) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "needs"), CASES, ids=[f"{c[0]}{' '.join(c[1][2:])}" for c in CASES]
)
def test_example_trains(script: str, args: list[str], needs: list[str]) -> None:
    missing = _missing(needs)
    if missing:
        pytest.skip(
            f"{script} needs {', '.join(missing)}: pip install -e '.[integrations]' "
            "(make test-all installs it)"
        )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = LINE.search(proc.stdout)
    assert m, f"no 'loss before ... after ...' line in:\n{proc.stdout[-3000:]}"
    before, after = float(m.group(1)), float(m.group(2))
    assert math.isfinite(before) and math.isfinite(after), (before, after)
    assert after < before, f"{script}: the loss did not decrease ({before} -> {after})"


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == {c[0] for c in CASES}


@pytest.mark.slow
def test_noisy_digits_example_runs() -> None:
    """The README's runnable example (IndexedDataset feeds ALDR-KL its indices)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "noisy_digits.py"), "--epochs", "2",
         "--seeds", "1"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for loss in ("ce", "gce", "aldr_kl"):
        assert re.search(rf"{loss}\s+\S+\s+(\d+\.\d) \+- (\d+\.\d)", proc.stdout), proc.stdout
