"""`losslab calibrate` and `losslab diagnose`: tables, files written beside the input,
and bad input as one line on stderr with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("matplotlib")

from losslab.cli import app
from losslab.diagnostics import simplex_etf

ENV = {"COLUMNS": "200"}


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(4, (n,), generator=g)
    z = 3 * (1.5 * torch.nn.functional.one_hot(y, 4) + torch.randn(n, 4, generator=g))
    return z.numpy(), y.numpy()


@pytest.fixture
def files(tmp_path):
    z, y = _split(600, 0)
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    z, y = _split(1500, 1)
    np.savez(tmp_path / "test.npz", logits=z.astype(np.float32), labels=y)
    g = torch.Generator().manual_seed(2)
    means = simplex_etf(4, 6, generator=g).T
    labels = torch.arange(4).repeat(30)
    feats = means[labels] + 0.2 * torch.randn(120, 6, generator=g, dtype=torch.float64)
    np.savez(
        tmp_path / "f.npz", features=feats.numpy(), labels=labels.numpy(), weight=means.numpy()
    )
    np.savez(tmp_path / "nofc.npz", features=feats.numpy(), labels=labels.numpy())
    (tmp_path / "notes.txt").write_text("not an archive")
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)), env=ENV)


def test_help_lists_both_commands():
    out = run("--help")
    assert out.exit_code == 0
    assert "calibrate" in out.output and "diagnose" in out.output


def test_calibrate_val_and_apply(files):
    out = run("calibrate", "--val", files / "val.npz", "--apply", files / "test.npz",
              "--method", "temperature", "--method", "dirichlet", "--method", "ca")  # fmt: skip
    assert out.exit_code == 0, out.output
    for name in ("uncalibrated", "temperature", "dirichlet", "ca", "smooth_ece"):
        assert name in out.stdout
    record = json.loads((files / "test.calibration.json").read_text())
    for name in ("temperature", "dirichlet"):
        assert record[name]["val_nll"] <= record["uncalibrated"]["val_nll"]
    assert record["temperature"]["ece"] < record["uncalibrated"]["ece"]
    assert record["temperature"]["temperature"] > 1
    with np.load(files / "test.calibrated.npz") as data:
        assert set(data.files) == {"labels", "logits_temperature", "logits_dirichlet", "logits_ca"}
        assert data["logits_temperature"].shape == (1500, 4)
    assert (files / "test.reliability.png").stat().st_size > 1000


def test_calibrate_in_sample_with_out_folder_and_json(files):
    out = run("calibrate", "--val", files / "val.npz", "--out", files / "o", "--json", "--bins", 10)
    assert out.exit_code == 0, out.output
    assert "validation (in-sample)" in out.stdout
    record = json.loads((files / "o" / "val.calibration.json").read_text())
    assert json.loads(out.stdout[out.stdout.index('{\n  "uncalibrated"') :]) == record
    assert (files / "o" / "val.reliability.png").exists()


def test_diagnose_with_and_without_classifier(files):
    out = run("diagnose", "--features", files / "f.npz")
    assert out.exit_code == 0, out.output
    for name in ("nc1", "nc3", "nc4", "etf_distance_weights"):
        assert f" {name} " in out.stdout
    assert (files / "f.collapse.png").stat().st_size > 1000
    out = run("diagnose", "--features", files / "nofc.npz", "--json")
    assert out.exit_code == 0, out.output
    assert " nc3 " not in out.stdout
    values = json.loads(out.stdout[out.stdout.index('{\n  "nc1"') :])
    assert values["nc4"] is None and values["nc1"] > 0


BAD = [
    (["calibrate"], "--val expected a .npz file, got nothing"),
    (["calibrate", "--val", "{d}/missing.npz"], "--val expected an existing .npz file"),
    (["calibrate", "--val", "{d}/notes.txt"], "--val expected a .npz file (a zip of arrays)"),
    (["calibrate", "--val", "{d}/f.npz"], "--val expected arrays ['logits', 'labels']"),
    (["calibrate", "--val", "{d}/val.npz", "--method", "platt"], "--method expected some of"),
    (["calibrate", "--val", "{d}/val.npz", "--bins", "0"], "--bins expected a positive int"),
    (["calibrate", "--val", "{d}/val.npz", "--bins", "x"], "--bins expected an integer, got 'x'"),
    (["calibrate", "--val"], "--val expected a value after it, got none"),
    (["calibrate", "--val", "{d}/val.npz", "--apply", "{d}/f.npz"], "--apply expected arrays"),
    (
        ["calibrate", "--val", "{d}/bad_labels.npz"],
        "--val: target expected class indices in [0, 3]",
    ),
    (["diagnose"], "--features expected a .npz file, got nothing"),
    (["diagnose", "--features", "{d}/val.npz"], "--features expected arrays"),
    (
        ["diagnose", "--features", "{d}/f.npz", "--nope"],
        "option expected one of the command's options (see --help), got '--nope'",
    ),
    (["diagnose", "--features", "{d}/one_class.npz"], "labels expected at least 2 classes"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_on_stderr_and_exit_2(files, args, message):
    z, y = _split(50, 3)
    np.savez(files / "bad_labels.npz", logits=z, labels=y + 7)
    np.savez(files / "one_class.npz", features=z, labels=np.zeros(50, dtype=int))
    out = run(*(a.format(d=files) for a in args))
    assert out.exit_code == 2
    command = args[0]
    assert out.stderr.startswith(f"losslab {command}: ")
    assert message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.output
