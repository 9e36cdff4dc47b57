import numpy as np
import pytest
import torch

from losslab.bench.cell import build_split, run_cell
from losslab.bench.grid import GridSpec
from losslab.bench.models import SmallCNN, build_model, resolve_model_kind
from losslab.bench.plan import Plan
from losslab.bench.trainer import TrainConfig, _objective


def _cell(loss="ce", seed=0, lr=1e-2, **train):
    g = GridSpec(datasets=["digits"], corruptions=["uniform:0.3"], losses=[loss], seeds=[seed],
                 lrs=[lr], model="mlp", loss_grids={loss: [{}]},
                 train={"epochs": 3, "batch_size": 256, "patience": None, **train})  # fmt: skip
    return Plan.of(g).fixed[0]


def test_same_seed_identical_metrics():
    a, b = run_cell(_cell()), run_cell(_cell())
    assert a["metrics"] == b["metrics"] and a["curves"] == b["curves"]
    c = run_cell(_cell(seed=1))
    assert c["curves"]["train_loss"] != a["curves"]["train_loss"]


def test_row_contents():
    r = run_cell(_cell())
    for split in ("val", "test"):
        assert {"top1", "top5", "balanced_acc", "macro_f1", "nll", "ece"} <= set(
            r["metrics"][split]
        )
        assert len(r["curves"][f"{split}_acc"]) == 3
        assert len(r["curves"][f"{split}_ece"]) == 3
    assert 0 <= r["train_clean_acc"] <= 1 and 0.15 < r["actual_noise_rate"] < 0.45
    assert sum(r["reliability"]["count"]) == r["config"]["data"]["n_test"]
    assert r["versions"]["torch"] == torch.__version__


def test_stateful_loss_gets_index():
    r = run_cell(_cell("aldr_kl"))
    assert np.isfinite(r["test_acc"])


def test_one_hook_passes_index_to_stateful_losses_only():
    import losslab

    calls = []

    class Recorder(torch.nn.Module):
        stateful = True

        def forward(self, logits, y, **kw):
            calls.append(sorted(kw))
            return logits.sum()

    z, y, idx = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.arange(2)
    _objective(Recorder())(z, y, idx)
    Recorder.stateful = False
    _objective(Recorder())(z, y, idx)
    assert calls == [["index"], []]
    aldr = losslab.loss_info("aldr_kl").build(num_samples=4)
    assert aldr.stateful and not losslab.loss_info("ce").build(num_samples=4).stateful


def test_split_is_noisy_and_disjoint():
    data, info = build_split(_cell())
    assert len(data.X_train) + len(data.X_val) == info["n_train"] + info["n_val"]
    assert (data.y_train != data.y_train_clean).float().mean() > 0.1
    # standardised with training statistics
    assert data.X_train.mean().abs() < 1e-3


def test_early_stopping_stops():
    r = run_cell(_cell(epochs=30, patience=1, lr=5.0))
    assert r["epochs_run"] < 30


def test_bad_train_config():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_divergence_is_a_finished_row_with_its_epoch():
    # lr 1e8 with SGD: the logits turn non-finite within the first epoch, before the
    # loss's own input check could raise on them
    r = run_cell(_cell(optimizer="sgd", lr=1e8, epochs=3))
    assert r["diverged"] is True and r["diverged_epoch"] == 0
    assert r["test_acc"] is None and r["metrics"] is None and r["best_epoch"] is None
    assert r["epochs_run"] == 1


def test_divergence_reports_the_best_finite_epoch():
    from losslab.bench.trainer import train

    data, _ = build_split(_cell())
    torch.manual_seed(0)
    model = build_model("mlp", (64,), 10)

    class BlowsUpLater(torch.nn.Module):
        stateful = False

        def __init__(self):
            super().__init__()
            self.steps = 0

        def forward(self, logits, y):
            self.steps += 1
            loss = torch.nn.functional.cross_entropy(logits, y)
            return loss * float("nan") if self.steps > 8 else loss

    cfg = TrainConfig(epochs=5, batch_size=256, lr=1e-2, patience=None)
    res = train(model, BlowsUpLater(), data, cfg)
    # 5 batches per epoch: epoch 0 and 1 finish, epoch 1's 4th batch is non-finite
    assert res.diverged and res.diverged_epoch == 1 and res.epochs_run == 2
    assert res.best_epoch == 0 and np.isfinite(res.final["test"]["acc"])


def test_models():
    assert resolve_model_kind("auto", "image", (28, 28)) == "cnn"
    assert resolve_model_kind("auto", "image", (8, 8)) == "mlp"
    m = build_model("cnn", (28, 28), 10, modality="image")
    assert isinstance(m, SmallCNN)
    assert m(torch.zeros(3, 784)).shape == (3, 10)
    ldr = build_model("ldr_mlp", (16,), 26)
    assert ldr.net[0].out_features == 16 and isinstance(ldr.net[1], torch.nn.Tanh)
    with pytest.raises(ValueError, match="model"):
        build_model("vit", (4,), 2)


def test_ldr_faithful_cell():
    g = GridSpec(datasets=["digits"], corruptions=["uniform:0.5"], losses=["ce"], seeds=[0],
                 loss_grids={"ce": [{}]}, lrs=[0.01], protocol="ldr-faithful",
                 train={"epochs": 3})  # fmt: skip
    (cell,) = Plan.of(g).fixed
    assert cell.model == "ldr_mlp" and not cell.standardize
    data, info = build_split(cell)
    # min-max scaled to [-1, 1] with training statistics
    assert data.X_train.min() >= -1 - 1e-6 and data.X_train.max() <= 1 + 1e-6
    # LDR uniform noise redraws from all K classes: flip rate about 0.5 * (K - 1) / K
    assert 0.38 < info["actual_noise_rate"] < 0.52
    r = run_cell(cell)
    assert r["model"] == "ldr_mlp" and r["epochs_run"] == 3
    assert r["curves"]["lr"] == [0.01] * 3
