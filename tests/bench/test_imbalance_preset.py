"""The ``imbalance`` preset and what it needs: per-dataset corruptions, loss configs that
refer to the training labels, and selection (and early stopping) by a validation metric
other than accuracy."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from losslab.bench.cell import build_split, run_cell
from losslab.bench.cli import main
from losslab.bench.grid import GridError, GridSpec, check_grid, grid_from_file, preset
from losslab.bench.loss_config import resolve_loss_config
from losslab.bench.plan import Plan, score
from losslab.bench.protocol import get_protocol
from losslab.data.corrupt import parse_corruption

LONG_TAIL = [
    "long_tail:10",
    "long_tail:100",
    "long_tail:10+uniform:0.3",
    "long_tail:100+uniform:0.3",
]


def test_preset_contents_and_size():
    grid = preset("imbalance")
    assert grid.select_metric == "balanced_acc"
    assert grid.seeds == [0, 1, 2]
    assert grid.corruptions_for("letter") == grid.corruptions_for("fashion_mnist") == LONG_TAIL
    assert grid.corruptions_for("shuttle") == ["clean", "uniform:0.3"]
    assert check_grid(grid, check_data=False) == []
    plan = Plan.of(grid)
    per_pair = sum(len(grid.configs(loss)) for loss in grid.losses) * len(grid.lrs)
    pairs = 2 + 4 + 4
    assert plan.counts["tuning"] == pairs * per_pair
    assert plan.counts["selected"] == pairs * len(grid.losses) * 2
    assert {g.id[:2] for g in plan.groups} == {
        ("shuttle", "clean"),
        ("shuttle", "uniform:0.3"),
        *((d, c) for d in ("letter", "fashion_mnist") for c in LONG_TAIL),
    }
    # the losses that need the training distribution get it
    assert grid.configs("balanced_softmax") == [{"class_counts": "train_counts"}]
    assert grid.configs("logit_adjusted") == [{"priors": "train_priors", "tau": 1.0}]
    for cell in plan.tuning:
        assert cell.train["select_metric"] == "balanced_acc"


def test_default_options_keep_keys_and_grid_ids():
    spec = dict(datasets=["digits"], corruptions=["clean"], losses=["ce"], seeds=[0], lrs=[1e-2])
    plain = GridSpec(**spec)
    explicit = GridSpec(**spec, select_metric="acc", diagnostics=False, dataset_corruptions={})
    assert plain.grid_id == explicit.grid_id
    assert [c.key for c in Plan.of(plain).tuning + Plan.of(plain).fixed] == [
        c.key for c in Plan.of(explicit).tuning + Plan.of(explicit).fixed
    ]
    cell = Plan.of(plain).fixed[0]
    assert "select_metric" not in cell.train and "diagnostics" not in cell.train
    other = GridSpec(**spec, select_metric="balanced_acc")
    assert Plan.of(other).fixed[0].key != cell.key
    assert other.grid_id != plain.grid_id


def test_select_metric_survives_another_protocol():
    grid = preset("imbalance", protocol="ldr-faithful")
    assert grid.select_metric == "balanced_acc"
    # the protocol reads each part of a composed corruption
    spec = parse_corruption("long_tail:100+uniform:0.3").map_kinds(
        get_protocol("ldr-faithful").noise_kind
    )
    assert str(spec) == "long_tail:100+uniform_redraw:0.3"


def test_score_and_selection_use_the_grid_metric():
    # acc and balanced accuracy disagree: config a wins on acc, b on balanced accuracy
    a = {"val_acc": 0.9, "val_balanced_acc": 0.5, "val_nll": 1.0}
    b = {"val_acc": 0.8, "val_balanced_acc": 0.7, "val_nll": 1.0}
    assert score(a) > score(b)
    assert score(b, "balanced_acc") > score(a, "balanced_acc")
    # rows without the column fall back to their stored validation metrics
    c = {"val_nll": 1.0, "metrics": {"val": {"worst_recall": 0.4}}}
    assert score(c, "worst_recall")[1] == 0.4
    grid = GridSpec(
        datasets=["digits"],
        corruptions=["clean"],
        losses=["gce"],
        loss_grids={"gce": [{"q": 0.3}, {"q": 0.7}]},
        seeds=[0],
        lrs=[1e-2],
        select_metric="balanced_acc",
    )
    plan = Plan.of(grid)
    rows = dict(zip([c.key for c in plan.tuning], [a, b], strict=True))
    assert plan.select(rows)[("digits", "clean", "gce")] == ({"q": 0.7}, 1e-2)


def test_train_statistics_reach_the_loss():
    grid = GridSpec(
        datasets=["digits"],
        corruptions=["long_tail:10+uniform:0.2"],
        losses=["balanced_softmax"],
        loss_grids={"balanced_softmax": [{"class_counts": "train_counts"}]},
        seeds=[0],
        lrs=[1e-2],
        model="mlp",
        train={"epochs": 2, "batch_size": 128, "patience": None},
        select_metric="balanced_acc",
    )
    cell = Plan.of(grid).fixed[0]
    data, _ = build_split(cell)
    clean = torch.bincount(data.y_train_clean, minlength=10)
    assert clean[0] / clean[-1] > 7  # long-tailed before the noise, as asked
    # the loss gets the counts of the labels it trains on: the noisy ones
    counts = torch.bincount(data.y_train, minlength=10).float()
    cfg = resolve_loss_config(cell.loss_config, data.y_train, data.num_classes)
    torch.testing.assert_close(cfg["class_counts"], counts)
    row = run_cell(cell)
    plain = run_cell(grid.cell(*cell_id(cell), {}, 1e-2, 0))
    # with counts the loss is not plain cross-entropy: the trajectories differ
    assert row["curves"]["train_loss"] != plain["curves"]["train_loss"]
    assert math.isfinite(row["test_worst_recall"])
    assert 0 <= row["test_worst_recall"] <= row["test_balanced_acc"] <= 1


def cell_id(cell):
    return cell.dataset, cell.corruption, cell.loss


def test_placeholders_and_missing_classes():
    cfg = resolve_loss_config({"class_counts": "train_counts", "beta": 0.9})
    torch.testing.assert_close(cfg["class_counts"], torch.ones(2))
    # a class without training rows counts as one (finite logs)
    cfg = resolve_loss_config({"priors": "train_priors"}, torch.tensor([0, 0, 2]), 4)
    torch.testing.assert_close(cfg["priors"], torch.tensor([2.0, 1.0, 1.0, 1.0]) / 5)
    assert resolve_loss_config({"q": 0.7}, torch.tensor([0]), 3) == {"q": 0.7}


def test_early_stopping_follows_the_select_metric():
    spec = dict(
        datasets=["digits"],
        corruptions=["long_tail:20+uniform:0.5"],
        losses=["ce"],
        lrs=[0.1],
        model="mlp",
        train={"epochs": 8, "batch_size": 128, "patience": 8},
    )
    distinct = None
    # Which epoch each metric peaks at depends on the exact trajectory (float rounding
    # included): the first seed whose three metrics peak at different epochs shows that
    # each choice is the metric's own.
    for seed in (0, 1, 2):
        best = {}
        for metric in ("acc", "macro_f1", "worst_recall"):
            cell = Plan.of(GridSpec(**spec, seeds=[seed], select_metric=metric)).fixed[0]
            row = run_cell(cell)
            curve = row["curves"][f"val_{metric}"]
            assert row["epochs_run"] == 8
            assert row["best_epoch"] == curve.index(max(curve)), metric
            assert row["metrics"]["val"][metric] == max(curve)
            best[metric] = row["best_epoch"]
        if len(set(best.values())) == 3:
            distinct = (seed, best)
            break
    assert distinct is not None, "no seed with three different best epochs"
    seed, best = distinct
    # patience counts epochs without improvement of the same metric
    patient = {**spec, "seeds": [seed], "train": {**spec["train"], "patience": 2}}
    short = run_cell(Plan.of(GridSpec(**patient, select_metric="worst_recall")).fixed[0])
    assert short["epochs_run"] == best["worst_recall"] + 3


def test_grid_file_keys_and_errors(tmp_path):
    path = tmp_path / "g.yaml"
    doc = {
        "datasets": ["digits", "vowel"],
        "corruptions": ["long_tail:10"],
        "dataset_corruptions": {"vowel": ["clean"]},
        "losses": ["ce"],
        "seeds": 1,
        "select_metric": "macro_f1",
        "diagnostics": True,
    }
    path.write_text(yaml.safe_dump(doc))
    grid = grid_from_file(path)
    assert grid.select_metric == "macro_f1" and grid.diagnostics is True
    assert [g.id[:2] for g in Plan.of(grid).groups] == [
        ("digits", "long_tail:10"),
        ("vowel", "clean"),
    ]
    assert Plan.of(grid).fixed[0].train["diagnostics"] is True
    bad = {
        **doc,
        "select_metric": "bacc",
        "diagnostics": "yes",
        "dataset_corruptions": {"mnist": ["clean"], "vowel": ["uniform:3"]},
        "train": {"select_metric": "acc"},
    }
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(GridError) as err:
        grid_from_file(path)
    lines = err.value.problems
    expected = [
        "select_metric expected one of ['acc', 'balanced_acc', 'macro_f1', 'worst_recall'], "
        "got 'bacc' (str)",
        "diagnostics expected true or false, got 'yes' (str)",
        "dataset_corruptions.mnist expected a dataset of the grid ['digits', 'vowel'], got 'mnist'",
        "dataset_corruptions.vowel expected 'clean' or 'KIND:RATE', got 'uniform:3'",
        "train.select_metric expected no value (use select_metric), got 'acc'",
    ]
    for text in expected:
        assert any(line.startswith(f"{path}: {text}") for line in lines), text


def test_cli_select_metric_and_dry_run():
    runner = CliRunner()
    args = ["bench", "run", "-d", "digits", "--corruption", "long_tail:10+uniform:0.2"]
    args += ["-l", "ce", "--dry-run"]
    res = runner.invoke(main, [*args, "--select-metric", "worst_recall", "--diagnostics"])
    assert res.exit_code == 0, res.output
    assert "1 datasets x 1 corruptions x 1 losses x 1 seeds, 1 cells" in " ".join(
        res.output.split()
    )
    res = runner.invoke(main, [*args, "--select-metric", "bacc"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "bench run: select_metric expected one of ['acc', 'balanced_acc', 'macro_f1', "
        "'worst_recall'], got 'bacc' (str)"
    ]


def test_cli_counts_dataset_corruption_pairs(tmp_path):
    path = tmp_path / "g.yaml"
    doc = {
        "datasets": ["digits", "synthetic"],
        "corruptions": ["long_tail:10", "long_tail:10+uniform:0.3"],
        "dataset_corruptions": {"synthetic": ["clean"]},
        "losses": {"ce": None, "balanced_softmax": {"class_counts": "train_counts"}},
        "seeds": 2,
    }
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["bench", "run", "-c", str(path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "3 (dataset, corruption) pairs x 2 losses x 2 seeds, 12 cells" in " ".join(
        res.output.split()
    )
