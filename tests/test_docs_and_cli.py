"""The generated loss table is current, and the CLI shows every registered loss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

import losslab
from losslab.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_loss_table_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_loss_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_type_stubs_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_stubs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_list_shows_every_loss(monkeypatch):
    # The CLI's rich console reads COLUMNS when losslab.cli is imported, so the env below
    # alone does not widen it; without a terminal (pytest-xdist workers) it is 80 columns
    # wide and shortens long names such as interpolated_aggregate_loss.
    monkeypatch.setattr("losslab.cli.console", Console(width=200))
    out = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for name in losslab.list_losses():
        assert f" {name} " in out.output


def test_cli_info_shows_formula_defaults_properties_reference():
    out = CliRunner().invoke(app, ["info", "ldr_kl"], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    for text in (
        "formula:",
        "temperature=10.0",
        "margin=0.1",
        "classification_calibrated",
        "arXiv:2112.14869",
    ):
        assert text in out.output


def test_cli_info_unknown_loss_fails_clearly():
    out = CliRunner().invoke(app, ["info", "nope"])
    assert out.exit_code != 0
    assert "name expected one of the registered losses" in out.output and "'nope'" in out.output


def test_cli_list_filters_by_property():
    out = CliRunner().invoke(app, ["list", "--property", "symmetric"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert " mae " in out.output and " ce " not in out.output


def test_cli_list_shows_conditions_of_claims():
    out = CliRunner().invoke(app, ["list", "--family", "ldr"], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    assert "convex[normalize=none]" in out.output
    assert "scale_invariant[normalize=abs_mean]" in out.output


def test_cli_info_prints_readable_math():
    out = CliRunner().invoke(app, ["info", "gce"], env={"COLUMNS": "300"})
    assert out.exit_code == 0
    formula = next(line for line in out.output.splitlines() if "formula:" in line)
    assert "(1 - p_y^q)/q" in formula and "\\" not in formula


def test_cli_bad_filters_are_one_line_and_exit_2():
    out = CliRunner().invoke(app, ["list", "--kind", "nope"])
    assert out.exit_code == 2
    assert out.output.strip().count("\n") == 0
    assert "list_losses: kind expected one of" in out.output


def test_every_formula_renders_as_text():
    from losslab._mathtext import latex_to_text

    for name in losslab.list_losses():
        text = latex_to_text(losslab.loss_info(name).formula)
        opened = text.count("(") + text.count("[")
        assert "\\" not in text and opened == text.count(")") + text.count("]"), (name, text)


def test_cli_help_does_not_import_torch():
    code = (
        "import sys; from losslab.cli import app; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_readme_quick_start_runs():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train accuracy" in proc.stdout
