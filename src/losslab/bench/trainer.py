"""Seeded mini-batch trainer with per-epoch validation/test metrics and early stopping.

Everything random (initialisation, batch order) is drawn from generators seeded by
``TrainConfig.seed``, and ``run`` pins torch to one thread, so the same inputs give
bit-identical metrics in any process.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from losslab.metrics import classification_metrics, reliability_bins, top_label_confidence

__all__ = ["SplitData", "TrainConfig", "TrainResult", "evaluate", "train"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (all JSON-able)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    shuffle: bool = True
    patience: int | None = None  # epochs without validation improvement before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr: expected a positive number, got {self.lr!r}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs: expected a positive int, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size: expected a positive int, got {self.batch_size!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience: expected None or a positive int, got {self.patience!r}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


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


@dataclass
class TrainResult:
    final: dict[str, Any]
    curves: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    diverged: bool
    wall_time_s: float
    test_reliability: dict[str, list[float]] = field(default_factory=dict)


@torch.no_grad()
def _logits(model: nn.Module, X: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(X[i : i + chunk]) for i in range(0, len(X), chunk)])


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Classification metrics plus ``ece`` (15 equal-width bins) of ``model`` on (X, y)."""
    z = _logits(model, X).double().numpy()
    t = y.numpy()
    if not np.isfinite(z).all():
        nan = float("nan")
        return {"acc": nan, "balanced_acc": nan, "macro_f1": nan, "nll": nan, "ece": nan}
    out = classification_metrics(z, t)
    conf, correct = top_label_confidence(z, t)
    out["ece"] = reliability_bins(conf, correct, 15).ece
    return out


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # foreach: one fused update per step instead of a Python loop over parameters
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, foreach=True)  # fmt: skip
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
    )


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=cfg.gamma)
    return None


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    data: SplitData,
    cfg: TrainConfig,
    *,
    stateful: bool = False,
) -> TrainResult:
    """Train ``model`` with ``loss_fn`` on ``data`` and evaluate every epoch.

    Stateful losses get ``index=`` (row indices into ``data.X_train``). With
    ``cfg.patience`` set, training stops once the noisy-validation accuracy has not
    improved for that many epochs and the best-validation weights are restored;
    otherwise the last epoch's weights are reported. A non-finite training loss stops
    the run (``diverged=True``) and restores the best weights seen so far.
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg)
    n = len(data.X_train)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    curves: dict[str, list[float]] = {"train_loss": [], "lr": []}
    best_acc, best_epoch, best_state = -math.inf, 0, None
    diverged, epochs_run = False, 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)
        total, count = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if has_bn and len(idx) < 2:
                continue  # batch norm cannot train on a single row
            logits = model(data.X_train[idx])
            extra = {"index": idx} if stateful else {}
            loss = loss_fn(logits, data.y_train[idx], **extra)
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        curves["lr"].append(opt.param_groups[0]["lr"])
        curves["train_loss"].append(total / max(count, 1) if not diverged else float("nan"))
        if sched is not None:
            sched.step()
        epochs_run = epoch + 1
        val = evaluate(model, data.X_val, data.y_val)
        test = evaluate(model, data.X_test, data.y_test)
        for split, metrics in (("val", val), ("test", test)):
            for k, v in metrics.items():
                curves.setdefault(f"{split}_{k}", []).append(v)
        if diverged:
            break
        acc = val["acc"]
        if acc > best_acc:
            best_acc, best_epoch = acc, epoch
            if cfg.patience is not None:
                best_state = copy.deepcopy(model.state_dict())
        elif cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    reported_epoch = best_epoch if best_state is not None else epochs_run - 1
    final: dict[str, Any] = {}
    for split, (X, y) in {
        "val": (data.X_val, data.y_val),
        "test": (data.X_test, data.y_test),
        "train_noisy": (data.X_train, data.y_train),
        "train_clean": (data.X_train, data.y_train_clean),
    }.items():
        final[split] = evaluate(model, X, y)
    z = _logits(model, data.X_test).double().numpy()
    reliability: dict[str, list[float]] = {}
    if np.isfinite(z).all():
        conf, correct = top_label_confidence(z, data.y_test.numpy())
        reliability = reliability_bins(conf, correct, 15).to_dict()
    return TrainResult(
        final=final,
        curves=curves,
        best_epoch=reported_epoch,
        epochs_run=epochs_run,
        diverged=diverged,
        wall_time_s=time.perf_counter() - t0,
        test_reliability=reliability,
    )
