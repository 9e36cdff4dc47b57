"""`--device`: the trainer moves model, data and loss state to the device; an unavailable
device is one line; the device is no part of a cell's key."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import losslab
from losslab.bench.cell import build_split, run_cell
from losslab.bench.grid import GridSpec
from losslab.bench.models import build_model
from losslab.bench.protocol import TrainConfig
from losslab.bench.trainer import check_device, train

GRID = GridSpec(
    datasets=["digits"],
    corruptions=["uniform:0.3"],
    losses=["aldr_kl"],
    seeds=[0],
    model="mlp",
    train={"epochs": 2, "batch_size": 256, "patience": None},
)
CELL = GRID.cell("digits", "uniform:0.3", "aldr_kl", {}, 0.01, 0)

ACCELERATORS = [
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not torch.backends.mps.is_available(), reason="needs an Apple MPS device"
        ),
    ),
]


def test_check_device() -> None:
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(
        ValueError, match=r"^where: arg expected cpu, cuda, cuda:N or mps, got 'tpu'$"
    ):
        check_device("tpu", where="where", arg="arg")
    with pytest.raises(ValueError, match="expected cpu, cuda, cuda:N or mps, got 'meta'"):
        check_device("meta")
    with pytest.raises(
        TypeError, match="device expected cpu, cuda, cuda:N or mps, got 0 \\(int\\)"
    ):
        check_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device expected an available device, got 'cuda:1'"):
            check_device("cuda:1")
    with pytest.raises(ValueError, match="TrainConfig: device expected a device name"):
        TrainConfig(device=3)  # type: ignore[arg-type]


def test_device_is_recorded_not_keyed() -> None:
    row = run_cell(CELL, device="cpu")
    assert row["key"] == CELL.key and row["versions"]["device"] == "cpu"
    assert "device" not in CELL.to_dict()["train"]


@pytest.mark.parametrize("device", ACCELERATORS)
def test_cell_on_an_accelerator_matches_the_cpu(device: str) -> None:
    cpu, acc = run_cell(CELL, device="cpu"), run_cell(CELL, device=device)
    assert acc["key"] == cpu["key"] and acc["versions"]["device"].startswith(device)
    # float reduction order differs on the device: same result up to a few test rows
    assert abs(acc["test_acc"] - cpu["test_acc"]) < 0.05
    assert acc["test_nll"] == pytest.approx(cpu["test_nll"], rel=0.1)


@pytest.mark.parametrize("device", ACCELERATORS)
def test_trainer_moves_model_data_and_loss_state(device: str) -> None:
    data, info = build_split(CELL)
    torch.manual_seed(0)
    model = build_model("mlp", info["input_shape"], data.num_classes)
    loss_fn = losslab.loss_info("aldr_kl").build(num_samples=len(data.X_train))
    cfg = dataclasses.replace(CELL.train_config(), device=device)
    result = train(model, loss_fn, data, cfg)
    assert result.final is not None and result.final["test"]["acc"] > 0.5
    assert next(model.parameters()).device.type == device
    assert all(b.device.type == device for b in loss_fn.buffers())
