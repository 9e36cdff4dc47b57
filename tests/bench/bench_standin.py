"""Tiny stand-ins for the loss registry and the data package, installed only while the
real ones are missing from this checkout (the bench engine is developed in parallel with
them). ``install`` is idempotent and module-level, so pool/Ray workers can run it."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def _install_losses() -> None:
    import losslab

    if hasattr(losslab, "build_loss"):
        return

    class CE(torch.nn.Module):
        def forward(self, logits, target, sample_weight=None, **extra):
            return torch.nn.functional.cross_entropy(logits, target)

    class GCE(torch.nn.Module):
        def __init__(self, q: float = 0.7):
            super().__init__()
            self.q = q

        def forward(self, logits, target, sample_weight=None, **extra):
            p = logits.softmax(1).gather(1, target[:, None]).squeeze(1).clamp_min(1e-7)
            return ((1 - p**self.q) / self.q).mean()

    class ALDR(torch.nn.Module):
        def __init__(self, num_samples: int, temperature0: float = 10.0, alpha: float = 2.0,
                     margin: float = 0.1):  # fmt: skip
            super().__init__()
            self.register_buffer("lam", torch.full((num_samples,), temperature0))
            self.t0, self.alpha, self.margin = temperature0, alpha, margin

        def forward(self, logits, target, sample_weight=None, index=None):
            if index is None:
                raise ValueError("aldr_kl: index= is required")
            lam = self.lam[index][:, None]
            a = logits - logits.gather(1, target[:, None]) + self.margin
            a = a.scatter(1, target[:, None], 0.0)
            self.lam[index] = self.lam[index] * 0.99 + 0.01 * self.t0
            return (lam * (torch.logsumexp(a / lam, 1, keepdim=True))).mean()

    registry: dict[str, tuple[type, dict[str, Any], bool]] = {
        "ce": (CE, {}, False),
        "gce": (GCE, {"q": 0.7}, False),
        "aldr_kl": (ALDR, {"temperature0": 10.0, "alpha": 2.0, "margin": 0.1}, True),
    }

    @dataclass
    class LossSpec:
        name: str
        defaults: dict[str, Any]
        stateful: bool
        family: str = "standin"
        properties: frozenset = field(default_factory=frozenset)

    def build_loss(name: str, **cfg: Any) -> torch.nn.Module:
        if name not in registry:
            raise ValueError(f"unknown loss {name!r}; known: {sorted(registry)}")
        cls, defaults, _ = registry[name]
        unknown = set(cfg) - set(defaults) - {"num_samples"}
        if unknown:
            raise ValueError(f"{name}: unknown hyperparameters {sorted(unknown)}")
        return cls(**cfg)

    losslab.build_loss = build_loss
    losslab.list_losses = lambda family=None, property=None: sorted(registry)
    losslab.loss_info = lambda name: LossSpec(name, registry[name][1], registry[name][2])


def _install_data() -> None:
    try:
        from losslab.data import load_dataset  # noqa: F401
        from losslab.data.corrupt import corrupt  # noqa: F401

        return
    except ImportError:
        pass

    class DataNotAvailableError(ValueError):
        pass

    @dataclass
    class Dataset:
        name: str
        X_train: np.ndarray
        y_train: np.ndarray
        X_test: np.ndarray
        y_test: np.ndarray
        num_classes: int
        meta: dict[str, Any]

    def load_dataset(name: str) -> Dataset:
        if name == "unfetched":
            raise DataNotAvailableError("run `losslab data fetch unfetched`")
        if name != "digits":
            raise ValueError(f"unknown dataset {name!r}")
        from sklearn.datasets import load_digits

        d = load_digits()
        X, y = d.data.astype(np.float32), d.target.astype(np.int64)
        return Dataset("digits", X[:1400], y[:1400], X[1400:], y[1400:], 10,
                       {"modality": "image", "input_shape": (8, 8)})  # fmt: skip

    @dataclass
    class CorruptionResult:
        indices: np.ndarray
        labels: np.ndarray
        actual_noise_rate: float
        transition: Any = None

    def parse_corruption(s: str) -> tuple[str, float]:
        if s == "clean":
            return ("clean", 0.0)
        kind, _, rate = s.partition(":")
        r = float(rate)
        if kind not in ("uniform", "class_dependent") or not 0 <= r <= 1:
            raise ValueError(f"corruption: invalid {s!r}")
        return (kind, r)

    def corrupt(y, spec, *, num_classes, seed, dataset=None, X=None) -> CorruptionResult:
        kind, rate = spec
        rng = np.random.default_rng(seed)
        flip = rng.random(len(y)) < rate
        if kind == "uniform":
            new = (y + rng.integers(1, num_classes, len(y))) % num_classes
        else:
            new = (y + 1) % num_classes
        labels = np.where(flip, new, y)
        return CorruptionResult(np.arange(len(y)), labels, float((labels != y).mean()))

    data = types.ModuleType("losslab.data")
    data.load_dataset = load_dataset
    data.list_datasets = lambda: ["digits", "unfetched"]
    data.DataNotAvailableError = DataNotAvailableError
    data.__path__ = []  # a package, so losslab.data.corrupt can be imported
    corr = types.ModuleType("losslab.data.corrupt")
    corr.parse_corruption = parse_corruption
    corr.corrupt = corrupt
    data.corrupt = corr
    sys.modules["losslab.data"] = data
    sys.modules["losslab.data.corrupt"] = corr


def install() -> None:
    _install_losses()
    _install_data()
