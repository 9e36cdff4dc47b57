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
