"""Truncated GCE as published: the bench trainer refreshes (prunes) its per-example
weights before the due epochs, from eval-mode predictions of the whole training set."""

from __future__ import annotations

import torch

import losslab
from losslab.bench.cell import build_split, run_cell
from losslab.bench.grid import GridSpec
from losslab.bench.models import build_model
from losslab.bench.trainer import train

TGCE = {"q": 0.7, "k": 0.5, "prune_start": 2, "prune_every": 2}


def _cell(corruption: str = "uniform:0.3", epochs: int = 6):
    grid = GridSpec(
        ["digits"],
        [corruption],
        ["tgce"],
        [0],
        lrs=[0.01],
        model="mlp",
        train={"epochs": epochs, "batch_size": 128, "patience": None},
    )
    return grid.cell("digits", corruption, "tgce", TGCE, 0.01, 0)


def test_trainer_refreshes_before_due_epochs_with_eval_predictions_of_all_rows():
    cell = _cell()
    data, info = build_split(cell)
    torch.manual_seed(0)
    model = build_model("mlp", info["input_shape"], data.num_classes, modality="image")
    loss_fn = losslab.loss_info("tgce").build(num_samples=len(data.X_train), **TGCE)
    calls = []
    refresh = loss_fn.refresh

    def spy(logits, target, *, index):
        calls.append(
            {
                "training": model.training,
                "grad": logits.requires_grad,
                "index": index.tolist(),
                "target": torch.equal(target, data.y_train),
                "before": loss_fn.sample_keep.clone(),
                "logits": logits.clone(),
            }
        )
        refresh(logits, target, index=index)

    loss_fn.refresh = spy
    result = train(model, loss_fn, data, cell.train_config())
    assert result.curves["refresh_epoch"] == [2, 4]
    assert len(calls) == 2
    for c in calls:
        assert not c["training"] and not c["grad"] and c["target"]
        assert c["index"] == list(range(len(data.X_train)))
    # the first prune starts from all-kept; the weights it leaves are p_y > k at that time
    assert bool((calls[0]["before"] == 1).all())
    p_y = torch.softmax(calls[1]["logits"], 1).gather(1, data.y_train[:, None]).squeeze(1)
    assert torch.equal(loss_fn.sample_keep, (p_y > 0.5).float())
    kept = result.curves["refresh_state_mean"]
    assert kept[1] == float((p_y > 0.5).float().mean())
    # 30% of labels are flipped: the prune drops examples but keeps most
    assert 0.4 < kept[0] < 1.0 and 0.4 < kept[1] < 1.0


def test_tgce_cell_trains_above_chance_and_records_its_prunes():
    row = run_cell(_cell())
    assert row["curves"]["refresh_epoch"] == [2, 4]
    assert not row["diverged"]
    # 10 classes: chance is 0.1
    assert row["test_acc"] > 0.6, row["test_acc"]


def test_losses_without_a_scheduled_refresh_are_never_refreshed():
    grid = GridSpec(
        ["digits"], ["clean"], ["aldr_kl"], [0], lrs=[0.01], model="mlp", train={"epochs": 2}
    )
    row = run_cell(grid.cell("digits", "clean", "aldr_kl", {}, 0.01, 0))
    assert "refresh_epoch" not in row["curves"]


def test_ldr_preset_trains_the_published_tgce_and_prunes_within_its_epochs():
    grid = losslab.bench.preset("ldr")
    assert "tgce" in grid.losses and "tgce_stateless" not in grid.losses
    epochs = grid.train["epochs"]
    spec = losslab.loss_info("tgce")
    for cfg in grid.configs("tgce"):
        mod = spec.build(num_samples=4, **cfg)
        assert [e for e in range(epochs) if mod.refresh_due(e)], cfg
