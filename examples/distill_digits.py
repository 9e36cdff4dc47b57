"""Distil a teacher MLP into a small student with kd, dhkd and pld (and plain CE).

    python examples/distill_digits.py [--datasets digits,fashion_mnist] [--seeds 3]
                                      [--kd-alpha 0.9] [--dhkd-alpha 1.0]

For each dataset and seed: train a teacher MLP (two hidden layers) with cross-entropy,
then train the same small student (one narrow hidden layer) from the same initialisation
and batch order with each objective, at equal budgets (epochs, optimiser, learning rate):

* ``ce``: cross-entropy on the labels only (no teacher), the baseline;
* ``kd``: ``losslab.functional.kd`` (Hinton; T = 4, alpha = 0.9 or ``--kd-alpha``);
* ``dhkd``: the student gets a second, auxiliary linear head on the same hidden layer,
  trained with ``losslab.functional.dhkd`` (BinaryKL-Norm, T = 2, alpha = 1 as in the
  official CIFAR runs, or ``--dhkd-alpha``; 0.1 in its ImageNet runs) while the
  original head is trained with cross-entropy only (the official code's head split); the
  original head is evaluated;
* ``pld``: ``losslab.functional.pld`` (teacher temperature 1), which replaces
  cross-entropy.

Reports the test accuracy of the teacher and of each student (mean +- std over seeds,
and each student's mean paired difference to the ``ce`` student). Datasets come from
``losslab.data`` (``digits`` is bundled; ``fashion_mnist`` needs ``losslab data fetch
fashion_mnist`` once). Runs on one CPU thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from losslab import functional as F
from losslab.data import load_dataset

METHODS = ["ce", "kd", "dhkd", "pld"]

#: (teacher hidden width, student hidden width, teacher epochs, student epochs) per dataset
CONFIG = {"digits": (256, 16, 60, 60), "fashion_mnist": (512, 32, 15, 15)}


class Student(nn.Module):
    """One hidden layer and a linear classifier; ``aux`` adds DHKD's auxiliary head."""

    def __init__(self, d: int, hidden: int, classes: int, aux: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)
        self.aux = nn.Linear(hidden, classes) if aux else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(x)
        return self.head(h), (self.aux(h) if self.aux is not None else None)


def batches(n: int, seed: int, epochs: int, size: int = 128):
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        yield from torch.randperm(n, generator=g).split(size)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def train_teacher(X, y, Xte, yte, width: int, epochs: int, seed: int):
    torch.manual_seed(seed)
    d, c = X.shape[1], int(y.max()) + 1
    model = nn.Sequential(
        nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, c)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for idx in batches(len(y), seed + 1000, epochs):
        loss = F.ce(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model(X), accuracy(model(Xte), yte)


def train_student(
    method, X, y, teacher, Xte, yte, hidden: int, epochs: int, seed: int, alphas: dict
) -> float:
    torch.manual_seed(seed)
    c = int(y.max()) + 1
    # the auxiliary head is created last, so body and head start where the others do
    model = Student(X.shape[1], hidden, c, aux=method == "dhkd")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for idx in batches(len(y), seed + 2000, epochs):
        logits, aux = model(X[idx])
        if method == "ce":
            loss = F.ce(logits, y[idx])
        elif method == "kd":
            loss = F.kd(logits, teacher[idx], y[idx], alpha=alphas["kd"])
        elif method == "dhkd":
            loss = F.ce(logits, y[idx]) + F.dhkd(aux, teacher[idx], alpha=alphas["dhkd"])
        else:
            loss = F.pld(logits, teacher[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return accuracy(model(Xte)[0], yte)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,fashion_mnist")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--kd-alpha", type=float, default=0.9)
    ap.add_argument("--dhkd-alpha", type=float, default=1.0)
    args = ap.parse_args()
    alphas = {"kd": args.kd_alpha, "dhkd": args.dhkd_alpha}
    torch.set_num_threads(1)
    for name in args.datasets.split(","):
        t_width, s_width, t_epochs, s_epochs = CONFIG[name]
        ds = load_dataset(name)
        X, y = torch.from_numpy(ds.X_train), torch.from_numpy(ds.y_train)
        Xte, yte = torch.from_numpy(ds.X_test), torch.from_numpy(ds.y_test)
        start = time.perf_counter()
        teacher_acc: list[float] = []
        acc: dict[str, list[float]] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            teacher, t_acc = train_teacher(X, y, Xte, yte, t_width, t_epochs, seed)
            teacher_acc.append(t_acc)
            for method in METHODS:
                acc[method].append(
                    train_student(method, X, y, teacher, Xte, yte, s_width, s_epochs, seed, alphas)
                )
        minutes = (time.perf_counter() - start) / 60
        print(
            f"\n### {name}: {len(y)} train / {len(yte)} test, teacher {X.shape[1]}-{t_width}-"
            f"{t_width}-{ds.num_classes} ({t_epochs} epochs), student {X.shape[1]}-{s_width}-"
            f"{ds.num_classes} ({s_epochs} epochs), {args.seeds} seeds, kd alpha "
            f"{args.kd_alpha}, dhkd alpha {args.dhkd_alpha}, {minutes:.1f} min\n"
        )
        print("| model | test accuracy (%) | paired difference to ce (points) | per seed |")
        print("|---|---|---|---|")
        t = np.array(teacher_acc) * 100
        print(f"| teacher | {t.mean():.2f} +- {t.std(ddof=1):.2f} | | {_seeds(t)} |")
        base = np.array(acc["ce"]) * 100
        for method in METHODS:
            a = np.array(acc[method]) * 100
            diff = a - base
            paired = "" if method == "ce" else f"{diff.mean():+.2f} +- {diff.std(ddof=1):.2f}"
            print(
                f"| student, {method} | {a.mean():.2f} +- {a.std(ddof=1):.2f} | {paired} | "
                f"{_seeds(a)} |"
            )


def _seeds(values: np.ndarray) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
