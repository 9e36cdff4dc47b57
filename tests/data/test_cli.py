"""``losslab data list`` / ``fetch`` (the typer sub-app)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from losslab.data.cli import app

runner = CliRunner()


def test_list_shows_every_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["list", "--root", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("digits", "glyphs", "letter", "vowel", "fashion_mnist", "brown_genre"):
        assert name in result.output


def test_fetch_ci_safe(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fetch", "digits", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1347 train / 450 test" in result.output
    assert (tmp_path / "digits" / "meta.json").is_file()


def test_fetch_unknown_fails_with_names(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fetch", "nope", "--root", str(tmp_path)])
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert "name expected one of" in flat and "got 'nope'" in flat and "digits" in flat
