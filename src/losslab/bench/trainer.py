"""Seeded mini-batch trainer with per-epoch validation/test metrics and early stopping.

Everything random (initialisation, batch order) is drawn from generators seeded by
``TrainConfig.seed``, and ``run`` pins torch to one thread, so the same inputs give
bit-identical metrics in any process on the CPU. ``TrainConfig.device`` moves the model,
the data and the loss (with its per-sample state) to a GPU; batch order still comes from
a CPU generator, and metrics are computed on the CPU from the logits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from losslab._module import LossModule
from losslab._validate import describe
from losslab.bench.cell_metrics import neural_collapse_metrics, temperature_scaling_metrics
from losslab.bench.protocol import TrainConfig, problem
from losslab.metrics import classification_metrics, reliability_bins, top_label_confidence

__all__ = ["SplitData", "TrainConfig", "TrainResult", "check_device", "evaluate", "train"]

DEVICE_KINDS = ("cpu", "cuda", "mps")


def check_device(
    device: object, *, where: str = "TrainConfig", arg: str = "device"
) -> torch.device:
    """``device`` as a ``torch.device`` that exists here, or one line naming what is
    missing (ValueError; TypeError for a non-string)."""
    expected = "cpu, cuda, cuda:N or mps"
    if not isinstance(device, (str, torch.device)):
        raise TypeError(problem(where, arg, expected, describe(device)))
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(problem(where, arg, expected, repr(device))) from None
    if dev.type not in DEVICE_KINDS:
        raise ValueError(problem(where, arg, expected, repr(device)))
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            got = f"{str(device)!r} (no CUDA device here; torch {torch.__version__})"
            raise ValueError(problem(where, arg, "an available device", got))
        if dev.index is not None and dev.index >= count:
            got = f"{str(device)!r} ({count} CUDA device{'s' if count > 1 else ''} here)"
            raise ValueError(problem(where, arg, "an available device", got))
    if dev.type == "mps" and not torch.backends.mps.is_available():
        got = f"{str(device)!r} (no MPS device here)"
        raise ValueError(problem(where, arg, "an available device", got))
    return dev


@dataclass
class SplitData:
    """Tensors of one benchmark cell. ``y_train`` and ``y_val`` carry the corruption,
    ``y_train_clean`` the original labels of the same rows, ``y_test`` is clean."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> SplitData:
        """The same tensors on ``device``."""
        moved: dict[str, Any] = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()
        }
        return SplitData(**moved)


@dataclass
class TrainResult:
    """``final``: metrics of the reported weights, ``None`` when training diverged before
    any epoch finished with finite outputs. ``best_epoch``: the reported epoch (0-based),
    ``None`` in that case; ``diverged_epoch``: the epoch in which the loss, the logits or
    the evaluation became non-finite (``None`` if never)."""

    final: dict[str, Any] | None
    curves: dict[str, list[float]]
    best_epoch: int | None
    epochs_run: int
    diverged_epoch: int | None = None
    test_reliability: dict[str, list[float]] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None


