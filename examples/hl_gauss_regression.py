"""Scalar regression trained with MSE, two-hot and HL-Gauss at equal budgets.

    python examples/hl_gauss_regression.py [--seeds 3] [--epochs 300] [--bins 32]

Data: scikit-learn's bundled diabetes table (442 patients, 10 standardised features,
disease progression after one year; offline). Per seed: a random split into 60 % train,
15 % validation and 25 % test, then the same MLP (10-64-64-out, ReLU) from the same
initialisation and batch order trained three ways, with the same optimiser, epochs and
learning rate:

* ``mse``: one output, squared error on the standardised target;
* ``two_hot``: ``num_bins`` outputs, ``losslab.functional.two_hot`` on the two-hot
  encoding of the target over bins spanning the training targets (plus 10 % margins);
* ``hl_gauss``: the same bins, ``losslab.functional.hl_gauss`` (sigma = 0.75 bin widths).

The classification heads predict the expected bin centre (``RegressionBins.decode``).
Each run keeps the epoch with the lowest validation RMSE (checked every 5 epochs) and
reports its test RMSE in the target's units. A ridge regression (scikit-learn
``RidgeCV``) on the same split gives the scale. Runs on one CPU thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from torch import nn

from losslab import functional as F
from losslab.data import standardize
from losslab.functional import RegressionBins

METHODS = ["mse", "two_hot", "hl_gauss"]


def split(seed: int):
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed)
    X_tr, X_va, y_tr, y_va = train_test_split(X_tr, y_tr, test_size=0.2, random_state=seed)
    X_tr, X_va, X_te = standardize(X_tr, X_va, X_te)
    return X_tr, X_va, X_te, y_tr, y_va, y_te


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def train(method, data, *, epochs: int, num_bins: int, seed: int, lr: float) -> float:
    X_tr, X_va, X_te, y_tr, y_va, y_te = data
    mean, std = y_tr.mean(), y_tr.std()
    z_tr = (y_tr - mean) / std  # every method learns the standardised target
    span = z_tr.max() - z_tr.min()
    bins = RegressionBins(float(z_tr.min() - 0.1 * span), float(z_tr.max() + 0.1 * span), num_bins)
    torch.manual_seed(seed)
    out = 1 if method == "mse" else num_bins
    model = nn.Sequential(
        nn.Linear(X_tr.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, out)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, z = torch.from_numpy(X_tr), torch.from_numpy(z_tr).float()
    target = z if method == "mse" else bins.encode(z)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            o = model(torch.from_numpy(x))
            pred = o[:, 0] if method == "mse" else bins.decode(o)
        return pred.numpy() * std + mean

    g = torch.Generator().manual_seed(seed + 1000)
    best_val, best_test = float("inf"), float("nan")
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(z), generator=g).split(32):
            o = model(X[idx])
            if method == "mse":
                loss = ((o[:, 0] - target[idx]) ** 2).mean()
            elif method == "two_hot":
                loss = F.two_hot(o, target[idx])
            else:
                loss = F.hl_gauss(o, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 5 == 0:
            val = rmse(predict(X_va), y_va)
            if val < best_val:
                best_val, best_test = val, rmse(predict(X_te), y_te)
    return best_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results: dict[str, list[float]] = {m: [] for m in ["ridge", *METHODS]}
    for seed in range(args.seeds):
        data = split(seed)
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(data[0], data[3])
        results["ridge"].append(rmse(ridge.predict(data[2]), data[5]))
        for method in METHODS:
            results[method].append(
                train(method, data, epochs=args.epochs, num_bins=args.bins, seed=seed, lr=args.lr)
            )
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\ndiabetes (442 rows; 60/15/25 % train/validation/test split per seed), "
        f"{args.seeds} seeds, {args.epochs} epochs, {args.bins} bins, lr {args.lr}, "
        f"{minutes:.1f} min\n"
    )
    print("| method | test RMSE | paired difference to mse | per seed |")
    print("|---|---|---|---|")
    base = np.array(results["mse"])
    for method, values in results.items():
        a = np.array(values)
        diff = a - base
        paired = "" if method == "mse" else f"{diff.mean():+.2f} +- {diff.std(ddof=1):.2f}"
        per_seed = ", ".join(f"{v:.2f}" for v in a)
        print(f"| {method} | {a.mean():.2f} +- {a.std(ddof=1):.2f} | {paired} | {per_seed} |")


if __name__ == "__main__":
    main()