@torch.no_grad()
def _logits(model: nn.Module, X: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(X[i : i + chunk]) for i in range(0, len(X), chunk)])


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Classification metrics plus ``ece`` (15 equal-width bins) of ``model`` on (X, y)."""
    z = _logits(model, X).cpu().double().numpy()
    t = y.cpu().numpy()
    if not np.isfinite(z).all():
        nan = float("nan")
        names = ("acc", "balanced_acc", "worst_recall", "macro_f1", "nll", "ece")
        return dict.fromkeys(names, nan)
    out = classification_metrics(z, t)
    conf, correct = top_label_confidence(z, t)
    out["ece"] = reliability_bins(conf, correct, 15).ece
    return out


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # foreach: one fused update per step instead of a Python loop over parameters
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            foreach=True,
        )
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
    )


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=cfg.gamma)
    return None


def _objective(loss_fn: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]:
    """How the trainer calls a loss: stateful losses (per-example state, class attribute
    ``stateful``) also get the dataset row indices of the batch."""
    if getattr(loss_fn, "stateful", False):
        return lambda logits, y, idx: loss_fn(logits, y, index=idx)
    return lambda logits, y, idx: loss_fn(logits, y)


def _refresh_state(
    model: nn.Module,
    loss_fn: nn.Module,
    data: SplitData,
    epoch: int,
    curves: dict[str, list[float]],
) -> None:
    """The one hook of losses whose per-example state is refreshed on a schedule
    (truncated GCE's pruning): before an epoch where ``refresh_due(epoch)`` holds, the
    loss gets the model's logits of the whole training set, computed in eval mode without
    gradient, with the examples' dataset indices. Records the epoch and the mean state."""
    if not isinstance(loss_fn, LossModule) or not loss_fn.refresh_due(epoch):
        return
    n = len(data.X_train)
    index = torch.arange(n, device=data.y_train.device)
    loss_fn.refresh(_logits(model, data.X_train), data.y_train, index=index)
    assert loss_fn.spec.state is not None  # refresh_due holds for stateful losses only
    state = loss_fn.get_buffer(loss_fn.spec.state.name)
    curves.setdefault("refresh_epoch", []).append(epoch)
    curves.setdefault("refresh_state_mean", []).append(float(state.float().mean()))


def train(model: nn.Module, loss_fn: nn.Module, data: SplitData, cfg: TrainConfig) -> TrainResult:
    """Train ``model`` with ``loss_fn`` on ``data`` and evaluate every epoch.

    With ``cfg.patience`` set, training stops once the noisy-validation
    ``cfg.select_metric`` (accuracy by default) has not improved for that many epochs and
    the best-validation weights are restored; otherwise the last epoch's weights are
    reported. A loss with a scheduled state refresh is refreshed before its due epochs.
    Non-finite logits, loss or evaluation outputs end the run as diverged; the best finite
    epoch's weights are then reported (none: ``final is None``).

    The reported weights are measured once more: every split's metrics, temperature
    scaling fitted on the noisy validation split (``final["ts"]``) and, with
    ``cfg.diagnostics``, neural collapse on the training set (``final["diagnostics"]``).
    """
    device = check_device(cfg.device, where="train")
    model.to(device)
    loss_fn.to(device)
    data = data.to(device)
    objective = _objective(loss_fn)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg)
    n = len(data.X_train)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    curves: dict[str, list[float]] = {"train_loss": [], "lr": []}
    best_acc, best_epoch, best_state = -math.inf, -1, None
    diverged_epoch: int | None = None
    epochs_run = 0
    for epoch in range(cfg.epochs):
        _refresh_state(model, loss_fn, data, epoch, curves)
        model.train()
        order = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)
        total, count = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size].to(device)
            if has_bn and len(idx) < 2:
                continue  # batch norm cannot train on a single row
            logits = model(data.X_train[idx])
            # checked here, before the loss's own input check raises on them
            if not bool(torch.isfinite(logits).all()):
                diverged_epoch = epoch
                break
            loss = objective(logits, data.y_train[idx], idx)
            if not torch.isfinite(loss):
                diverged_epoch = epoch
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        curves["lr"].append(opt.param_groups[0]["lr"])
        curves["train_loss"].append(total / max(count, 1) if diverged_epoch is None else math.nan)
        if sched is not None:
            sched.step()
        epochs_run = epoch + 1
        val = evaluate(model, data.X_val, data.y_val)
        test = evaluate(model, data.X_test, data.y_test)
        for split, metrics in (("val", val), ("test", test)):
            for k, v in metrics.items():
                curves.setdefault(f"{split}_{k}", []).append(v)
        if diverged_epoch is None and math.isnan(val["acc"]):
            diverged_epoch = epoch  # the last step of the epoch made the weights non-finite
        if diverged_epoch is not None:
            break
        if val[cfg.select_metric] > best_acc:
            best_acc, best_epoch = val[cfg.select_metric], epoch
            # kept without early stopping too: a later divergence reports this epoch
            best_state = copy.deepcopy(model.state_dict())
        elif cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break
    if cfg.patience is not None or diverged_epoch is not None:
        if best_state is None:
            return TrainResult(None, curves, None, epochs_run, diverged_epoch)
        model.load_state_dict(best_state)
        reported_epoch = best_epoch
    else:
        reported_epoch = epochs_run - 1
    final: dict[str, Any] = {}
    for split, (X, y) in {
        "val": (data.X_val, data.y_val),
        "test": (data.X_test, data.y_test),
        "train_noisy": (data.X_train, data.y_train),
        "train_clean": (data.X_train, data.y_train_clean),
    }.items():
        final[split] = evaluate(model, X, y)
    # metrics are computed on the CPU, whatever the device
    z_val, z_test = _logits(model, data.X_val).cpu(), _logits(model, data.X_test).cpu()
    y_val, y_test = data.y_val.cpu(), data.y_test.cpu()
    reliability: dict[str, list[float]] = {}
    if bool(torch.isfinite(z_test).all()):
        conf, correct = top_label_confidence(z_test.double().numpy(), y_test.numpy())
        reliability = reliability_bins(conf, correct, 15).to_dict()
    if bool(torch.isfinite(z_val).all() and torch.isfinite(z_test).all()):
        final["ts"] = temperature_scaling_metrics(z_val, y_val, z_test, y_test)
    else:
        final["ts"] = dict.fromkeys(("temperature", "val_nll", "test_nll", "test_ece"), math.nan)
    if cfg.diagnostics:
        cpu = data.to("cpu")
        labels = {"train_noisy": cpu.y_train, "train_clean": cpu.y_train_clean}
        final["diagnostics"] = neural_collapse_metrics(
            model.to("cpu"), cpu.X_train, labels, data.num_classes
        )
    return TrainResult(final, curves, reported_epoch, epochs_run, diverged_epoch, reliability)
